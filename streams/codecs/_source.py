"""What a source-topic agent calls per message: bytes in, an ``Event`` or a ``DeadLetter`` out.

Faust acks a message whose value codec raises and drops it silently (faust-notes.md §2), so the
agent consumes raw bytes and calls ``SourceCodec.decode`` inside its loop: poison never raises,
it comes back as a dead letter to write, and is counted in ``fpi_decode_failures_total``.
"""

from __future__ import annotations

from datetime import datetime

from streams.codecs._event import EventDecoder
from streams.codecs._internal import dead_letter_for_undecodable
from streams.codecs._registry import SchemaRegistryClient
from streams.errors import DecodeError, InvalidEvent
from streams.metrics import DECODE_FAILURES
from streams.model import DeadLetter, Event

__all__ = ["SourceCodec"]


class SourceCodec:
    """An ``EventDecoder`` plus, optionally, the registry that teaches it unknown schema ids.

    Two ways to use it: ``await prepare(raw)`` then ``decode(raw)`` (both raise), or
    ``await decode_or_dead_letter(raw, ...)`` (raises only ``RegistryUnavailable``).
    """

    def __init__(self, decoder: EventDecoder, registry: SchemaRegistryClient | None = None) -> None:
        self.decoder = decoder
        self.registry = registry

    async def prepare(self, raw: bytes | None) -> None:
        """Fetch the writer schema ``raw`` names if the decoder does not know it (no-op without a
        registry). Raises ``UnknownSchemaId`` (dead-letter), ``RegistryUnavailable`` (retry: not the
        message's fault) or ``DecodeError`` (the schema is not a source event)."""
        if self.registry is not None:
            await self.registry.ensure(self.decoder, raw)

    def decode(self, raw: bytes | None) -> Event:
        """``EventDecoder.decode``: the event, or ``DecodeError`` / ``InvalidEvent``."""
        return self.decoder.decode(raw)

    async def decode_or_dead_letter(
        self, raw: bytes | None, *, topic: str, partition: int, offset: int, now: datetime
    ) -> Event | DeadLetter:
        """The event in ``raw``, or the dead letter that records why there is none.

        Raises only ``RegistryUnavailable`` (retriable: the message is fine, the registry is not;
        retry or stop, never commit past it).
        """
        try:
            await self.prepare(raw)
            return self.decoder.decode(raw)
        except (DecodeError, InvalidEvent) as exc:
            DECODE_FAILURES.labels(exc.reason.value).inc()
            return dead_letter_for_undecodable(raw, exc, topic, partition, offset, now)
