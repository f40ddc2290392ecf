"""`produce` and the source decode path on the real broker: valid events decode, every poison
message becomes a dead letter with the right reason and offset, and offsets are committed only
after each message's outcome is recorded (nothing is skipped silently)."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from click.testing import CliRunner

from streams.codecs import (
    EventDecoder,
    SourceCodec,
    decode_dead_letter,
    encode_dead_letter,
    encode_event,
)
from streams.commands.produce import produce, produce_lines
from streams.model import DeadLetter, Event
from streams.normalize import normalize_json_line
from tests.support import unique
from tests.unit.codecs.avro_samples import ORDER_COMPLETED

pytestmark = pytest.mark.integration

SAMPLE_FILE = Path(__file__).resolve().parents[1] / "data" / "sample_events.jsonl"


def _valid_lines() -> list[str]:
    lines = []
    for line in SAMPLE_FILE.read_text(encoding="utf-8").splitlines():
        try:
            normalize_json_line(line)
        except Exception:
            continue
        lines.append(line)
    return lines


def _ms(event: Event) -> Event:
    ts = event.timestamp
    return dataclasses.replace(event, timestamp=ts.replace(microsecond=ts.microsecond // 1000 * 1000))


GOOD = encode_event(ORDER_COMPLETED)
POISON: list[tuple[bytes, str]] = [
    (b'{"event": "Signed Up", "properties": {}}', "unknown_magic_byte"),
    (b"\x00\x00\x00\x03\xe7" + GOOD[5:], "unknown_schema"),
    (GOOD[: len(GOOD) // 2], "truncated"),
    (GOOD + b"\x00", "undecodable"),
    (encode_event(dataclasses.replace(ORDER_COMPLETED, message_id="")), "invalid_event"),
]


async def _consume_all(bootstrap: str, topic: str, group: str | None, count: int) -> list:  # type: ignore[type-arg]
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False,
                                auto_offset_reset="earliest")
    await consumer.start()
    try:
        messages = []
        while len(messages) < count:
            batch = await consumer.getmany(timeout_ms=10_000)
            assert batch, f"only {len(messages)} of {count} messages arrived"
            for records in batch.values():
                messages.extend(records)
        return messages
    finally:
        await consumer.stop()


class TestProduceAndDecode:
    async def test_valid_and_poison_messages(self, kafka_bootstrap: str) -> None:
        source, dead, group = unique("avro-src"), unique("avro-dlq"), unique("avro-g")
        lines = _valid_lines()[:8]
        assert len(lines) == 8

        first = await produce_lines([*lines[:4], "{not json", ""], bootstrap=kafka_bootstrap, topic=source)
        assert first.sent == 4
        assert [(bad.line_number, bad.reason) for bad in first.bad] == [(5, "invalid_event")]
        raw_producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap, acks="all")
        await raw_producer.start()
        try:
            for value, _reason in POISON:
                await raw_producer.send_and_wait(source, value)
        finally:
            await raw_producer.stop()
        second = await produce_lines(lines[4:], bootstrap=kafka_bootstrap, topic=source, fmt="confluent")
        assert (second.sent, second.bad, second.schema_id) == (4, (), 0)

        # The worker's decode path: decode or dead-letter, record the outcome, then commit.
        codec = SourceCodec(EventDecoder())
        total = 8 + len(POISON)
        consumer = AIOKafkaConsumer(source, bootstrap_servers=kafka_bootstrap, group_id=group,
                                    enable_auto_commit=False, auto_offset_reset="earliest")
        dlq_producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap, acks="all")
        await consumer.start()
        await dlq_producer.start()
        decoded: dict[int, Event] = {}
        keys: dict[int, bytes | None] = {}
        try:
            seen = 0
            while seen < total:
                batch = await consumer.getmany(timeout_ms=10_000)
                assert batch, f"only {seen} of {total} messages arrived"
                for tp, records in batch.items():
                    for message in records:
                        seen += 1
                        result = await codec.decode_or_dead_letter(
                            message.value, topic=message.topic, partition=message.partition,
                            offset=message.offset, now=datetime.now(UTC),
                        )
                        if isinstance(result, DeadLetter):
                            await dlq_producer.send_and_wait(
                                dead, encode_dead_letter(result), key=message.key
                            )
                        else:
                            decoded[message.offset] = result
                            keys[message.offset] = message.key
                        await consumer.commit({tp: message.offset + 1})
            tp = TopicPartition(source, 0)
            end = (await consumer.end_offsets([tp]))[tp]
            assert end == total
            assert await consumer.committed(tp) == end
        finally:
            await dlq_producer.stop()
            await consumer.stop()

        # Every valid event came out decoded, in order, keyed by anonymous id else user id.
        expected = [_ms(normalize_json_line(line)) for line in lines]
        valid_offsets = [*range(0, 4), *range(4 + len(POISON), total)]
        assert [decoded[offset] for offset in valid_offsets] == expected
        for offset, event in zip(valid_offsets, expected, strict=True):
            key = event.anonymous_id or event.user_id
            assert keys[offset] == (key.encode() if key else None)

        # Every poison message is on the dead-letter topic with its reason, offset and bytes.
        letters = [decode_dead_letter(m.value) for m in await _consume_all(kafka_bootstrap, dead, None,
                                                                            len(POISON))]
        assert [(letter.source_offset, letter.reason) for letter in letters] == [
            (4 + index, reason) for index, (_value, reason) in enumerate(POISON)
        ]
        assert [letter.original_bytes for letter in letters] == [value for value, _reason in POISON]
        assert {letter.source_topic for letter in letters} == {source}

    async def test_schemaless(self, kafka_bootstrap: str) -> None:
        topic = unique("avro-sl")
        lines = _valid_lines()[:3]
        report = await produce_lines(lines, bootstrap=kafka_bootstrap, topic=topic, fmt="schemaless")
        assert (report.sent, report.schema_id) == (3, None)
        decoder = EventDecoder("schemaless")
        messages = await _consume_all(kafka_bootstrap, topic, None, 3)
        assert [decoder.decode(m.value) for m in messages] == [_ms(normalize_json_line(x)) for x in lines]


class TestProduceCommand:
    def test_cli_counts_and_fails_on_bad_lines(self, kafka_bootstrap: str, tmp_path: Path) -> None:
        topic = unique("avro-cli")
        source = tmp_path / "events.jsonl"
        source.write_text("\n".join([*_valid_lines()[:2], "[1, 2]"]) + "\n", encoding="utf-8")
        result = CliRunner().invoke(
            produce, ["--topic", topic, "--bootstrap", kafka_bootstrap, "--rate", "1000", str(source)]
        )
        assert result.exit_code == 1, result.output
        assert "produced 2 events" in result.output and "1 bad lines" in result.output
        assert "line 3: invalid_event" in result.output

    def test_cli_reads_stdin(self, kafka_bootstrap: str) -> None:
        topic = unique("avro-cli")
        result = CliRunner().invoke(
            produce, ["--topic", topic, "--bootstrap", kafka_bootstrap, "--format", "schemaless", "-"],
            input=_valid_lines()[0] + "\n",
        )
        assert result.exit_code == 0, result.output
        assert "produced 1 events" in result.output and "schemaless" in result.output
