"""When to try an Iterable call again: a pure ``next_delay(attempt, error) -> seconds | None``.

Exponential backoff with jitter for transient failures, without limit by default (the sender
blocks, which is the back-pressure); a bounded wait for users Iterable does not see yet; None
(give up, dead-letter) for everything Iterable rejected.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass

from streams.errors import BadApiKey, DeliveryError, RateLimited, UserNotYetVisible

__all__ = ["DEFAULT_POLICY", "RetryPolicy", "next_delay"]


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    base_delay: float = 0.2
    """Seconds before the first retry of a transient failure."""
    max_delay: float = 30.0
    """Cap of the exponential backoff."""
    multiplier: float = 2.0
    jitter: float = 0.5
    """Fraction of each delay that is random (0 = none, 1 = full jitter)."""
    max_attempts: int | None = None
    """Retries of transient failures before giving up; None = never give up (back-pressure)."""
    user_not_visible_delay: float = 5.0
    """Seconds to wait before resending events whose user Iterable did not know yet."""
    user_not_visible_attempts: int = 5
    """Resends of such events before they become dead letters."""
    bad_key_probe_delay: float = 5.0
    """Seconds between key probes while the sender is paused by a bad API key."""


DEFAULT_POLICY = RetryPolicy()


def _jittered(delay: float, policy: RetryPolicy, rand: Callable[[], float]) -> float:
    return delay * (1.0 - policy.jitter) + delay * policy.jitter * rand()


def next_delay(
    attempt: int,
    error: DeliveryError,
    policy: RetryPolicy = DEFAULT_POLICY,
    rand: Callable[[], float] = random.random,
) -> float | None:
    """Seconds to wait before retry number ``attempt + 1`` (``attempt`` counts from 0), or None.

    None means give up: the error is not retriable (Iterable rejected the data), or a bound of
    ``policy`` is reached. ``RateLimited.retry_after`` is honoured as a minimum. A ``BadApiKey``
    answer gives the probe interval (the sender pauses rather than dead-letters).
    """
    if isinstance(error, BadApiKey):
        return policy.bad_key_probe_delay
    if not error.retriable:
        return None
    if isinstance(error, UserNotYetVisible):
        if attempt >= policy.user_not_visible_attempts:
            return None
        return _jittered(policy.user_not_visible_delay, policy, rand)
    if policy.max_attempts is not None and attempt >= policy.max_attempts:
        return None
    backoff = min(policy.max_delay, policy.base_delay * policy.multiplier ** min(attempt, 64))
    delay = _jittered(backoff, policy, rand)
    if isinstance(error, RateLimited) and error.retry_after is not None:
        delay = max(delay, error.retry_after)
    return delay
