"""Source events through both wire formats, schema evolution, and every poison case."""

from __future__ import annotations

import dataclasses
import io
import json
from datetime import UTC, datetime, timedelta

import fastavro
import pytest

from streams.codecs import (
    BUNDLED_SCHEMA_ID,
    SOURCE_V1,
    SOURCE_V2,
    EventDecoder,
    WireFormat,
    encode_event,
    event_to_record,
    parsed_schema,
    schema_text,
)
from streams.errors import DecodeError, InvalidEvent, TruncatedRecord, UnknownMagicByte, UnknownSchemaId
from streams.model import Event, EventType
from tests.unit.codecs.avro_samples import ORDER_COMPLETED, SAMPLES, T0, sample_file_events

FORMATS: tuple[WireFormat, ...] = ("confluent", "schemaless")
ALL_SAMPLES = {**SAMPLES, **sample_file_events()}


def _millis_precision(event: Event) -> Event:
    ts = event.timestamp
    return dataclasses.replace(event, timestamp=ts.replace(microsecond=ts.microsecond // 1000 * 1000))


def _body(record: dict[str, object], schema_name: str = SOURCE_V1) -> bytes:
    buffer = io.BytesIO()
    fastavro.schemaless_writer(buffer, parsed_schema(schema_name), record)
    return buffer.getvalue()


def _confluent(body: bytes, schema_id: int = BUNDLED_SCHEMA_ID) -> bytes:
    return b"\x00" + schema_id.to_bytes(4, "big") + body


class TestRoundTrip:
    @pytest.mark.parametrize("fmt", FORMATS)
    @pytest.mark.parametrize("name", sorted(ALL_SAMPLES))
    def test_every_sample_survives(self, name: str, fmt: WireFormat) -> None:
        event = ALL_SAMPLES[name]
        decoded = EventDecoder(fmt).decode(encode_event(event, fmt))
        assert decoded == _millis_precision(event)

    def test_json_numbers_keep_their_type(self) -> None:
        decoded = EventDecoder().decode(encode_event(ORDER_COMPLETED))
        products = decoded.properties["products"]
        assert products == ORDER_COMPLETED.properties["products"]
        assert type(products[0]["price"]) is float and type(products[0]["quantity"]) is int
        assert type(products[1]["price"]) is int
        assert type(decoded.properties["total"]) is float and type(decoded.properties["revenue"]) is int

    def test_dollar_keys_are_kept_verbatim(self) -> None:
        decoded = EventDecoder("schemaless").decode(encode_event(SAMPLES["anonymous_page"], "schemaless"))
        assert decoded.properties["$current_url"] == "https://x.test/"

    def test_confluent_header_names_the_schema(self) -> None:
        raw = encode_event(ORDER_COMPLETED, schema_id=77)
        assert raw[:5] == b"\x00\x00\x00\x00\x4d"
        assert encode_event(ORDER_COMPLETED, "schemaless") == raw[5:]

    def test_sub_millisecond_digits_are_truncated(self) -> None:
        event = dataclasses.replace(ORDER_COMPLETED, timestamp=T0 + timedelta(microseconds=999))
        decoded = EventDecoder().decode(encode_event(event))
        assert decoded.timestamp == T0
        assert decoded.timestamp.tzinfo is not None

    def test_before_the_epoch(self) -> None:
        before = datetime(1960, 2, 3, 4, 5, 6, 7000, tzinfo=UTC)
        event = dataclasses.replace(ORDER_COMPLETED, timestamp=before)
        assert EventDecoder().decode(encode_event(event)).timestamp == event.timestamp

    def test_naive_timestamp_is_refused(self) -> None:
        event = dataclasses.replace(ORDER_COMPLETED, timestamp=datetime(2024, 1, 1))
        with pytest.raises(InvalidEvent) as caught:
            encode_event(event)
        assert caught.value.field == "timestamp"

    def test_unserializable_property_is_refused(self) -> None:
        event = dataclasses.replace(ORDER_COMPLETED, properties={"when": object()})
        with pytest.raises(InvalidEvent):
            encode_event(event)


class TestEvolution:
    def test_v1_reader_reads_v2_data_by_schema_id(self) -> None:
        v2 = parsed_schema(SOURCE_V2)
        record = {**event_to_record(ORDER_COMPLETED), "received_at": T0 + timedelta(seconds=1)}
        raw = _confluent(_body(record, SOURCE_V2), schema_id=12)
        decoder = EventDecoder(schemas={12: v2})
        assert decoder.decode(raw) == ORDER_COMPLETED

    def test_v2_reader_reads_v1_data_with_the_default(self) -> None:
        decoder = EventDecoder(reader_schema=parsed_schema(SOURCE_V2))
        raw = encode_event(ORDER_COMPLETED)
        assert decoder.decode(raw) == ORDER_COMPLETED

    def test_v2_reader_reads_v2_data(self) -> None:
        v2 = parsed_schema(SOURCE_V2)
        record = {**event_to_record(ORDER_COMPLETED), "received_at": T0}
        decoder = EventDecoder("schemaless", reader_schema=v2, writer_schema=v2)
        assert decoder.decode(_body(record, SOURCE_V2)) == ORDER_COMPLETED

    @pytest.mark.parametrize(("writer", "reader"), [(SOURCE_V2, SOURCE_V1), (SOURCE_V1, SOURCE_V2)])
    def test_schemaless_with_a_configured_writer_schema(self, writer: str, reader: str) -> None:
        decoder = EventDecoder(
            "schemaless", writer_schema=parsed_schema(writer), reader_schema=parsed_schema(reader)
        )
        raw = encode_event(ORDER_COMPLETED, "schemaless", schema=parsed_schema(writer))
        assert decoder.decode(raw) == ORDER_COMPLETED

    def test_raw_json_schemas_are_accepted(self) -> None:
        decoder = EventDecoder(schemas={5: json.loads(schema_text(SOURCE_V2))}, bundled=False)
        raw = encode_event(ORDER_COMPLETED, schema_id=5, schema=parsed_schema(SOURCE_V2))
        assert decoder.missing_schema_id(raw) is None
        assert decoder.missing_schema_id(encode_event(ORDER_COMPLETED)) == BUNDLED_SCHEMA_ID
        assert decoder.decode(raw) == ORDER_COMPLETED

    def test_resolution_only_when_needed(self) -> None:
        decoder = EventDecoder(schemas={2: parsed_schema(SOURCE_V2)})
        newer = decoder._plans[2]
        assert newer.reader is None
        older = EventDecoder(reader_schema=parsed_schema(SOURCE_V2))._plans[BUNDLED_SCHEMA_ID]
        assert older.reader is not None

    def test_incompatible_writer_type_fails_per_message(self) -> None:
        raw_v1 = json.loads(schema_text(SOURCE_V1))
        for field in raw_v1["fields"]:
            if field["name"] == "properties":
                field["type"] = {"type": "map", "values": "string"}
        decoder = EventDecoder(schemas={4: raw_v1})
        record = {**event_to_record(ORDER_COMPLETED), "properties": {"a": "b"}}
        buffer = io.BytesIO()
        fastavro.schemaless_writer(buffer, fastavro.parse_schema(raw_v1), record)
        with pytest.raises(DecodeError):
            decoder.decode(_confluent(buffer.getvalue(), 4))

    def test_a_schema_of_another_record_is_refused(self) -> None:
        other = {"type": "record", "name": "Other", "fields": [{"name": "x", "type": "string"}]}
        with pytest.raises(DecodeError, match="not readable"):
            EventDecoder().add_schema(3, other)


def _record(**changes: object) -> dict[str, object]:
    return {**event_to_record(ORDER_COMPLETED), **changes}


GOOD = encode_event(ORDER_COMPLETED)

POISON: list[tuple[str, bytes | None, type[Exception]]] = [
    ("null value", None, DecodeError),
    ("empty", b"", DecodeError),
    ("json text", b'{"event": "x", "properties": {}}', UnknownMagicByte),
    ("magic byte 1", b"\x01" + GOOD[1:], UnknownMagicByte),
    ("short header", b"\x00\x00\x00", TruncatedRecord),
    ("unknown schema id", _confluent(GOOD[5:], 999), UnknownSchemaId),
    ("truncated body", GOOD[:-7], TruncatedRecord),
    ("header only", GOOD[:5], TruncatedRecord),
    ("union index out of range", _confluent(b"\x0atrack\x02m\x00\x28" + b"\x00" * 20), DecodeError),
    ("bad utf-8", GOOD.replace(b"Order Completed", b"Order\xffCompleted"), DecodeError),
    ("trailing bytes", GOOD + b"\x00\x00", DecodeError),
    ("unknown type", _confluent(_body(_record(type="purchase"))), InvalidEvent),
    ("empty message id", _confluent(_body(_record(message_id=""))), InvalidEvent),
    ("properties not json", _confluent(_body(_record(properties="{nope"))), InvalidEvent),
    ("properties an array", _confluent(_body(_record(properties="[1, 2]"))), InvalidEvent),
    ("context a string", _confluent(_body(_record(context='"x"'))), InvalidEvent),
]


class TestPoison:
    @pytest.mark.parametrize(("raw", "error"), [p[1:] for p in POISON], ids=[p[0] for p in POISON])
    def test_raises_the_specific_error(self, raw: bytes | None, error: type[Exception]) -> None:
        with pytest.raises(DecodeError if error is not InvalidEvent else InvalidEvent) as caught:
            EventDecoder().decode(raw)
        assert type(caught.value) is error

    def test_every_prefix_of_a_record_is_truncated(self) -> None:
        decoder = EventDecoder()
        for end in range(5, len(GOOD)):
            with pytest.raises(TruncatedRecord):
                decoder.decode(GOOD[:end])

    def test_unknown_schema_id_carries_the_id(self) -> None:
        with pytest.raises(UnknownSchemaId) as caught:
            EventDecoder().decode(_confluent(GOOD[5:], 4242))
        assert caught.value.schema_id == 4242

    def test_invalid_event_names_the_field(self) -> None:
        with pytest.raises(InvalidEvent) as caught:
            EventDecoder().decode(_confluent(_body(_record(properties="[]"))))
        assert caught.value.field == "properties"

    def test_bundled_id_unknown_when_switched_off(self) -> None:
        with pytest.raises(UnknownSchemaId):
            EventDecoder(bundled=False).decode(GOOD)

    @pytest.mark.parametrize("raw", [b"", GOOD[:-3], b"\xff" * 10, GOOD + b"\x01"])
    def test_schemaless_poison(self, raw: bytes) -> None:
        with pytest.raises(DecodeError):
            EventDecoder("schemaless").decode(raw)

    def test_unknown_format(self) -> None:
        with pytest.raises(ValueError):
            EventDecoder("protobuf")  # type: ignore[arg-type]


class TestMissingSchemaId:
    @pytest.mark.parametrize(
        ("raw", "expected"),
        [
            (GOOD, None),
            (_confluent(GOOD[5:], 31), 31),
            (b"\x01" + (31).to_bytes(4, "big"), None),
            (b"\x00\x00", None),
            (None, None),
        ],
    )
    def test_confluent(self, raw: bytes | None, expected: int | None) -> None:
        assert EventDecoder().missing_schema_id(raw) == expected

    def test_known_after_add_schema(self) -> None:
        decoder = EventDecoder()
        raw = encode_event(ORDER_COMPLETED, schema_id=31)
        decoder.add_schema(31, parsed_schema(SOURCE_V1))
        assert decoder.missing_schema_id(raw) is None
        assert decoder.decode(raw).type is EventType.TRACK

    def test_schemaless_never_misses(self) -> None:
        assert EventDecoder("schemaless").missing_schema_id(_confluent(b"", 31)) is None
