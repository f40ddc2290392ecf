"""Stage "apply": the mapping core decides each event's Iterable requests, over the ``identities`` table
(and ``carts``, when carts are kept); it also obeys the control records of ``forget`` / ``unforget`` (``_control``)."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections import Counter
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any, Generic, Protocol, TypeVar

from streams import metrics
from streams.codecs import Source, decode_event_internal, encode_request
from streams.errors import StreamsError
from streams.identity import forgotten_key
from streams.mapping import MappingConfig
from streams.mapping.cart import coalesce
from streams.model import QUIET_DROPS, DropReason, Event, Identity, IterableRequest
from streams.outbox import Outbox
from streams.projects import Routing, unrouted_detail
from streams.steps import apply_step

from ._control import Control, control_from_bytes, is_control
from ._dead_letters import DeadLetterSink
from ._records import EnterRecord, InputRecord, let_others_run, nothing_to_enter
from ._tables import CartTable, DeviceTable, IdentityTable, SubscriptionTable

__all__ = ["ApplyStage"]

log = logging.getLogger("streams.stages")


def _decode(raw: bytes) -> Event | Control:
    return control_from_bytes(raw) if is_control(raw) else decode_event_internal(raw)


class _HeldIdentities:
    """The ``identities`` table as one batch sees it: its changes (identities, deletions, forgotten-markers)
    are held, with the frame each came from, until the batch's requests are in Kafka."""

    def __init__(self, table: IdentityTable) -> None:
        self.table = table
        self.changed: dict[str, tuple[Identity | None, Any]] = {}
        self.markers: dict[str, tuple[bool, Any]] = {}
        self.frame: Any = None

    def get(self, person_key: str, /) -> Identity | None:
        held = self.changed.get(person_key)
        return held[0] if held is not None else self.table.get(person_key)

    def __setitem__(self, person_key: str, identity: Identity, /) -> None:
        self.changed[person_key] = (identity, self.frame)

    def __contains__(self, marker: object, /) -> bool:
        """Whether ``marker`` (a ``forgotten_key``) is set: the forgotten persons, as ``apply_step`` reads them."""
        if isinstance(marker, str) and marker in self.markers:
            return self.markers[marker][0]
        return marker in self.table

    def control(self, person_key: str, control: Control) -> None:
        marker = forgotten_key(person_key)
        if control is Control.FORGET:
            self.changed[person_key] = (None, self.frame)
            self.markers[marker] = (True, self.frame)
        else:
            self.markers[marker] = (False, self.frame)
        # The marker only: the person key (an email, maybe) is not logged.
        log.info("control record %s for person %s", control.value, marker)

    def write(self, enter: EnterRecord) -> None:
        """Write the held changes, each through the frame it came from (its changelog partition)."""
        for person_key, (identity, frame) in self.changed.items():
            enter(frame)
            if identity is None:
                self.table.delete(person_key)
            else:
                self.table[person_key] = identity
        for marker, (forgotten, frame) in self.markers.items():
            enter(frame)
            self.table.set_forgotten(marker, forgotten)


V = TypeVar("V")


class _PersonTable(Protocol[V]):
    def get(self, person_key: str, /) -> V | None: ...

    def __setitem__(self, person_key: str, value: V, /) -> None: ...

    def delete(self, person_key: str, /) -> None: ...


class _HeldByPerson(Generic[V]):
    """A table keyed by person (``carts``, ``devices``) as one batch sees it: its changes are held, with the frame
    each came from, until the batch's requests are in Kafka (as ``_HeldIdentities``)."""

    def __init__(self, table: _PersonTable[V] | None) -> None:
        self.table = table
        self.changed: dict[str, tuple[V | None, Any]] = {}
        self.frame: Any = None

    def get(self, person_key: str, /) -> V | None:
        held = self.changed.get(person_key)
        if held is not None:
            return held[0]
        return self.table.get(person_key) if self.table is not None else None

    def __setitem__(self, person_key: str, value: V, /) -> None:
        self.changed[person_key] = (value, self.frame)

    def forget(self, person_key: str) -> None:
        if self.table is not None:
            self.changed[person_key] = (None, self.frame)

    def write(self, enter: EnterRecord) -> None:
        if self.table is None:
            return
        for person_key, (value, frame) in self.changed.items():
            enter(frame)
            if value is None:
                self.table.delete(person_key)
            else:
                self.table[person_key] = value


