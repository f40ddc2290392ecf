from __future__ import annotations

import asyncio

import pytest

from streams.iterable import RateLimiter, TokenBucket
from streams.iterable.ratelimit import DEFAULT_LIMITS, PUBLISHED_LIMITS, UNPUBLISHED, ProbingBucket
from streams.model import Endpoint
from tests.unit.iterable.conftest import FakeClock


class TestTokenBucket:
    def test_burst_then_steady_rate(self, clock: FakeClock) -> None:
        bucket = TokenBucket(10.0, 2.0, clock=clock)
        assert bucket.try_acquire() == 0.0
        assert bucket.try_acquire() == 0.0
        assert bucket.try_acquire() == pytest.approx(0.1)
        clock.now += 0.1
        assert bucket.try_acquire() == 0.0

    async def test_acquire_waits_for_the_next_token(self, clock: FakeClock) -> None:
        bucket = TokenBucket(5.0, 1.0, clock=clock, sleep=clock.sleep)
        waits = [await bucket.acquire() for _ in range(4)]
        assert waits[0] == 0.0
        assert waits[1:] == pytest.approx([0.2, 0.2, 0.2])

    async def test_no_more_than_rate_per_second_over_time(self, clock: FakeClock) -> None:
        bucket = TokenBucket(10.0, 10.0, clock=clock, sleep=clock.sleep)
        start = clock.now
        await asyncio.gather(*(bucket.acquire() for _ in range(60)))
        assert clock.now - start == pytest.approx(5.0)  # 10 from the burst, 50 more at 10/s

    def test_429_cuts_the_rate_and_success_recovers_it(self, clock: FakeClock) -> None:
        bucket = TokenBucket(100.0, clock=clock, cut=0.5, recover=2.0, recover_every=1.0)
        bucket.on_rate_limited()
        assert bucket.rate == 50.0
        bucket.on_success()
        assert bucket.rate == 50.0  # not before recover_every
        clock.now += 1.0
        bucket.on_success()
        assert bucket.rate == 100.0
        clock.now += 1.0
        bucket.on_success()
        assert bucket.rate == 100.0  # never above the configured rate

    def test_rate_never_drops_below_the_floor(self, clock: FakeClock) -> None:
        bucket = TokenBucket(10.0, clock=clock, cut=0.1, min_fraction=0.2)
        for _ in range(5):
            bucket.on_rate_limited()
        assert bucket.rate == pytest.approx(2.0)

    def test_retry_after_blocks_tokens_until_it_passed(self, clock: FakeClock) -> None:
        bucket = TokenBucket(1000.0, clock=clock)
        bucket.on_rate_limited(retry_after=3.0)
        assert bucket.try_acquire() == pytest.approx(3.0)
        assert bucket.time_until_token() == pytest.approx(3.0)
        clock.now += 3.0
        assert bucket.try_acquire() == 0.0

    def test_rejects_a_zero_rate(self) -> None:
        with pytest.raises(ValueError):
            TokenBucket(0.0)


class TestRateLimiter:
    async def test_buckets_are_per_endpoint_and_unlisted_endpoints_are_free(self, clock: FakeClock) -> None:
        limiter = RateLimiter({Endpoint.EVENTS_TRACK_BULK: 1.0}, clock=clock, sleep=clock.sleep)
        assert await limiter.acquire(Endpoint.EVENTS_TRACK_BULK) == 0.0
        assert limiter.time_until_token(Endpoint.EVENTS_TRACK_BULK) == pytest.approx(1.0)
        assert await limiter.acquire(Endpoint.USERS_BULK_UPDATE) == 0.0
        assert limiter.bucket(Endpoint.USERS_BULK_UPDATE) is None
        limiter.on_rate_limited(Endpoint.EVENTS_TRACK_BULK, None)
        bucket = limiter.bucket(Endpoint.EVENTS_TRACK_BULK)
        assert bucket is not None and bucket.rate < 1.0


