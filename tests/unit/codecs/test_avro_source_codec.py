"""SourceCodec: what the source agent calls; poison comes back as a counted dead letter."""

from __future__ import annotations

from datetime import UTC, datetime

import httpx
import pytest

from streams.codecs import EventDecoder, SchemaRegistryClient, SourceCodec, encode_event
from streams.errors import RegistryUnavailable, UnknownSchemaId
from streams.metrics import DECODE_FAILURES
from streams.model import DeadLetter
from tests.unit.codecs.avro_samples import ORDER_COMPLETED

NOW = datetime(2024, 6, 1, tzinfo=UTC)


def _count(reason: str) -> float:
    return DECODE_FAILURES.labels(reason)._value.get()  # type: ignore[no-any-return]


class TestSourceCodec:
    async def test_prepare_then_decode(self) -> None:
        http = httpx.AsyncClient(transport=httpx.MockTransport(lambda r: httpx.Response(404, json={})))
        codec = SourceCodec(EventDecoder(), SchemaRegistryClient(http, "http://r"))
        raw = encode_event(ORDER_COMPLETED)
        await codec.prepare(raw)  # the bundled id needs no registry call
        assert codec.decode(raw) == ORDER_COMPLETED
        with pytest.raises(UnknownSchemaId):
            await codec.prepare(encode_event(ORDER_COMPLETED, schema_id=8))

    async def test_valid_event(self) -> None:
        result = await SourceCodec(EventDecoder()).decode_or_dead_letter(
            encode_event(ORDER_COMPLETED), topic="t", partition=0, offset=1, now=NOW
        )
        assert result == ORDER_COMPLETED

    @pytest.mark.parametrize(
        ("raw", "reason"),
        [(b"\x07abc", "unknown_magic_byte"), (b"\x00\x00\x00\x00\x09xx", "unknown_schema"),
         (encode_event(ORDER_COMPLETED)[:-2], "truncated"), (b"", "undecodable")],
    )
    async def test_poison_becomes_a_counted_dead_letter(self, raw: bytes, reason: str) -> None:
        before = _count(reason)
        codec = SourceCodec(EventDecoder())
        result = await codec.decode_or_dead_letter(raw, topic="src", partition=3, offset=77, now=NOW)
        assert isinstance(result, DeadLetter)
        assert (result.reason, result.source_topic, result.source_partition, result.source_offset) == (
            reason, "src", 3, 77)
        assert result.original_bytes == raw
        assert _count(reason) == before + 1

    async def test_id_unknown_to_the_registry_is_a_dead_letter(self) -> None:
        http = httpx.AsyncClient(transport=httpx.MockTransport(lambda r: httpx.Response(404, json={})))
        codec = SourceCodec(EventDecoder(), SchemaRegistryClient(http, "http://r"))
        raw = encode_event(ORDER_COMPLETED, schema_id=55)
        result = await codec.decode_or_dead_letter(raw, topic="src", partition=0, offset=5, now=NOW)
        assert isinstance(result, DeadLetter) and result.reason == "unknown_schema"

    async def test_registry_outage_raises_instead_of_dead_lettering(self) -> None:
        http = httpx.AsyncClient(transport=httpx.MockTransport(lambda r: httpx.Response(503)))
        codec = SourceCodec(EventDecoder(), SchemaRegistryClient(http, "http://r"))
        with pytest.raises(RegistryUnavailable):
            await codec.decode_or_dead_letter(
                encode_event(ORDER_COMPLETED, schema_id=55), topic="s", partition=0, offset=0, now=NOW
            )