class ApplyStage:
    """Maps the events of one person partition to Iterable requests (or drops with a reason) and
    hands the requests on to the partition of their person.

    A batch's identity changes reach the ``identities`` table only once its requests are in Kafka.
    Written earlier, a crash could leave the table ahead of the requests: the redelivered identifies
    would then look older than the last one applied and be dropped as stale, and the fields only
    they carried would never reach Iterable.

    The same holds for the ``carts`` table (``carts``; only when carts are kept): written earlier, a crash
    would have the redelivered events applied to a cart that already holds them. A cart also remembers the
    events applied to it, for a crash between the table write and the offset commit (``mapping.cart``); of one
    person's ``updateCart`` requests in a batch only the last is sent (``mapping.cart.coalesce``). And
    for ``devices`` (push tokens registered; only with ``FPI_PUSH_APP_NAME``): written earlier, a crash could
    leave a token marked registered whose ``registerDeviceToken`` never reached Kafka; and for ``subscriptions``
    (only with a subscription trait set), a subscription change marked sent that never was.

    A ``forget`` control record deletes the person's identity, cart, devices and subscriptions (tombstones in
    the changelogs) and sets their forgotten-marker; from then on their events are dropped ``forgotten`` (counted, not
    dead-lettered: a dead letter would keep their data) until an ``unforget`` record clears the marker.
    """

    def __init__(self, identities: IdentityTable, config: MappingConfig, dead_letters: DeadLetterSink,
                 to_send: Outbox, enter: EnterRecord = nothing_to_enter, carts: CartTable | None = None,
                 devices: DeviceTable | None = None, subscriptions: SubscriptionTable | None = None) -> None:
        self.identities = identities
        self.carts = carts
        self.devices = devices
        self.subscriptions = subscriptions
        self.config = config
        self.dead_letters = dead_letters
        self.to_send = to_send
        self.enter = enter
        self.routing: Routing | None = None
        """With a routing file (``FPI_PROJECTS_FILE``, set by the shell): each event is mapped with its project's
        settings and its requests carry the project's name; an event no project claims is dead-lettered
        ``no_project``."""

    async def handle(self, frames: Sequence[InputRecord]) -> None:
        """Apply a batch of by-person frames; returns once its requests are in Kafka and the table written."""
        drops: Counter[str] = Counter()
        endpoints: Counter[str] = Counter()
        held = _HeldIdentities(self.identities)
        carts = _HeldByPerson(self.carts)
        devices = _HeldByPerson(self.devices)
        subscriptions = _HeldByPerson(self.subscriptions)
        out: list[tuple[bytes, IterableRequest, Source]] = []
        for position, frame in enumerate(frames):
            if position:
                await let_others_run()
            self.enter(frame)
            held.frame = carts.frame = devices.frame = subscriptions.frame = frame
            for item, event in await self.dead_letters.frame_items(frame, _decode):
                assert item.key is not None, "by-person items are keyed by person"
                if isinstance(event, Control):
                    held.control(item.key.decode(), event)
                    if event is Control.FORGET:
                        carts.forget(item.key.decode())
                        devices.forget(item.key.decode())
                        subscriptions.forget(item.key.decode())
                    continue
                config, project = self.config, ""
                if self.routing is not None:
                    chosen = self.routing.choose(event)
                    if chosen is None:
                        drops[DropReason.NO_PROJECT.value] += 1
                        await self.dead_letters.for_event(
                            (DropReason.NO_PROJECT.value, unrouted_detail(event, self.routing)), event, item)
                        continue
                    config, project = chosen.mapping, chosen.name
                try:
                    decision = apply_step(event, item.key.decode(), held, config, datetime.now(UTC), held,
                                          carts if self.carts is not None else None,
                                          devices if self.devices is not None else None,
                                          subscriptions if self.subscriptions is not None else None)
                except StreamsError as exc:
                    await self.dead_letters.for_event(exc, event, item)
                    continue
                if decision.drop_reason is not None:
                    drops[decision.drop_reason.value] += 1
                    if decision.drop_reason not in QUIET_DROPS:
                        reason = decision.drop_reason.value
                        await self.dead_letters.for_event((reason, decision.detail or reason), event, item)
                    continue
                for request in decision.requests:
                    if project:
                        request = dataclasses.replace(request, project=project)
                    out.append((item.key, request, item.source))
        # A burst of one person's cart changes in the batch makes one updateCart, the last (mapping.cart.coalesce).
        kept = coalesce([request for _, request, _ in out]) if self.carts is not None else range(len(out))
        for index in kept:
            key, request, source = out[index]
            endpoints[request.endpoint.value] += 1
            self.to_send.add(key, encode_request(request), source)
        if len(kept) < len(out):
            metrics.CART_UPDATES_COALESCED.inc(len(out) - len(kept))
        await asyncio.gather(*self.to_send.flush())
        held.write(self.enter)
        carts.write(self.enter)
        devices.write(self.enter)
        subscriptions.write(self.enter)
        metrics.add_counts(metrics.EVENTS_DROPPED, drops)
        metrics.add_counts(metrics.REQUESTS_OUT, endpoints)
