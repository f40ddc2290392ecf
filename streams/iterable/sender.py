"""The sender: delivers Iterable requests with batching, rate limits, retries and dead letters.

One ``Sender`` per worker. ``deliver(requests)`` returns when every request was accepted by
Iterable or became a dead letter, one ``Outcome`` per request in input order, so the caller acks
its Kafka offsets only then. Transient failures (5xx, 429, timeouts, refused connections) are
retried without limit by default: ``deliver`` blocks, consumption stops, lag grows, memory stays
bounded (back-pressure). A bad API key pauses the whole sender (``paused``) until a probe call
succeeds or ``resume()`` is called.

``deliver`` takes what the send stage already batched (``streams.stages.SendStage``) and folds it
into bulk calls (``streams.iterable.batcher.plan``). Each call starts as soon as the calls of its people
before it are done, in this delivery or in one started earlier and still running: deliveries may overlap,
and a person's identify or updateEmail still reaches Iterable before that person's later events
(design.md "Delivery semantics"). Each endpoint is a lane of its own (its token bucket and its own calls
in flight), so one endpoint's waiting calls never hold another's budget idle (issue 19).

``abandon()`` ends every delivery in progress at once, with ``Abandoned``: the worker calls it when
it gives up the records in flight (``streams.faust_patches.bound_wait_for_acks``, at a rebalance or
a stop during an outage). Those records are delivered again by the next owner of their partition,
and a copy still retrying here could reach Iterable after that owner's newer update of the same
person and overwrite it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import random
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import orjson
from pydantic import SecretStr

from streams.errors import BadApiKey, DeliveryError, RateLimited, Reason, Rejected, RetriableDelivery, UserNotYetVisible
from streams.iterable.batcher import SINGLE_OF, Call, call_body, plan
from streams.iterable.client import IterableClient
from streams.iterable.email_change import RECHECKED_CODES, EmailChange, judge
from streams.iterable.ratelimit import DEFAULT_LIMITS, ProbingBucket, RateLimiter, Sleep
from streams.iterable.retry import DEFAULT_POLICY, RetryPolicy, next_delay
from streams.metrics import BATCH_SIZE, ITERABLE_RETRIES, SENDER_PAUSED
from streams.model import DeadLetter, Endpoint, IterableRequest, JSONValue

__all__ = ["LANE_MAX_CALLS", "Abandoned", "Outcome", "Sender", "SenderConfig", "SenderStats", "connections_needed"]

log = logging.getLogger(__name__)

LANE_SECONDS = 1.0
"""A lane allows this many seconds of calls at its endpoint's rate in flight (when that is above max_concurrency)."""
LANE_MAX_CALLS = 64
"""The most calls in flight at once in one endpoint's lane, however high its rate."""


def connections_needed(config: SenderConfig) -> int:
    """HTTP connections one project's sender can use at once: every lane full. A pool below that makes a call
    that has its slot and its rate token wait for a connection, and the calls held so go out together later."""
    return len(Endpoint) * max(config.max_concurrency, LANE_MAX_CALLS)


class _Lane:
    """Calls in flight of one endpoint, at most ``size()`` at once (read whenever a slot is asked for)."""

    def __init__(self, size: Callable[[], int]) -> None:
        self._size = size
        self._busy = 0
        self._free = asyncio.Condition()

    async def __aenter__(self) -> None:
        async with self._free:
            await self._free.wait_for(lambda: self._busy < self._size())
            self._busy += 1

    async def __aexit__(self, *exc: object) -> None:
        async with self._free:
            self._busy -= 1
            self._free.notify(max(1, self._size() - self._busy))  # the size may have grown since

