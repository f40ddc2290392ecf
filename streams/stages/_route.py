"""Stage "route": decode source records and re-key them by device for "resolve"."""

from __future__ import annotations

from collections import Counter
from collections.abc import Awaitable, Sequence
from datetime import UTC, datetime
from typing import Any, Protocol

from streams import metrics
from streams.codecs import Source, encode_event_internal
from streams.errors import Reason
from streams.identity import routing_key
from streams.model import DeadLetter, Event
from streams.outbox import Outbox
from streams.replay import REPLAY_SOURCE_HEADER

from ._dead_letters import DeadLetterSink
from ._records import InputRecord

__all__ = ["Decoded", "RouteStage", "SourceDecoder", "source_of"]

DEAD_LETTER_SAMPLE_BYTES = 65_536
"""How much of an event too large to forward its dead letter keeps."""

Decoded = tuple[InputRecord, Source, Event, bytes]
"""A source record that decoded and fits: the record, where it really comes from, the event, and the
event in the internal format."""


class SourceDecoder(Protocol):
    """``DecoderService.decode``: the event, or its dead letter (waits while the registry is down)."""

    async def decode(self, raw: bytes | None, *, topic: str, partition: int, offset: int,
                     now: datetime) -> Event | DeadLetter: ...


def source_of(record: InputRecord) -> Source:
    """Where a source record really comes from: a replayed copy names its original in a header."""
    raw = (record.headers or {}).get(REPLAY_SOURCE_HEADER)
    if raw:
        topic, partition, offset = raw.decode().rsplit(":", 2)
        return topic, int(partition), int(offset)
    message = record.message
    return message.topic, message.partition, message.offset


class RouteStage:
    """Decodes source records (poison and events too large for the internal topics become dead
    letters) and hands each event on to the partition of its device."""

    def __init__(self, decoder: SourceDecoder, dead_letters: DeadLetterSink, to_resolve: Outbox,
                 max_record_bytes: int) -> None:
        self.decoder = decoder
        self.dead_letters = dead_letters
        self.to_resolve = to_resolve
        self.max_record_bytes = max_record_bytes

    async def handle(self, batch: Sequence[InputRecord]) -> list[Awaitable[Any]]:
        """Decode and re-key a batch; its output is handed to the producer before this returns, and what is
        returned finishes once Kafka has it."""
        for _, source, event, value in await self.decode(batch):
            key = routing_key(event)
            self.to_resolve.add(key.encode() if key else None, value, source)
        return self.to_resolve.flush()

    async def decode(self, batch: Sequence[InputRecord]) -> list[Decoded]:
        """Each record of ``batch`` that decodes and fits, counted by event type."""
        usable: list[Decoded] = []
        seen: Counter[str] = Counter()
        now = datetime.now(UTC)  # a dead letter's failed_at: the batch's time
        for record in batch:
            message = record.message
            result = await self.decoder.decode(record.value, topic=message.topic, partition=message.partition,
                                               offset=message.offset, now=now)
            if isinstance(result, DeadLetter):
                await self.dead_letters(result, record.key)
                continue
            seen[result.type.value] += 1
            source = source_of(record)
            value = encode_event_internal(result)
            if await self._fits(record, source, value):
                usable.append((record, source, result, value))
        metrics.add_counts(metrics.EVENTS_IN, seen)
        return usable

    async def _fits(self, record: InputRecord, source: Source, value: bytes) -> bool:
        """False (and a dead letter) for an event too large for the internal topics: forwarding it
        would fail in the producer and stop the worker on the same record forever."""
        if len(value) <= self.max_record_bytes:
            return True
        await self.dead_letters(DeadLetter(
            reason=Reason.TOO_LARGE.value, failed_at=datetime.now(UTC),
            detail=f"event of {len(value)} bytes is over FPI_MAX_RECORD_BYTES={self.max_record_bytes}; "
                   f"original_bytes holds its first {DEAD_LETTER_SAMPLE_BYTES} bytes",
            source_topic=source[0], source_partition=source[1], source_offset=source[2],
            original_bytes=(record.value or b"")[:DEAD_LETTER_SAMPLE_BYTES]), record.key)
        return False
