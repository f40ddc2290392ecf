"""Token buckets per Iterable endpoint, adaptive on 429 (cut, then recover), honouring Retry-After.

No I/O except ``asyncio.sleep`` in ``acquire``; the clock and the sleep are injected so tests run
without waiting. One ``RateLimiter`` per worker is shared by every batch it sends, because
Iterable's limits are per project (iterable-api.md §4).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Mapping

from streams.metrics import RATE_LIMITER_WAIT
from streams.model import Endpoint

__all__ = ["DEFAULT_LIMITS", "RateLimiter", "TokenBucket"]

Clock = Callable[[], float]
_EPS = 1e-9  # refills are float sums: a token that is "almost" whole is whole (no zero-length waits)
Sleep = Callable[[float], Awaitable[None]]

DEFAULT_LIMITS: Mapping[Endpoint, float] = {
    # Iterable's published per-project limits (§4); unpublished ones are throttled conservatively.
    Endpoint.USERS_UPDATE: 500.0,
    Endpoint.USERS_BULK_UPDATE: 5.0,
    Endpoint.EVENTS_TRACK: 2000.0,
    Endpoint.EVENTS_TRACK_BULK: 10.0,
    Endpoint.COMMERCE_TRACK_PURCHASE: 100.0,
    Endpoint.COMMERCE_UPDATE_CART: 100.0,
    Endpoint.USERS_UPDATE_EMAIL: 50.0,
}


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


class RateLimiter:
    """One ``TokenBucket`` per endpoint, created lazily from ``limits`` (requests per second).

    An endpoint without a limit, or with a limit of 0 or less, is not throttled.
    """

    def __init__(
        self,
        limits: Mapping[Endpoint, float] = DEFAULT_LIMITS,
        *,
        clock: Clock = time.monotonic,
        sleep: Sleep = asyncio.sleep,
        burst_seconds: float = 0.5,
    ) -> None:
        self._limits = dict(limits)
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
            bucket = TokenBucket(
                rate, max(1.0, rate * self._burst), clock=self._clock, sleep=self._sleep, name=endpoint.value
            )
            self._buckets[endpoint] = bucket
        return bucket

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
