"""The registry client and `produce --registry-url` against a real schema registry: Apicurio
Registry (Confluent-compatible API) started from Maven Central jars by dev/registry/registry.sh,
or the one ``SCHEMA_REGISTRY_URL`` points at."""

from __future__ import annotations

from datetime import UTC, datetime

import httpx
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from streams.codecs import (
    SOURCE_V1,
    SOURCE_V2,
    EventDecoder,
    SchemaRegistryClient,
    SourceCodec,
    encode_event,
    parsed_schema,
    schema_text,
    subject_for,
)
from streams.commands.produce import produce_lines
from streams.errors import UnknownSchemaId
from streams.model import DeadLetter, Event
from tests.support import unique
from tests.unit.codecs.avro_samples import SAMPLES

pytestmark = pytest.mark.integration


async def _values(bootstrap: str, topic: str, count: int) -> list[bytes]:
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest")
    await consumer.start()
    try:
        values: list[bytes] = []
        while len(values) < count:
            batch = await consumer.getmany(timeout_ms=10_000)
            assert batch, f"only {len(values)} of {count} messages arrived"
            values += [m.value for records in batch.values() for m in records]
        return values
    finally:
        await consumer.stop()


class TestRealRegistry:
    async def test_register_and_fetch(self, schema_registry_url: str) -> None:
        subject = subject_for(unique("reg"))
        async with httpx.AsyncClient(timeout=10) as http:
            client = SchemaRegistryClient(http, schema_registry_url)
            v1 = await client.register(subject, schema_text(SOURCE_V1))
            assert await client.register(subject, schema_text(SOURCE_V1)) == v1
            v2 = await client.register(subject, schema_text(SOURCE_V2))
            assert v2 != v1 and v1 > 0
            fresh = SchemaRegistryClient(http, schema_registry_url)
            assert [f["name"] for f in (await fresh.get_schema(v2))["fields"]][-1] == "received_at"
            with pytest.raises(UnknownSchemaId):
                await fresh.get_schema(987_654)

    async def test_produce_with_registry_then_decode_v1_and_v2(
        self, kafka_bootstrap: str, schema_registry_url: str
    ) -> None:
        import orjson

        topic = unique("avro-reg")
        events = [SAMPLES["order_completed"], SAMPLES["identify"]]
        lines = [orjson.dumps({
            "type": e.type.value, "messageId": e.message_id, "timestamp": e.timestamp.isoformat(),
            "anonymousId": e.anonymous_id, "userId": e.user_id, "event": e.event_name,
            "properties": dict(e.properties), "traits": dict(e.traits),
        }).decode() for e in events]
        report = await produce_lines(
            lines, bootstrap=kafka_bootstrap, topic=topic, registry_url=schema_registry_url
        )
        assert report.sent == 2 and report.schema_id is not None and report.schema_id > 0

        async with httpx.AsyncClient(timeout=10) as http:
            client = SchemaRegistryClient(http, schema_registry_url)
            v2_id = await client.register(subject_for(topic), schema_text(SOURCE_V2))
            producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap)
            await producer.start()
            try:
                v2_event = SAMPLES["anonymous_page"]
                await producer.send_and_wait(
                    topic, encode_event(v2_event, schema_id=v2_id, schema=parsed_schema(SOURCE_V2)))
                await producer.send_and_wait(topic, encode_event(v2_event, schema_id=987_654))
            finally:
                await producer.stop()

            values = await _values(kafka_bootstrap, topic, 4)
            assert [v[1:5] for v in values[:3]] == [report.schema_id.to_bytes(4, "big")] * 2 + [
                v2_id.to_bytes(4, "big")]
            # A decoder that knows nothing but the registry (no bundled id) reads v1 and v2 data.
            codec = SourceCodec(EventDecoder(bundled=False), SchemaRegistryClient(http, schema_registry_url))
            results = [await codec.decode_or_dead_letter(v, topic=topic, partition=0, offset=i,
                                                         now=datetime.now(UTC)) for i, v in enumerate(values)]
        decoded = results[:3]
        assert all(isinstance(r, Event) for r in decoded)
        assert [r.message_id for r in decoded if isinstance(r, Event)] == [
            "msg-order-1", "msg-id-1", "msg-page-1"]
        assert decoded[2] == v2_event
        assert isinstance(results[3], DeadLetter) and results[3].reason == "unknown_schema"
        # Both ids were fetched once and kept: the decoder reads them now without the registry.
        assert [codec.decoder.missing_schema_id(v) for v in values] == [None, None, None, 987_654]
