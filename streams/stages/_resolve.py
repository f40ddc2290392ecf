"""Stage "resolve": attach each event's person, through the ``aliases`` table; drop anonymous events, or
hold them in the ``held`` table until their device is linked (``FPI_HOLD_ANONYMOUS_SECONDS``); obey the control
records of ``forget`` / ``unforget`` (``_control``: the person's links are deleted)."""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from streams import metrics
from streams.codecs import Source, decode_event_routing
from streams.identity import Held, HoldRule, expired, forgotten_key
from streams.model import DropReason, Event
from streams.outbox import Outbox
from streams.steps import hold_step, resolve_step

from ._control import Control, control_from_bytes, is_control
from ._dead_letters import DeadLetterSink
from ._records import EnterRecord, InputRecord, let_others_run, nothing_to_enter
from ._route import Decoded
from ._tables import AliasTable, HeldEntry, HeldRecord, HeldTable

__all__ = ["ResolveStage"]

log = logging.getLogger("streams.stages")


def _decode(raw: bytes) -> Event | Control:
    return control_from_bytes(raw) if is_control(raw) else decode_event_routing(raw)


class _HeldView:
    """The ``held`` table as one batch sees it: its changes are kept, with the record each came from,
    until the batch's output is in Kafka (see ``ResolveStage``)."""

    def __init__(self, table: HeldTable) -> None:
        self.table = table
        self.changed: dict[str, tuple[HeldEntry, Any]] = {}
        self.record: Any = None
        self.partition = 0
        self.last_record: dict[int, Any] = {}
        """The batch's last record of each partition: the sweep writes that partition's changelog through it."""
        self.counts: Counter[str] = Counter()
        """The batch's tallies of ``fpi_anonymous_held_total`` by outcome."""

    def at(self, record: InputRecord) -> None:
        self.record = record
        self.partition = record.message.partition
        self.last_record[self.partition] = record

    def get(self, device: str, /) -> list[Held[HeldRecord]] | None:
        changed = self.changed.get(device)
        if changed is not None:
            return changed[0].events
        entry = self.table.get(device)
        return entry.events if entry is not None else None

    def __setitem__(self, device: str, events: list[Held[HeldRecord]], /) -> None:
        self.changed[device] = (HeldEntry(self.partition, events), self.record)


