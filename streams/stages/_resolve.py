"""Stage "resolve": attach each event's person, through the ``aliases`` table; drop anonymous events."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

from streams import metrics
from streams.codecs import Source, decode_event_internal
from streams.model import Event
from streams.outbox import Outbox
from streams.steps import resolve_step

from ._dead_letters import DeadLetterSink
from ._records import EnterRecord, InputRecord, nothing_to_enter
from ._route import Decoded
from ._tables import AliasTable

__all__ = ["ResolveStage"]


class ResolveStage:
    """Resolves events of one device partition to their person and hands them on to the partition
    of that person; events of devices not linked to a person by then (by event time) are dropped
    quietly and counted (``anonymous``)."""

    def __init__(self, aliases: AliasTable, dead_letters: DeadLetterSink, to_apply: Outbox,
                 enter: EnterRecord = nothing_to_enter) -> None:
        self.aliases = aliases
        self.dead_letters = dead_letters
        self.to_apply = to_apply
        self.enter = enter

    async def handle(self, frames: Sequence[InputRecord]) -> None:
        """Resolve a batch of by-device frames; the output is handed to the producer before this returns."""
        drops: Counter[str] = Counter()
        for frame in frames:
            self.enter(frame)
            for item, event in await self.dead_letters.frame_items(frame, decode_event_internal):
                self._resolve(event, item.value, item.source, drops)
        self.to_apply.flush()
        metrics.add_counts(metrics.EVENTS_DROPPED, drops)

    def handle_decoded(self, decoded: Sequence[Decoded]) -> None:
        """Resolve source records already keyed by device (``FPI_SOURCE_KEYED_BY_DEVICE``), decoded
        by ``RouteStage.decode``; the output is handed to the producer before this returns."""
        drops: Counter[str] = Counter()
        for record, source, event, value in decoded:
            self.enter(record)
            self._resolve(event, value, source, drops)
        self.to_apply.flush()
        metrics.add_counts(metrics.EVENTS_DROPPED, drops)

    def _resolve(self, event: Event, value: bytes, source: Source, drops: Counter[str]) -> None:
        resolved = resolve_step(event, self.aliases)
        if resolved.person_key is None:
            drops[resolved.drop.value if resolved.drop else "anonymous"] += 1
            return
        self.to_apply.add(resolved.person_key.encode(), value, source)
