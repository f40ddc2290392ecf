"""The one way out for what will not be sent: a counted, logged record on the dead-letter topic."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any, TypeVar

from streams import metrics
from streams.codecs import FrameItem, dead_letter_for_undecodable, decode_frame, encode_dead_letter
from streams.errors import StreamsError
from streams.model import DeadLetter, Event

from ._frame_sizes import FrameSizes
from ._records import InputRecord

__all__ = ["DeadLetterSink", "SendRecord"]

log = logging.getLogger("streams.stages")

SendRecord = Callable[[bytes | None, bytes], Awaitable[Any]]
"""Sends (key, value) to the dead-letter topic; in the worker, faust's ``Topic.send``."""

T = TypeVar("T")


class DeadLetterSink:
    """Writes dead letters: a metric by reason, a log line with the source coordinates (no personal
    data: the detail names fields, not values), and the Avro record on the dead-letter topic."""

    def __init__(self, send: SendRecord, frame_sizes: FrameSizes | None = None) -> None:
        self._send = send
        self.frame_sizes = frame_sizes
        """Told the size of every frame ``frame_items`` reads, when set."""

    async def __call__(self, letter: DeadLetter, key: bytes | None) -> None:
        metrics.DEAD_LETTERS.labels(letter.reason).inc()
        log.warning("dead letter %s: %s", letter.reason, letter.detail,
                    extra={"topic": letter.source_topic, "partition": letter.source_partition,
                           "offset": letter.source_offset})
        await self._send(key, encode_dead_letter(letter))

    async def for_event(self, error: StreamsError | tuple[str, str], event: Event, item: FrameItem) -> None:
        """A dead letter for an event a stage could not handle: a raised error, or (reason, detail)."""
        reason, detail = (error.reason.value, str(error)) if isinstance(error, StreamsError) else error
        topic, partition, offset = item.source
        await self(DeadLetter(reason=reason, detail=detail, failed_at=datetime.now(UTC), source_topic=topic,
                              source_partition=partition, source_offset=offset, event=event), item.key)

    async def frame_items(self, frame: InputRecord, decode: Callable[[bytes], T]) -> list[tuple[FrameItem, T]]:
        """Each record of an internal frame with its decoded value.

        What does not decode (another version's format, a foreign producer) becomes a dead letter
        with its bytes instead of stopping the worker on the same message forever.
        """
        message = frame.message
        try:
            items = decode_frame(frame.value)
        except StreamsError as exc:
            await self(dead_letter_for_undecodable(frame.value, exc, message.topic, message.partition, message.offset,
                                                   datetime.now(UTC)), frame.key)
            return []
        if self.frame_sizes is not None:
            self.frame_sizes.observe(message.topic, len(items))
        decoded: list[tuple[FrameItem, T]] = []
        for item in items:
            try:
                decoded.append((item, decode(item.value)))
            except StreamsError as exc:
                await self(dead_letter_for_undecodable(item.value, exc, *item.source, datetime.now(UTC)), item.key)
        return decoded
