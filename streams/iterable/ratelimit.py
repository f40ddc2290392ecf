"""Token buckets per Iterable endpoint, adaptive on 429 (cut, then recover), honouring Retry-After.

Endpoints with a published limit (iterable-api.md §4) get a ``TokenBucket`` at that limit. Endpoints
without one (trackPurchase, updateCart, updateEmail) get a ``ProbingBucket``: it starts at a safe rate
and finds the limit itself, raising its rate while calls wait for tokens and Iterable answers 200,
and on the first 429 settling just under the limit that the calls accepted until then reveal (issue 19:
a guessed 100 calls/s of trackPurchase capped the 5%-purchase workload at 2,000 events/s while
trackBulk's budget sat idle).

No I/O except ``asyncio.sleep`` in ``acquire``; the clock and the sleep are injected so tests run
without waiting. One ``RateLimiter`` per worker is shared by every batch it sends, because
Iterable's limits are per project (iterable-api.md §4).
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from streams.metrics import RATE_LIMITER_WAIT
from streams.model import Endpoint

__all__ = ["DEFAULT_LIMITS", "PROBE_MAX_RATE", "PUBLISHED_LIMITS", "UNPUBLISHED", "ProbingBucket", "RateLimiter",
           "TokenBucket"]

Clock = Callable[[], float]
_EPS = 1e-9  # refills are float sums: a token that is "almost" whole is whole (no zero-length waits)
Sleep = Callable[[float], Awaitable[None]]

PUBLISHED_LIMITS: Mapping[Endpoint, float] = {
    # Iterable's published per-project limits (§4).
    Endpoint.USERS_UPDATE: 500.0,
    Endpoint.USERS_BULK_UPDATE: 5.0,
    Endpoint.EVENTS_TRACK: 2000.0,
    Endpoint.EVENTS_TRACK_BULK: 10.0,
    Endpoint.USERS_REGISTER_DEVICE_TOKEN: 500.0,
}
_PROBE_START: Mapping[Endpoint, float] = {
    # No published limit: the rate a probe starts from, low enough that no project refuses it.
    Endpoint.COMMERCE_TRACK_PURCHASE: 100.0,
    Endpoint.COMMERCE_UPDATE_CART: 100.0,
    Endpoint.USERS_UPDATE_EMAIL: 50.0,
    Endpoint.SUBSCRIPTION_SUBSCRIBE: 50.0,
    Endpoint.SUBSCRIPTION_UNSUBSCRIBE: 50.0,
}
UNPUBLISHED: frozenset[Endpoint] = frozenset(_PROBE_START)
"""Endpoints whose limit the ``RateLimiter`` probes for instead of trusting the number it is given."""
DEFAULT_LIMITS: Mapping[Endpoint, float] = {**PUBLISHED_LIMITS, **_PROBE_START}
"""Published limits, and the starting rate of a probe where none is published."""
PROBE_MAX_RATE = 5000.0
"""A probe never goes above this: far beyond what one worker sends to a single-call endpoint."""


class TokenBucket:
    """``rate`` tokens a second, at most ``capacity`` saved; the rate adapts to 429 answers.

    ``on_rate_limited`` multiplies the current rate by ``cut`` (never below ``min_fraction`` of
    the configured rate) and, with a Retry-After, hands out no token before it has passed.
    ``on_success`` raises the rate by ``recover`` at most once per ``recover_every`` seconds
    after the last cut, up to the configured rate (RudderStack's -30%/+10%, peers.md §1).
    """

    def __init__(
        self,
        rate: float,
        capacity: float | None = None,
        *,
        clock: Clock = time.monotonic,
        sleep: Sleep = asyncio.sleep,
        cut: float = 0.7,
        recover: float = 1.1,
        recover_every: float = 1.0,
        min_fraction: float = 0.05,
        name: str = "",
    ) -> None:
        if rate <= 0:
            raise ValueError("rate must be positive")
        self.base_rate = rate
        self.rate = rate
        self.capacity = capacity if capacity is not None else max(1.0, rate)
        self._clock = clock
        self._sleep = sleep
        self._cut = cut
        self._recover = recover
        self._recover_every = recover_every
        self._min_rate = rate * min_fraction
        self._name = name
        self._tokens = self.capacity
        self._stamp = clock()
        self._blocked_until = 0.0
        self._last_change = float("-inf")
        self._lock = asyncio.Lock()

    def _refill(self, now: float) -> None:
        self._tokens = min(self.capacity, self._tokens + max(0.0, now - self._stamp) * self.rate)
        self._stamp = now

    def try_acquire(self) -> float:
        """Take a token and return 0.0, or return the seconds until one will be available."""
        now = self._clock()
        if now < self._blocked_until:
            return self._blocked_until - now
        self._refill(now)
        if self._tokens >= 1.0 - _EPS:
            self._tokens = max(0.0, self._tokens - 1.0)
            return 0.0
        return (1.0 - self._tokens) / self.rate

    def time_until_token(self) -> float:
        """Seconds until a token is free (0.0 when one is), without taking it."""
        now = self._clock()
        if now < self._blocked_until:
            return self._blocked_until - now
        self._refill(now)
        return 0.0 if self._tokens >= 1.0 - _EPS else (1.0 - self._tokens) / self.rate

    async def acquire(self) -> float:
        """Wait for a token (first come, first served); returns the seconds waited."""
        started = self._clock()
        async with self._lock:
            while (delay := self.try_acquire()) > 0:
                await self._sleep(delay)
        waited = self._clock() - started
        RATE_LIMITER_WAIT.labels(self._name).observe(waited)
        return waited

    def on_rate_limited(self, retry_after: float | None = None) -> None:
        """Iterable answered 429: slow down, and pause until Retry-After when it was given."""
        now = self._clock()
        self._refill(now)
        self.rate = max(self._min_rate, self.rate * self._cut)
        self._tokens = min(self._tokens, 0.0)
        self._last_change = now
        if retry_after is not None and retry_after > 0:
            self._blocked_until = max(self._blocked_until, now + retry_after)

    def on_success(self) -> None:
        """A call went through: creep back towards the configured rate."""
        if self.rate >= self.base_rate:
            return
        now = self._clock()
        if now - self._last_change >= self._recover_every:
            self._refill(now)
            self.rate = min(self.base_rate, self.rate * self._recover)
            self._last_change = now


class ProbingBucket(TokenBucket):
    """A bucket for an endpoint without a published limit: starts at ``rate`` and probes for the limit.

    The rate rises once per ``probe_every`` seconds, and only when some caller had to wait for a
    token since the last change (demand above the rate: probing an idle endpoint upwards would
    only save up a burst that hits the real limit at once). Until the first 429 it grows by
    ``growth`` (slow start).

    A 429 tells more than "too fast": Iterable's bucket of ``limit`` calls/s holds ``server_burst``
    seconds of calls (one, iterable-api.md §4), so over any last ``w`` seconds it accepted at most
    ``limit x (w + server_burst)`` calls. The calls this bucket saw accepted over each recent window
    therefore bound the limit from below, and the highest of those bounds is the estimate ``limit``
    (it is the true limit for the window that began when Iterable's bucket was last full). The rate
    then holds at ``settle`` of it: below the limit, so no more 429s. The bound is taken from when the
    answers were read, and a worker whose event loop is busy reads a second's answers late and together:
    the estimate then exceeds the limit by a few percent (bench_ceiling held a hidden 30 calls/s at 31, and
    drew a 429 a minute later, at 0.99), hence 0.97. The limit may have been raised
    since: after ``reprobe_every`` seconds of demand without a 429 the rate climbs again by ``creep``
    per step until a 429 gives a new estimate (a crossing costs the few calls in flight at the time).
    429s within ``overshoot_window`` of the last one are the same overshoot (the calls that were in
    flight together) and change nothing more.
    """

    def __init__(
        self,
        rate: float,
        capacity: float | None = None,
        *,
        max_rate: float = PROBE_MAX_RATE,
        growth: float = 1.3,
        settle: float = 0.97,
        creep: float = 0.02,
        probe_every: float = 1.0,
        reprobe_every: float = 300.0,
        server_burst: float = 1.0,
        overshoot_window: float = 0.25,
        history: float = 10.0,
        **bucket: Any,
    ) -> None:
        super().__init__(rate, capacity, **bucket)
        self.max_rate = max(rate, max_rate)
        self.limit: float | None = None
        """The limit estimated from the accepted calls at the last 429 (a lower bound), or None."""
        self._growth = growth
        self._settle = settle
        self._creep = creep
        self._probe_every = probe_every
        self._reprobe_every = reprobe_every
        self._server_burst = server_burst
        self._overshoot_window = overshoot_window
        self._history = history
        self._accepted: deque[float] = deque()
        """When each call of the last ``history`` seconds was accepted."""
        self._starved = False
        self._last_change = self._clock()
        self._last_cut = float("-inf")

    def _capacity_for(self, rate: float) -> float:
        # The same burst as the bucket was built with, in seconds of its rate.
        return max(1.0, rate * self.capacity / self.rate) if self.rate > 0 else self.capacity

    def _set_rate(self, rate: float, now: float) -> None:
        self._refill(now)
        self.capacity = self._capacity_for(rate)
        self._tokens = min(self._tokens, self.capacity)
        self.rate = rate
        self._last_change = now

    def try_acquire(self) -> float:
        delay = super().try_acquire()
        if delay > 0:
            self._starved = True
        return delay

    def estimate(self, now: float) -> float:
        """The highest lower bound on Iterable's limit the accepted calls of the last ``history`` seconds give."""
        best = 0.0
        for count, stamp in enumerate(reversed(self._accepted), start=1):
            best = max(best, count / (now - stamp + self._server_burst))
        return best

    def on_rate_limited(self, retry_after: float | None = None) -> None:
        now = self._clock()
        if retry_after is not None and retry_after > 0:
            self._blocked_until = max(self._blocked_until, now + retry_after)
        if now - self._last_cut < self._overshoot_window:
            return  # the same overshoot, answered to every call that was in flight
        estimate = self.estimate(now)
        if estimate > 0:
            self.limit = estimate
            rate = estimate * self._settle
        else:  # nothing accepted lately to learn from: just slow down
            rate = self.rate * self._cut
        self._set_rate(max(self._min_rate, rate), now)
        self._tokens = min(self._tokens, 0.0)
        self._last_cut = now
        self._starved = False

    def on_success(self) -> None:
        now = self._clock()
        accepted = self._accepted
        accepted.append(now)
        while accepted and now - accepted[0] > self._history:
            accepted.popleft()
        if not self._starved or now - self._last_change < self._probe_every or self.rate >= self.max_rate:
            return
        if self.limit is None:
            rate = self.rate * self._growth
        elif now - self._last_cut >= self._reprobe_every:
            rate = self.rate * (1.0 + self._creep)  # the limit may have been raised: look again
        else:
            return
        self._set_rate(min(self.max_rate, rate), now)
        self._starved = False


class RateLimiter:
    """One bucket per endpoint, created lazily from ``limits`` (requests per second).

    An endpoint without a limit, or with a limit of 0 or less, is not throttled. Endpoints in
    ``probe`` get a ``ProbingBucket`` that starts at their limit and searches upwards from it.
    """

    def __init__(
        self,
        limits: Mapping[Endpoint, float] = DEFAULT_LIMITS,
        *,
        clock: Clock = time.monotonic,
        sleep: Sleep = asyncio.sleep,
        burst_seconds: float = 0.5,
        probe: frozenset[Endpoint] = UNPUBLISHED,
        probe_max_rate: float = PROBE_MAX_RATE,
    ) -> None:
        self._limits = dict(limits)
        self._probe = probe
        self._probe_max = probe_max_rate
        self._clock = clock
        self._sleep = sleep
        self._burst = burst_seconds
        self._buckets: dict[Endpoint, TokenBucket] = {}

    def bucket(self, endpoint: Endpoint) -> TokenBucket | None:
        bucket = self._buckets.get(endpoint)
        if bucket is None:
            rate = self._limits.get(endpoint)
            if rate is None or rate <= 0:
                return None
            capacity = max(1.0, rate * self._burst)
            if endpoint in self._probe:
                # The same burst as a published limit's: the burst is what a worker whose event loop woke late
                # catches up with. At 0.05 s a loaded worker lost a tenth of trackPurchase's budget to late
                # wake-ups (bench_ceiling, issue 19); 0.5 s is well inside the second Iterable saves up.
                bucket = ProbingBucket(rate, capacity, clock=self._clock, sleep=self._sleep,
                                       max_rate=self._probe_max, name=endpoint.value)
            else:
                bucket = TokenBucket(rate, capacity, clock=self._clock, sleep=self._sleep, name=endpoint.value)
            self._buckets[endpoint] = bucket
        return bucket

    def rates(self) -> dict[str, float]:
        """The current rate of every bucket made so far, by endpoint path (probed ones included)."""
        return {endpoint.value: bucket.rate for endpoint, bucket in self._buckets.items()}

    async def acquire(self, endpoint: Endpoint) -> float:
        bucket = self.bucket(endpoint)
        return await bucket.acquire() if bucket is not None else 0.0

    def time_until_token(self, endpoint: Endpoint) -> float:
        bucket = self.bucket(endpoint)
        return bucket.time_until_token() if bucket is not None else 0.0

    def on_rate_limited(self, endpoint: Endpoint, retry_after: float | None) -> None:
        bucket = self.bucket(endpoint)
        if bucket is not None:
            bucket.on_rate_limited(retry_after)

    def on_success(self, endpoint: Endpoint) -> None:
        bucket = self.bucket(endpoint)
        if bucket is not None:
            bucket.on_success()