_EMAIL_LISTS = ("invalidEmails", "notFoundEmails", "invalidDataEmails", "conflictEmails", "forgottenEmails")
_USER_ID_LISTS = (
    "invalidUserIds",
    "notFoundUserIds",
    "invalidDataUserIds",
    "conflictUserIds",
    "forgottenUserIds",
)
_NOT_FOUND = frozenset({"notFoundEmails", "notFoundUserIds"})
_PER_RECORD = frozenset({"invalidDataEmails", "invalidDataUserIds"})
_FORGOTTEN = frozenset({"forgottenEmails", "forgottenUserIds"})
_EMAIL_CONFLICT = (
    "/api/users/updateEmail: the new email already has an Iterable profile of its own and the current one "
    "still exists, so the profile was not moved; this person's later updates and events go to the new "
    "address. Merge the two by hand: POST /api/users/merge with the current email as sourceEmail and the "
    "new one as destinationEmail (50 requests/s per key)"
)


class Abandoned(Exception):
    """Raised by ``Sender.deliver`` when ``abandon()`` ended it: none of its requests is sent again.

    Not a ``StreamsError``: nothing is wrong with the requests, so there is nothing to dead-letter.
    The caller leaves their records uncommitted and unacked; the next owner of their partition
    delivers them.
    """


@dataclass(frozen=True, slots=True)
class SenderConfig:
    """Everything the sender needs; ``from_settings`` builds it from ``streams.settings.Settings``."""

    base_url: str = "https://api.iterable.com"
    api_key: SecretStr = field(default_factory=lambda: SecretStr(""), repr=False)
    limits: Mapping[Endpoint, float] = field(default_factory=lambda: dict(DEFAULT_LIMITS))
    """Requests per second per endpoint; an empty mapping (or 0) disables throttling."""
    batching: bool = True
    """Fold users/update and events/track into their bulk endpoints."""
    max_batch_items: int = 1000
    max_batch_bytes: int = 4_000_000
    max_concurrency: int = 8
    """HTTP calls in flight at once per endpoint (each endpoint is a lane of its own); more for an endpoint whose
    rate is known to allow more (``Sender.lane_size``)."""
    retry: RetryPolicy = DEFAULT_POLICY
    connect_timeout: float = 5.0
    request_timeout: float = 30.0

    @classmethod
    def from_settings(cls, settings: Any, **overrides: Any) -> SenderConfig:
        key = settings.iterable_api_key
        values: dict[str, Any] = {
            "base_url": settings.iterable_url,
            "api_key": key if key is not None else SecretStr(""),
        }
        values.update(overrides)
        return cls(**values)


@dataclass(frozen=True, slots=True)
class Outcome:
    """What happened to one request: delivered, or a dead letter with Iterable's answer."""

    request: IterableRequest
    delivered: bool
    reason: str | None = None
    """A ``streams.errors.Reason`` value when not delivered."""
    detail: str | None = None
    status: int | None = None
    code: str | None = None
    response: str | None = None
    """Iterable's answer as JSON text."""
    attempts: int = 1

    def to_dead_letter(
        self,
        *,
        failed_at: datetime,
        source_topic: str | None = None,
        source_partition: int | None = None,
        source_offset: int | None = None,
    ) -> DeadLetter:
        if self.delivered:
            raise ValueError("a delivered request is not a dead letter")
        if self.reason == Reason.FORGOTTEN.value:
            # A GDPR-forgotten person: the letter keeps neither the request (its body has their email or
            # user id) nor Iterable's answer (a bulk answer lists them); it cannot be re-driven.
            return DeadLetter(reason=self.reason, detail=self.detail or "", failed_at=failed_at,
                              source_topic=source_topic, source_partition=source_partition,
                              source_offset=source_offset, iterable_status=self.status, iterable_code=self.code)
        return DeadLetter(
            reason=self.reason or Reason.ITERABLE_REJECTED.value,
            detail=self.detail or "",
            failed_at=failed_at,
            source_topic=source_topic,
            source_partition=source_partition,
            source_offset=source_offset,
            request=self.request,
            iterable_status=self.status,
            iterable_code=self.code,
            iterable_response=self.response,
        )


