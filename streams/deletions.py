"""The deletion topic (``FPI_DELETION_TOPIC``, off by default): deletion requests from the platform's privacy
tooling, each done as ``freshpaint-iterable forget`` / ``unforget`` does it (``streams.forgetting``).

A request is one Kafka record whose value is a JSON object with exactly one identifier::

    {"email": "jane@example.com"}
    {"userId": "u-123", "action": "unforget"}

``action`` is ``"forget"`` (the default) or ``"unforget"``; other keys are ignored (a request id, a timestamp);
the record's key is not read. A person with an email and a user id needs a request for each, as ``forget``
needs both options.

The worker's ``deletions`` agent acks a record only once Iterable answered ``users/forget`` in every project
and the broker acked the control records (at least once: a request done again after a crash is harmless, every
step is idempotent). An outage, a 429 or a rejected key is retried as the sender retries its calls
(``streams.iterable.retry``), holding the deletion topic back meanwhile, until the request is done or its
partition is given up in a rebalance (the next owner does it); a refusal becomes a dead letter with its
reason (``iterable_rejected``). A malformed request becomes a dead letter ``invalid_deletion_request`` naming what
was wrong. These dead letters hold the request's position, not its bytes: they hold no email, and
``dead-letters redrive`` has nothing to send for them (fix the request and produce it again).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime

import orjson

from streams import metrics
from streams.errors import DeliveryError, Reason
from streams.forgetting import ForgetReport, forget_person
from streams.iterable.retry import DEFAULT_POLICY, RetryPolicy, next_delay
from streams.model import DeadLetter
from streams.settings import Settings
from streams.stages import Control, DeadLetterSink, InputRecord

__all__ = ["INVALID_DELETION_REQUEST", "DeletionHandler", "DeletionRequest", "InvalidDeletionRequest",
           "parse_deletion_request"]

log = logging.getLogger("streams.deletions")

INVALID_DELETION_REQUEST = Reason.INVALID_DELETION_REQUEST.value
"""The dead-letter reason of a malformed deletion request."""

_ACTIONS = {control.value: control for control in Control}


class InvalidDeletionRequest(ValueError):
    """A deletion request this version cannot do; the message names what is wrong, never a value it holds."""


@dataclass(frozen=True, slots=True)
class DeletionRequest:
    control: Control
    email: str | None = None
    user_id: str | None = None


def parse_deletion_request(raw: bytes | None) -> DeletionRequest:
    """The request in a deletion-topic record's value. Raises ``InvalidDeletionRequest``."""
    if not raw:
        raise InvalidDeletionRequest("empty record: a deletion request is a JSON object")
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise InvalidDeletionRequest(f"not JSON ({exc})") from None
    if not isinstance(body, dict):
        raise InvalidDeletionRequest(f"not a JSON object but a {type(body).__name__}")
    present = [name for name in ("email", "userId") if name in body]
    if not present:
        raise InvalidDeletionRequest('neither "email" nor "userId": give one identifier')
    if len(present) > 1:
        raise InvalidDeletionRequest('both "email" and "userId": send one request per identifier')
    name = present[0]
    value = body[name]
    if not isinstance(value, str) or not value.strip():
        raise InvalidDeletionRequest(f'"{name}" is not a non-empty string')
    action = body.get("action", Control.FORGET.value)
    if not isinstance(action, str) or action not in _ACTIONS:
        shown = repr(action)[:40] if isinstance(action, str) else f"a {type(action).__name__}"
        raise InvalidDeletionRequest(f'"action" is {shown}; it must be "forget" or "unforget"')
    value = value.strip()
    control = _ACTIONS[action]
    return DeletionRequest(control, email=value) if name == "email" else DeletionRequest(control, user_id=value)


Forget = Callable[[Settings, str | None, str | None, Control], Awaitable[ForgetReport]]


class DeletionHandler:
    """Does one deletion-topic record: parse, forget (retrying what the sender retries), or dead-letter."""

    def __init__(self, settings: Settings, dead_letter: DeadLetterSink, *, policy: RetryPolicy = DEFAULT_POLICY,
                 forget: Forget = forget_person, sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
                 given_up: Callable[[InputRecord], bool] = lambda record: False) -> None:
        self._settings = settings
        self._given_up = given_up
        self._dead_letter = dead_letter
        self._policy = policy
        self._forget = forget
        self._sleep = sleep

    async def handle(self, record: InputRecord) -> None:
        """Return only once the request is done or dead-lettered; the caller acks the record then."""
        where = record.message
        try:
            request = parse_deletion_request(record.value)
        except InvalidDeletionRequest as exc:
            await self._reject(record, INVALID_DELETION_REQUEST, f"deletion request: {exc}")
            return
        path = f"/api/users/{request.control.value}"
        attempt = 0
        while True:
            try:
                report = await self._forget(self._settings, request.email, request.user_id, request.control)
            except DeliveryError as exc:
                delay = next_delay(attempt, exc, self._policy)
                if delay is None:
                    await self._reject(record, exc.reason.value, f"deletion request: {exc}", exc)
                    return
                if self._given_up(record):
                    # Its partition went to another worker in a rebalance (``faust_patches.bound_wait_for_acks``):
                    # the record is not committed, so the new owner does the request.
                    log.warning("deletion request at %s[%d]@%d given up: %s", where.topic, where.partition,
                                where.offset, exc)
                    return
                metrics.ITERABLE_RETRIES.labels(path, exc.reason.value).inc()
                log.warning("deletion request at %s[%d]@%d: %s; again in %.1f s", where.topic, where.partition,
                            where.offset, exc, delay)
                attempt += 1
                await self._sleep(delay)
                continue
            # Markers only (SHA-256 of the person key): no email at info level.
            log.info("deletion request at %s[%d]@%d done: %s for %s", where.topic, where.partition, where.offset,
                     request.control.value, ", ".join(marker for marker, _ in report.written))
            return

    async def _reject(self, record: InputRecord, reason: str, detail: str, error: DeliveryError | None = None) -> None:
        where = record.message
        await self._dead_letter(DeadLetter(
            reason=reason, detail=detail, failed_at=datetime.now(UTC), source_topic=where.topic,
            source_partition=where.partition, source_offset=where.offset,
            iterable_status=error.status if error else None, iterable_code=error.code if error else None), None)
