from __future__ import annotations

import asyncio

import pytest

from streams.iterable import RateLimiter, TokenBucket
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