class _HiddenLimit:
    """Iterable's side of an unpublished limit: a bucket of ``rate`` calls/s holding one second."""

    def __init__(self, rate: float, clock: FakeClock) -> None:
        self.rate, self.tokens, self.stamp, self.clock = rate, rate, clock.now, clock

    def allow(self) -> bool:
        now = self.clock.now
        self.tokens = min(self.rate, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now
        if self.tokens >= 1.0 - 1e-9:
            self.tokens -= 1.0
            return True
        return False


def _drive(bucket: ProbingBucket, iterable: _HiddenLimit, clock: FakeClock, seconds: float) -> tuple[int, int]:
    """Calls as fast as the bucket allows (demand always above it) for ``seconds``: (accepted, 429s)."""
    accepted = limited = 0
    end = clock.now + seconds
    while clock.now < end:
        delay = bucket.try_acquire()
        if delay > 0:
            clock.now += delay
            continue
        if iterable.allow():
            accepted += 1
            bucket.on_success()
        else:
            limited += 1
            bucket.on_rate_limited(None)
    return accepted, limited


class TestProbingBucket:
    def test_rises_only_while_callers_wait_for_tokens(self, clock: FakeClock) -> None:
        bucket = ProbingBucket(100.0, 50.0, clock=clock)
        for _ in range(5):
            clock.now += 2.0
            assert bucket.try_acquire() == 0.0  # demand below the rate: nobody waits
            bucket.on_success()
        assert bucket.rate == 100.0

    def test_slow_start_until_the_first_429(self, clock: FakeClock) -> None:
        bucket = ProbingBucket(100.0, 1.0, clock=clock, growth=1.5)
        bucket.try_acquire()
        assert bucket.try_acquire() > 0  # starved
        clock.now += 1.0
        bucket.on_success()
        assert bucket.rate == pytest.approx(150.0)

    def test_the_first_429_settles_under_the_limit_the_accepted_calls_reveal(self, clock: FakeClock) -> None:
        bucket = ProbingBucket(100.0, 5.0, clock=clock)
        iterable = _HiddenLimit(150.0, clock)
        limited = 0
        while not limited:
            _, limited = _drive(bucket, iterable, clock, 0.1)
        # Iterable's saved second hid the crossing until the rate was well above 150: that rate is no estimate.
        assert bucket.limit is not None and 0.9 * 150.0 <= bucket.limit <= 150.0
        assert bucket.rate <= 150.0
        accepted, limited = _drive(bucket, iterable, clock, 50.0)
        assert limited == 0, "held under the limit: no 429 after the first"
        assert accepted / 50.0 >= 0.87 * 150.0

    def test_answers_read_late_and_together_still_settle_under_the_limit(self, clock: FakeClock) -> None:
        """A busy event loop reads the answers to 1.02 s of calls at Iterable's 100/s in one go: the accepted
        calls then claim 102 calls/s, and the rate must still be below the real 100."""
        bucket = ProbingBucket(150.0, 5.0, clock=clock)
        for _ in range(102):
            bucket.on_success()
        bucket.on_rate_limited(None)
        assert bucket.limit == pytest.approx(102.0)
        assert bucket.rate < 100.0

    def test_a_429_with_nothing_accepted_lately_just_slows_down(self, clock: FakeClock) -> None:
        bucket = ProbingBucket(200.0, clock=clock, cut=0.5)
        bucket.on_rate_limited(None)
        assert bucket.rate == pytest.approx(100.0) and bucket.limit is None

    def test_the_429s_of_one_overshoot_cut_once(self, clock: FakeClock) -> None:
        bucket = ProbingBucket(200.0, clock=clock, cut=0.5, overshoot_window=0.25)
        for _ in range(8):  # the calls that were in flight together
            bucket.on_rate_limited(None)
        assert bucket.rate == pytest.approx(100.0)
        clock.now += 0.25
        bucket.on_rate_limited(None)
        assert bucket.rate == pytest.approx(50.0)

    def test_never_above_max_rate(self, clock: FakeClock) -> None:
        bucket = ProbingBucket(100.0, 1.0, clock=clock, max_rate=120.0)
        for _ in range(5):
            bucket.try_acquire()
            bucket.try_acquire()
            clock.now += 1.0
            bucket.on_success()
        assert bucket.rate == 120.0

    @pytest.mark.parametrize("hidden", [40.0, 400.0, 3000.0])
    def test_converges_near_a_hidden_limit_with_few_429s(self, clock: FakeClock, hidden: float) -> None:
        bucket = ProbingBucket(100.0, 50.0, clock=clock)
        iterable = _HiddenLimit(hidden, clock)
        _drive(bucket, iterable, clock, 30.0)  # finding it
        accepted, limited = _drive(bucket, iterable, clock, 60.0)
        assert accepted / 60.0 >= 0.93 * hidden
        assert limited == 0  # the limit found, no look above it before five minutes of demand
        assert bucket.limit is not None and 0.9 * hidden <= bucket.limit <= 1.1 * hidden

    def test_finds_a_limit_again_after_it_was_raised(self, clock: FakeClock) -> None:
        bucket = ProbingBucket(100.0, 50.0, clock=clock)
        iterable = _HiddenLimit(300.0, clock)
        _drive(bucket, iterable, clock, 30.0)
        iterable.rate = 450.0
        _drive(bucket, iterable, clock, 330.0)  # it looks above the old limit after five minutes without a 429
        accepted, _ = _drive(bucket, iterable, clock, 30.0)
        assert accepted / 30.0 >= 0.9 * 450.0


class TestLimiterProbes:
    def test_unpublished_endpoints_probe_and_published_ones_do_not(self, clock: FakeClock) -> None:
        limiter = RateLimiter(DEFAULT_LIMITS, clock=clock)
        assert isinstance(limiter.bucket(Endpoint.COMMERCE_TRACK_PURCHASE), ProbingBucket)
        track_bulk = limiter.bucket(Endpoint.EVENTS_TRACK_BULK)
        assert track_bulk is not None and not isinstance(track_bulk, ProbingBucket)
        assert set(PUBLISHED_LIMITS).isdisjoint(UNPUBLISHED)
        assert limiter.rates() == {"/api/commerce/trackPurchase": 100.0, "/api/events/trackBulk": 10.0}

    def test_probed_buckets_save_up_the_same_burst_as_published_ones(self, clock: FakeClock) -> None:
        # A worker whose loop wakes late catches up with the burst: at 0.05 s a loaded worker lost a
        # tenth of trackPurchase's budget (bench_ceiling, issue 19).
        limiter = RateLimiter(DEFAULT_LIMITS, clock=clock)
        purchases = limiter.bucket(Endpoint.COMMERCE_TRACK_PURCHASE)
        track_bulk = limiter.bucket(Endpoint.EVENTS_TRACK_BULK)
        assert purchases is not None and track_bulk is not None
        clock.now += 60.0  # idle
        assert sum(purchases.try_acquire() == 0.0 for _ in range(100)) == 50  # 0.5 s of 100 calls/s
        assert sum(track_bulk.try_acquire() == 0.0 for _ in range(100)) == 5  # 0.5 s of 10 calls/s

    def test_a_probed_rate_keeps_its_burst_in_seconds(self, clock: FakeClock) -> None:
        limiter = RateLimiter(DEFAULT_LIMITS, clock=clock)
        purchases = limiter.bucket(Endpoint.COMMERCE_TRACK_PURCHASE)
        assert isinstance(purchases, ProbingBucket)
        purchases.on_rate_limited()  # nothing accepted yet: the rate is cut to 70
        clock.now += 60.0
        assert sum(purchases.try_acquire() == 0.0 for _ in range(100)) == 35  # 0.5 s of 70 calls/s