class ResolveStage:
    """Resolves events of one device partition to their person and hands them on to the partition
    of that person; events of devices not linked to a person by then (by event time) are dropped
    quietly and counted (``anonymous``).

    With a ``HoldRule`` such events wait in the ``held`` table instead (``steps.hold_step``): the event
    that links their device is handed on first, then those it releases, in event-time order, as the
    person's (the apply stage sees the identify before them). A batch's changes to ``held`` reach the
    table only once its output is in Kafka, so a crash cannot remove held events that were not handed
    on (the redelivered batch releases them again, with the same ids). Expiry: each event of a device
    expires that device's held events older than it by more than the window, and after each batch the
    devices of its partitions whose oldest held event is older than the partition's latest event time by
    more than the window are expired (the sweep; its index lives in memory and is rebuilt from the table
    after a start or a rebalance).

    A ``forget`` control record (one on each by-device partition, keyed by the person key) deletes the links
    to the person stored on its partition and keeps new ones from being stored (``AliasTable.forget``); an
    ``unforget`` record lets them be stored again.
    """

    def __init__(self, aliases: AliasTable, dead_letters: DeadLetterSink, to_apply: Outbox,
                 enter: EnterRecord = nothing_to_enter, held: HeldTable | None = None,
                 hold: HoldRule | None = None) -> None:
        self.aliases = aliases
        self.dead_letters = dead_letters
        self.to_apply = to_apply
        self.enter = enter
        self.held = held
        self.hold = hold if held is not None else None
        self._index: dict[int, dict[str, tuple[datetime, int]]] | None = None
        """partition -> device -> (oldest held event time, events held): what the sweep reads."""
        self._holding = 0
        self._watermarks: dict[int, datetime] = {}

    def reindex(self) -> None:
        """Forget the sweep's index (at a rebalance: partitions came and went); the next batch rebuilds it."""
        self._index = None

    async def handle(self, frames: Sequence[InputRecord]) -> None:
        """Resolve a batch of by-device frames; the output is handed to the producer before this returns
        (and, when holding, is in Kafka before the ``held`` table is written)."""
        drops: Counter[str] = Counter()
        view = self._begin()
        for position, frame in enumerate(frames):
            if position:
                await let_others_run()
            self.enter(frame)
            self.aliases.partition = frame.message.partition
            if view is not None:
                view.at(frame)
            for item, event in await self.dead_letters.frame_items(frame, _decode):
                if isinstance(event, Control):
                    assert item.key is not None, "control records are keyed by person"
                    person_key = item.key.decode()
                    deleted = self.aliases.forget(person_key, event is Control.FORGET)
                    # The marker only: the person key (an email, maybe) is not logged.
                    log.log(logging.INFO if deleted else logging.DEBUG,
                            "control record %s for person %s: %d links deleted on partition %d", event.value,
                            forgotten_key(person_key), deleted, self.aliases.partition)
                    continue
                self._resolve(event, item.value, item.source, drops, view)
        await self._finish(view, drops)

    async def handle_decoded(self, decoded: Sequence[Decoded]) -> None:
        """Resolve source records already keyed by device (``FPI_SOURCE_KEYED_BY_DEVICE``), decoded
        by ``RouteStage.decode``; the output is handed to the producer before this returns."""
        drops: Counter[str] = Counter()
        view = self._begin()
        for record, source, event, value in decoded:
            self.enter(record)
            self.aliases.partition = record.message.partition
            if view is not None:
                view.at(record)
            self._resolve(event, value, source, drops, view)
        await self._finish(view, drops)

    def _resolve(self, event: Event, value: bytes, source: Source, drops: Counter[str],
                 view: _HeldView | None) -> None:
        if view is None or self.hold is None:
            resolved = resolve_step(event, self.aliases)
            if resolved.person_key is None:
                drops[resolved.drop.value if resolved.drop else "anonymous"] += 1
                return
            self.to_apply.add(resolved.person_key.encode(), value, source)
            return
        watermark = self._watermarks.get(view.partition)
        if watermark is None or event.timestamp > watermark:
            self._watermarks[view.partition] = event.timestamp
        resolved = resolve_step(event, self.aliases, self.hold.window)
        outcome = hold_step(event, resolved, (value, source), self.aliases, view, self.hold, self._holding)
        self._holding += outcome.stored - len(outcome.released) - len(outcome.dropped)
        view.counts["held"] += outcome.stored
        view.counts["released"] += len(outcome.released)
        view.counts["expired"] += len(outcome.dropped)
        drops[DropReason.ANONYMOUS.value] += len(outcome.dropped)
        if outcome.overflow:
            view.counts["overflow"] += 1
            drops[DropReason.HOLD_OVERFLOW.value] += 1
            return
        if resolved.person_key is None:
            if not outcome.held:
                drops[resolved.drop.value if resolved.drop else "anonymous"] += 1
            return
        key = resolved.person_key.encode()
        self.to_apply.add(key, value, source)
        for released in outcome.released:
            self.to_apply.add(key, *released.payload)

    def _begin(self) -> _HeldView | None:
        if self.held is None or self.hold is None:
            return None
        if self._index is None:
            self._index = {}
            self._holding = 0
            for device, entry in self.held.entries():
                self._index.setdefault(entry.partition, {})[device] = _summary(entry)
                self._holding += len(entry.events)
        return _HeldView(self.held)

    async def _finish(self, view: _HeldView | None, drops: Counter[str]) -> None:
        if view is None:
            self.to_apply.flush()
        else:
            await asyncio.gather(*self.to_apply.flush())
            for device, (entry, record) in view.changed.items():
                self.enter(record)
                self._put(device, entry)
            swept = self._sweep(view.last_record)
            view.counts["expired"] += swept
            drops[DropReason.ANONYMOUS.value] += swept
            metrics.add_counts(metrics.HELD_EVENTS, +view.counts)
            metrics.HELD_NOW.set(self._holding)
        metrics.add_counts(metrics.EVENTS_DROPPED, drops)

    def _put(self, device: str, entry: HeldEntry) -> None:
        assert self.held is not None and self._index is not None
        self.held.put(device, entry)
        devices = self._index.setdefault(entry.partition, {})
        if entry.events:
            devices[device] = _summary(entry)
        else:
            devices.pop(device, None)

    def _sweep(self, last_record: dict[int, Any]) -> int:
        """Expire the held events of the batch's partitions that no link can claim any more; returns
        how many (written through each partition's last record, so each tombstone or rewrite lands in
        the changelog partition of its device)."""
        assert self.held is not None and self.hold is not None and self._index is not None
        window = self.hold.window
        count = 0
        for partition, record in last_record.items():
            watermark = self._watermarks.get(partition)
            devices = self._index.get(partition, {})
            if watermark is None:
                continue
            for device in [d for d, (oldest, _) in devices.items() if oldest + window < watermark]:
                entry = self.held.get(device)
                if entry is None:  # gone from the table since the index was built
                    self._holding -= devices.pop(device)[1]
                    continue
                kept, gone = expired(entry.events, watermark, window)
                self.enter(record)
                self._put(device, HeldEntry(entry.partition, kept))
                count += len(gone)
        self._holding -= count
        return count


def _summary(entry: HeldEntry) -> tuple[datetime, int]:
    return min(h.time for h in entry.events), len(entry.events)