@dataclass(slots=True)
class SenderStats:
    """Plain counters for benchmarks and tests (Prometheus has the same in ``streams.metrics``)."""

    calls: Counter[str] = field(default_factory=Counter)
    items_sent: Counter[str] = field(default_factory=Counter)
    retries: int = 0
    abandoned: int = 0
    """Requests of deliveries ended by ``abandon()``."""
    delivered: int = 0
    dead_letters: int = 0
    pauses: int = 0

    def fill_ratio(self, endpoint: Endpoint, max_items: int = 1000) -> float:
        calls = self.calls[endpoint.value]
        return self.items_sent[endpoint.value] / (calls * max_items) if calls else 0.0


def _json_text(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, str):
        return value
    return orjson.dumps(value).decode()


class Sender:
    """Delivers ``IterableRequest``s to Iterable; see the module docstring for the guarantees.

    ``clock``, ``sleep`` and ``rand`` are injectable so retries and rate limits can be tested
    without waiting.
    """

    def __init__(
        self,
        http: Any,
        config: SenderConfig,
        *,
        limiter: RateLimiter | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Sleep = asyncio.sleep,
        rand: Callable[[], float] = random.random,
    ) -> None:
        self.config = config
        self.client = IterableClient(http, config.base_url, config.api_key)
        self.limiter = limiter or RateLimiter(config.limits, clock=clock, sleep=sleep)
        self.stats = SenderStats()
        self._sleep = sleep
        self._rand = rand
        self._running = asyncio.Event()
        self._running.set()
        self._lanes: dict[Endpoint, _Lane] = {}
        """Calls in flight per endpoint: a slot is taken before the rate token, so a token is spent only
        when the call goes out (a token held while waiting for a slot would let calls bunch up later)."""
        self._people: dict[str, list[asyncio.Task[None]]] = {}
        """Each person's calls in the latest wave they appeared in, over every delivery in progress."""
        self._probe_task: asyncio.Task[None] | None = None
        self._deliveries: dict[asyncio.Task[list[Outcome]], int] = {}
        """Deliveries in progress, with their number of requests."""
        self._abandoned: set[asyncio.Task[list[Outcome]]] = set()
        SENDER_PAUSED.set(0)

    # --- health -----------------------------------------------------------------------------
    @property
    def paused(self) -> bool:
        """True while a bad API key holds every call back."""
        return not self._running.is_set()

    def resume(self) -> None:
        """Let calls through again (after a key rotation, or when a probe succeeded)."""
        if self.paused:
            log.warning("iterable sender resumed")
        self._running.set()
        SENDER_PAUSED.set(0)

    def _pause(self) -> None:
        if not self.paused:
            # The key itself is never logged (style.md; settings.as_dict masks it).
            log.error("iterable answered 401 BadApiKey: sender paused until the key works again")
            self.stats.pauses += 1
        self._running.clear()
        SENDER_PAUSED.set(1)
        if self._probe_task is None or self._probe_task.done():
            self._probe_task = asyncio.get_running_loop().create_task(self._probe())

    async def _probe(self) -> None:
        while not self._running.is_set():
            await self._sleep(self.config.retry.bad_key_probe_delay)
            if self._running.is_set():  # resume() was called meanwhile
                return
            try:
                await self.client.check_key()
            except DeliveryError:
                continue
            self.resume()

    # --- delivery ---------------------------------------------------------------------------
    async def deliver(self, requests: Sequence[IterableRequest]) -> list[Outcome]:
        """One ``Outcome`` per request, in order, once each was accepted or dead-lettered.

        Blocks (retrying with backoff) while Iterable is unavailable, throttling or the sender is
        paused. Raises ``Abandoned`` when ``abandon()`` is called meanwhile, otherwise only on
        programming errors; Iterable's answers become outcomes.
        """
        # Planned and started before the first await: a delivery's calls are registered behind each person's
        # calls in the deliveries started before it, in the order deliver() was called (SendStage relies on it).
        outcomes: list[Outcome | None] = [None] * len(requests)
        calls = self._start_calls(requests, outcomes)
        # A task of its own, so that abandon() can end it wherever it waits (a backoff of up to
        # max_delay, a rate token, an HTTP call) without cancelling the caller.
        work = asyncio.get_running_loop().create_task(self._finish(calls, outcomes))
        self._deliveries[work] = len(requests)
        try:
            return await work
        except asyncio.CancelledError:
            current = asyncio.current_task()
            if work in self._abandoned and (current is None or not current.cancelling()):
                self.stats.abandoned += len(requests)
                raise Abandoned(f"{len(requests)} requests abandoned: their records were given up") from None
            raise
        finally:
            del self._deliveries[work]
            self._abandoned.discard(work)
            for call in calls:  # already done unless this delivery was cancelled: no call of it goes on alone
                call.cancel()
            self._forget_done(requests)

    def abandon(self, fate: str = "their records were given up: the next owner of their partitions delivers them"
                ) -> int:
        """End every delivery in progress: none of their requests is sent again.

        Returns how many requests that left undelivered; each such ``deliver`` raises ``Abandoned``.
        A call already on the wire cannot be taken back: Iterable may still apply it. ``fate`` says in
        the log line what becomes of those requests.
        """
        abandoned = 0
        for work, count in self._deliveries.items():
            if not work.done() and work not in self._abandoned:
                self._abandoned.add(work)
                work.cancel()
                abandoned += count
        if abandoned:
            log.warning("abandoned the delivery of %d requests; %s", abandoned, fate)
        return abandoned

    def _start_calls(
        self, requests: Sequence[IterableRequest], outcomes: list[Outcome | None]
    ) -> list[asyncio.Task[None]]:
        """Start every call of ``requests``, each waiting for its people's calls before it: those of their
        previous wave here, or of an earlier delivery still running.

        The waves (``plan``) say what must follow what for each person; a barrier between whole waves (or
        whole deliveries) said more than that, and left one endpoint's budget idle while another's calls
        waited for tokens (issue 19: a round's trackBulk calls waited for the purchases of unrelated people).
        """
        cfg = self.config
        waves = plan(requests, batching=cfg.batching, max_items=cfg.max_batch_items, max_bytes=cfg.max_batch_bytes)
        latest = self._people
        tasks: list[asyncio.Task[None]] = []
        loop = asyncio.get_running_loop()
        for wave in waves:
            joined: dict[str, list[asyncio.Task[None]]] = {}
            for call in wave:
                people = {requests[i].person_key for i in call.indexes}
                after = {task for person in people for task in latest.get(person, ()) if not task.done()}
                task = loop.create_task(self._run_after(after, call, requests, outcomes))
                tasks.append(task)
                for person in people:
                    joined.setdefault(person, []).append(task)
            latest.update(joined)
        return tasks

    async def _finish(self, calls: list[asyncio.Task[None]], outcomes: list[Outcome | None]) -> list[Outcome]:
        try:
            await asyncio.gather(*calls)
        except BaseException:
            # abandon() cancels this delivery, and a bug in one call ends it: no call of it may go on alone.
            for call in calls:
                call.cancel()
            await asyncio.gather(*calls, return_exceptions=True)
            raise
        done: list[Outcome] = []
        for outcome in outcomes:
            assert outcome is not None, "every request gets an outcome"
            done.append(outcome)
        self.stats.delivered += sum(1 for o in done if o.delivered)
        self.stats.dead_letters += sum(1 for o in done if not o.delivered)
        return done

    def _forget_done(self, requests: Sequence[IterableRequest]) -> None:
        """Drop the people of ``requests`` whose latest calls are all done (a later delivery's are kept)."""
        for person in {request.person_key for request in requests}:
            calls = self._people.get(person)
            if calls is not None and all(task.done() for task in calls):
                del self._people[person]

    async def _run_after(
        self,
        after: set[asyncio.Task[None]],
        call: Call,
        requests: Sequence[IterableRequest],
        outcomes: list[Outcome | None],
    ) -> None:
        if after:
            await asyncio.wait(after)
        await self._run(call, requests, outcomes)

    def _lane(self, endpoint: Endpoint) -> _Lane:
        lane = self._lanes.get(endpoint)
        if lane is None:
            lane = self._lanes[endpoint] = _Lane(lambda: self.lane_size(endpoint))
        return lane

    def lane_size(self, endpoint: Endpoint) -> int:
        """Calls of ``endpoint`` allowed in flight at once now: ``max_concurrency``, or a second of calls at the
        endpoint's rate (at most ``LANE_MAX_CALLS``) once that rate is known to be under Iterable's limit.

        With a fixed 8, 30 calls/s needs every answer within 0.27 s; on a loaded machine answers take longer (a
        trace of bench_ceiling saw 30 calls in trackPurchase's lane for seconds while the emulator counted 4-19 a
        second; issue 19). A probe that has not found its limit yet keeps ``max_concurrency``: every call in flight
        when it crosses the limit is answered 429.
        """
        base = self.config.max_concurrency
        bucket = self.limiter.bucket(endpoint)
        if bucket is None or (isinstance(bucket, ProbingBucket) and bucket.limit is None):
            return base
        return max(base, min(LANE_MAX_CALLS, math.ceil(bucket.rate * LANE_SECONDS)))

    async def _send(self, endpoint: Endpoint, body: Mapping[str, JSONValue], items: int) -> dict[str, Any]:
        while not self._running.is_set():
            await self._running.wait()
        async with self._lane(endpoint):
            await self.limiter.acquire(endpoint)
            BATCH_SIZE.labels(endpoint.value).observe(items)
            self.stats.calls[endpoint.value] += 1
            self.stats.items_sent[endpoint.value] += items
            return await self.client.call(endpoint, body)

    async def _call(self, endpoint: Endpoint, body: Mapping[str, JSONValue], items: int) -> dict[str, Any]:
        """``_send``, except that a refused users/updateEmail is judged against Iterable's profiles
        (``streams.iterable.email_change``): already applied is a success, a profile that is not
        visible yet is retried, and a new address with a profile of its own is a conflict."""
        try:
            return await self._send(endpoint, body, items)
        except Rejected as exc:
            if endpoint is not Endpoint.USERS_UPDATE_EMAIL or exc.code not in RECHECKED_CODES:
                raise
            verdict = judge(body, exc.code, *await self._profiles(body))
            answer: dict[str, Any] = {"status": exc.status, "code": exc.code, "response": exc.response}
            if verdict is EmailChange.APPLIED:
                log.info("%s answered %s, but the change was already applied: delivered", endpoint.value, exc.code)
                return {}
            if verdict is EmailChange.NOT_VISIBLE:
                raise UserNotYetVisible(
                    f"{endpoint.value}: Iterable does not find the profile to move (yet)", **answer
                ) from exc
            if verdict is EmailChange.CONFLICT:
                raise Rejected(_EMAIL_CONFLICT, reason=Reason.EMAIL_ALREADY_EXISTS, **answer) from exc
            raise

    async def _profiles(
        self, body: Mapping[str, JSONValue]
    ) -> tuple[dict[str, Any] | None, dict[str, Any] | None]:
        """The profiles of a users/updateEmail body's current identifier and of its new email.

        Not throttled: the reads follow only a refused users/updateEmail, far below their 100/s (§2.9).
        """
        while not self._running.is_set():
            await self._running.wait()
        async with self._lane(Endpoint.USERS_UPDATE_EMAIL):
            current_email, current_id = body.get("currentEmail"), body.get("currentUserId")
            if current_email is not None:
                current = await self.client.get_user_by_email(str(current_email))
            else:
                current = await self.client.get_user_by_id(str(current_id))
            return current, await self.client.get_user_by_email(str(body.get("newEmail")))

    def _dead(
        self,
        request: IterableRequest,
        error: DeliveryError | None,
        attempts: int,
        *,
        reason: str | None = None,
        detail: str | None = None,
        response: Any = None,
    ) -> Outcome:
        return Outcome(
            request=request,
            delivered=False,
            reason=reason or (error.reason.value if error is not None else Reason.ITERABLE_REJECTED.value),
            detail=detail or (error.message if error is not None else ""),
            status=error.status if error is not None else 200,
            code=error.code if error is not None else None,
            response=_json_text(response if error is None else error.response),
            attempts=attempts,
        )

    async def _run(
        self, call: Call, requests: Sequence[IterableRequest], outcomes: list[Outcome | None]
    ) -> None:
        """Drive one call until each of its requests has an outcome."""
        endpoint = call.endpoint
        items = list(call.indexes)
        policy = self.config.retry
        attempt = 0  # consecutive transient failures of this call
        tries: Counter[int] = Counter()
        not_found: Counter[int] = Counter()
        while items:
            body = call_body(endpoint, [requests[i].body for i in items])
            tries.update(items)
            try:
                result = await self._call(endpoint, body, len(items))
            except BadApiKey:
                self._pause()
                continue
            except UserNotYetVisible as exc:  # a single events/track
                i = items[0]
                delay = next_delay(not_found[i], exc, policy, self._rand)
                if delay is None:
                    outcomes[i] = self._dead(requests[i], exc, tries[i])
                    return
                not_found[i] += 1
                self._retried(endpoint, exc)
                await self._sleep(delay)
                continue
            except RetriableDelivery as exc:
                if isinstance(exc, RateLimited):
                    self.limiter.on_rate_limited(endpoint, exc.retry_after)
                delay = next_delay(attempt, exc, policy, self._rand)
                if delay is None:
                    for i in items:
                        outcomes[i] = self._dead(requests[i], exc, tries[i])
                    return
                attempt += 1
                self._retried(endpoint, exc)
                await self._sleep(delay)
                continue
            except Rejected as exc:
                if call.bulk and len(items) > 1:
                    # One bad record fails a whole bulk request (§6.3): resend one by one to find it.
                    log.info(
                        "%s answered %s %s for %d items: resending them one by one",
                        endpoint.value,
                        exc.status,
                        exc.code,
                        len(items),
                    )
                    await self._isolate(endpoint, items, requests, outcomes)
                    return
                for i in items:
                    outcomes[i] = self._dead(requests[i], exc, tries[i])
                return
            self.limiter.on_success(endpoint)
            attempt = 0
            if not call.bulk:
                outcomes[items[0]] = Outcome(requests[items[0]], True, attempts=tries[items[0]])
                return
            again, single = self._settle_bulk(endpoint, result, items, requests, outcomes, tries, not_found)
            if single:
                await self._isolate(endpoint, single, requests, outcomes)
            if again:
                probe = UserNotYetVisible(f"{endpoint.value}: users not found yet")
                delay = next_delay(max(not_found[i] for i in again) - 1, probe, policy, self._rand)
                self._retried(endpoint, probe)
                await self._sleep(delay if delay is not None else policy.user_not_visible_delay)
            items = again

    def _settle_bulk(
        self,
        endpoint: Endpoint,
        result: dict[str, Any],
        items: list[int],
        requests: Sequence[IterableRequest],
        outcomes: list[Outcome | None],
        tries: Counter[int],
        not_found: Counter[int],
    ) -> tuple[list[int], list[int]]:
        """Give each item of an accepted bulk call its outcome from Iterable's per-item answer.

        Returns the items to send again in the same call (users not visible yet) and those to resend
        one by one (the answer does not say which of them failed).
        """
        policy = self.config.retry
        failures, ambiguous = _bulk_failures(endpoint, result, [requests[i].body for i in items])
        again: list[int] = []
        single: list[int] = []
        for pos, i in enumerate(items):
            failure = failures.get(pos)
            if failure is None:
                outcomes[i] = Outcome(requests[i], True, attempts=tries[i])
            elif pos in ambiguous:
                single.append(i)
            elif failure in _FORGOTTEN:
                outcomes[i] = self._dead(
                    requests[i],
                    None,
                    tries[i],
                    reason=Reason.FORGOTTEN.value,
                    detail=f"{endpoint.value}: the user is GDPR-forgotten in Iterable ({failure})",
                )
            elif failure in _NOT_FOUND:
                if not_found[i] >= policy.user_not_visible_attempts:
                    outcomes[i] = self._dead(
                        requests[i],
                        None,
                        tries[i],
                        reason=Reason.USER_NOT_FOUND.value,
                        detail=f"{endpoint.value}: user not found ({failure})",
                        response=result,
                    )
                else:
                    not_found[i] += 1
                    again.append(i)
            else:
                outcomes[i] = self._dead(
                    requests[i], None, tries[i], detail=f"{endpoint.value}: {failure}", response=result
                )
        return again, single

    async def _isolate(
        self,
        bulk: Endpoint,
        items: list[int],
        requests: Sequence[IterableRequest],
        outcomes: list[Outcome | None],
    ) -> None:
        single = SINGLE_OF[bulk]
        await asyncio.gather(*(self._run(Call(single, (i,)), requests, outcomes) for i in items))

    def _retried(self, endpoint: Endpoint, error: DeliveryError) -> None:
        self.stats.retries += 1
        ITERABLE_RETRIES.labels(endpoint.value, error.reason.value).inc()

    async def aclose(self) -> None:
        """Stop the key probe."""
        task = self._probe_task
        if task is not None and not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task


