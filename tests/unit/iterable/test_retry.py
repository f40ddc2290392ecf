from __future__ import annotations

import pytest

from streams.errors import (
    BadApiKey,
    DeliveryError,
    RateLimited,
    Rejected,
    RetriableDelivery,
    UserNotYetVisible,
)
from streams.iterable import RetryPolicy, next_delay

POLICY = RetryPolicy(
    base_delay=1.0,
    max_delay=10.0,
    multiplier=2.0,
    jitter=0.5,
    user_not_visible_delay=5.0,
    user_not_visible_attempts=2,
    bad_key_probe_delay=7.0,
)


class TestNextDelay:
    @pytest.mark.parametrize(
        ("attempt", "error", "rand", "expected"),
        [
            (0, RetriableDelivery("5xx"), 0.0, 0.5),
            (0, RetriableDelivery("5xx"), 1.0, 1.0),
            (3, RetriableDelivery("5xx"), 1.0, 8.0),
            (10, RetriableDelivery("5xx"), 1.0, 10.0),  # capped
            (500, RetriableDelivery("5xx"), 1.0, 10.0),  # never gives up by default
            (0, RateLimited("429", retry_after=4.0), 0.0, 4.0),  # Retry-After is a minimum
            (0, RateLimited("429"), 1.0, 1.0),
            (0, UserNotYetVisible("nf"), 1.0, 5.0),
            (2, UserNotYetVisible("nf"), 1.0, None),  # bounded
            (0, Rejected("400"), 1.0, None),
            (0, BadApiKey("401"), 1.0, 7.0),  # probe interval, not a give-up
        ],
    )
    def test_table(self, attempt: int, error: DeliveryError, rand: float, expected: float | None) -> None:
        assert next_delay(attempt, error, POLICY, lambda: rand) == expected

    def test_max_attempts_bounds_transient_retries(self) -> None:
        policy = RetryPolicy(max_attempts=3)
        assert next_delay(2, RetriableDelivery("x"), policy) is not None
        assert next_delay(3, RetriableDelivery("x"), policy) is None

    def test_jitter_spreads_delays(self) -> None:
        delays = {next_delay(2, RetriableDelivery("x"), POLICY) for _ in range(50)}
        assert len(delays) > 10 and all(2.0 <= d <= 4.0 for d in delays if d is not None)
