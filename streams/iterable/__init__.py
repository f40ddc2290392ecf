"""Delivery to Iterable: HTTP client, request batching, rate limits, retry policy and the sender.

``IterableClient`` makes every HTTP call to Iterable; ``Sender`` is what the worker uses.
"""

from __future__ import annotations

from streams.iterable.batcher import Call, call_body, plan
from streams.iterable.client import IterableClient, classify, new_http_client
from streams.iterable.ratelimit import DEFAULT_LIMITS, ProbingBucket, RateLimiter, TokenBucket
from streams.iterable.retry import DEFAULT_POLICY, RetryPolicy, next_delay
from streams.iterable.sender import Abandoned, Outcome, Sender, SenderConfig, SenderStats

__all__ = [
    "DEFAULT_LIMITS",
    "DEFAULT_POLICY",
    "Abandoned",
    "Call",
    "IterableClient",
    "Outcome",
    "ProbingBucket",
    "RateLimiter",
    "RetryPolicy",
    "Sender",
    "SenderConfig",
    "SenderStats",
    "TokenBucket",
    "call_body",
    "classify",
    "new_http_client",
    "next_delay",
    "plan",
]