def _bulk_failures(
    endpoint: Endpoint, result: Mapping[str, Any], bodies: Sequence[Mapping[str, JSONValue]]
) -> tuple[dict[int, str], set[int]]:
    """Which items of a bulk 200 failed, and why (the failedUpdates list that named them).

    Iterable names failures by identifier, not position (§3.3), so an item fails when its email
    or userId is listed (or its eventName is disallowed). The second result holds positions that
    share a per-record failure (invalidData*) with other items of the same identifier: the answer
    cannot say which of them failed, so they are resent one by one.
    """
    failed = result.get("failedUpdates")
    lists: dict[str, set[str]] = {}
    sources = [failed if isinstance(failed, dict) else {}, result]
    for name in (*_EMAIL_LISTS, *_USER_ID_LISTS):
        values: set[str] = set()
        for source in sources:
            found = source.get(name)
            if isinstance(found, list):
                values.update(str(v) for v in found)
        if values:
            lists[name] = values
    disallowed = result.get("disallowedEventNames")
    blocked = {str(v) for v in disallowed} if isinstance(disallowed, list) else set()
    failures: dict[int, str] = {}
    for pos, body in enumerate(bodies):
        if blocked and body.get("eventName") in blocked:
            failures[pos] = "disallowedEventNames"
        elif (listed := _listed_in(lists, body)) is not None:
            failures[pos] = listed
    ambiguous: set[int] = set()
    if endpoint is Endpoint.USERS_BULK_UPDATE:
        keys: Counter[tuple[Any, Any]] = Counter((b.get("email"), b.get("userId")) for b in bodies)
        for pos, name in failures.items():
            body = bodies[pos]
            if name in _PER_RECORD and keys[(body.get("email"), body.get("userId"))] > 1:
                ambiguous.add(pos)
    fail_count = result.get("failCount")
    if isinstance(fail_count, int) and fail_count > len(failures):
        log.warning(
            "%s reported %d failures but only %d could be matched to items",
            endpoint.value,
            fail_count,
            len(failures),
        )
    return failures, ambiguous


def _listed_in(lists: Mapping[str, set[str]], body: Mapping[str, JSONValue]) -> str | None:
    """The first failure list naming ``body``'s email, else the first naming its userId, else None."""
    for field_name, names in (("email", _EMAIL_LISTS), ("userId", _USER_ID_LISTS)):
        value = body.get(field_name)
        if value is not None:
            for name in names:
                if str(value) in lists.get(name, ()):
                    return name
    return None
