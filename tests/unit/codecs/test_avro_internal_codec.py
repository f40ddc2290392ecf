"""The internal topics: events between agents (our versioned JSON format), Iterable requests and
dead letters (schemaless Avro, bundled schemas)."""

from __future__ import annotations

import json
import math
import struct
from datetime import UTC, datetime, timedelta, timezone
from types import MappingProxyType
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from streams import codecs
from streams.codecs._event import encode_event
from streams.codecs._jsontext import json_default
from streams.errors import (
    DecodeError,
    InvalidEvent,
    Reason,
    TruncatedRecord,
    UnknownMagicByte,
    UnknownSchemaId,
)
from streams.model import DeadLetter, Endpoint, Event, EventType, IterableRequest, PageContext
from tests.unit.codecs.avro_samples import ORDER_COMPLETED, SAMPLES, sample_file_events

NOW = datetime(2024, 6, 1, 8, 0, 0, 123456, tzinfo=UTC)

REQUEST = IterableRequest(
    endpoint=Endpoint.COMMERCE_TRACK_PURCHASE,
    body={"user": {"userId": "user-1"}, "items": [{"id": "p1", "price": 9.99, "quantity": 1}], "total": 30.0,
          "id": "msg-order-1", "createdAt": 1715949045},
    person_key="user-1",
    source_event_id="msg-order-1",
    attempt=3,
    first_seen_at=NOW,
)


def exact(value: Any) -> Any:
    """``value`` with every type spelled out, so that 1 != 1.0 != True and -0.0 != 0.0 here."""
    if isinstance(value, dict):
        return ("dict", [(k, exact(v)) for k, v in value.items()])  # key order too
    if isinstance(value, list):
        return ("list", [exact(v) for v in value])
    if isinstance(value, float):
        return ("float", value.hex())
    if isinstance(value, datetime):
        return ("datetime", value.isoformat(), value.utcoffset())
    if isinstance(value, Event):
        return ("event", [(name, exact(getattr(value, name))) for name in Event.__slots__])
    return (type(value).__name__, value)


ROUTING_FIELDS = ("type", "message_id", "timestamp", "anonymous_id", "user_id", "email", "previous_id")


def fields_v1(event: Event) -> list[Any]:
    """The twelve fields of the version 1 event format, in its order."""
    page = event.page
    return [event.type.value, event.message_id, event.timestamp.isoformat(), event.anonymous_id, event.user_id,
            event.email, event.event_name, event.previous_id,
            None if page is None else [page.url, page.path, page.title, page.referrer, page.search],
            event.properties, event.traits, event.context]


def encode_v1(fields: list[Any]) -> bytes:
    """A version 1 record as earlier releases wrote it (the standard library's flag: any integer fits)."""
    return b"\x01\x01" + json.dumps(fields, default=json_default, separators=(",", ":")).encode()


def encode_v2(fields: list[Any]) -> bytes:
    """A version 2 record of the version 1 field list: head and tail arrays."""
    kind, message_id, when, anonymous_id, user_id, email, event_name, previous_id, page, *rest = fields
    head = json.dumps([kind, message_id, when, anonymous_id, user_id, email, previous_id]).encode()
    tail = json.dumps([event_name, page, *rest], default=json_default).encode()
    return b"\x02\x01" + struct.pack("<I", len(head)) + head + tail


def assert_round_trips(event: Event) -> None:
    raw = codecs.encode_event_internal(event)
    decoded = codecs.decode_event_internal(raw)
    assert decoded == event
    assert exact(decoded) == exact(event)
    routed = codecs.decode_event_routing(raw)
    assert [exact(getattr(routed, name)) for name in ROUTING_FIELDS] == [
        exact(getattr(event, name)) for name in ROUTING_FIELDS]
    unread = (routed.properties, routed.traits, routed.context, routed.page, routed.event_name)
    assert unread == ({}, {}, {}, None, None)
    # a record of the previous format version, still on a topic at an upgrade, reads the same
    old = codecs.decode_event_internal(encode_v1(fields_v1(event)))
    assert exact(old) == exact(event)
    assert exact(codecs.decode_event_routing(encode_v1(fields_v1(event)))) == exact(event)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.integers(min_value=2**63, max_value=2**80)
    | st.floats(allow_nan=False, allow_infinity=False) | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)
json_objects = st.dictionaries(st.text(max_size=8), json_values, max_size=5)
optional_text = st.none() | st.text(max_size=12)
offsets = st.just(UTC) | st.builds(
    timezone, st.integers(-86_399, 86_399).map(lambda s: timedelta(seconds=s))
)
events = st.builds(
    Event,
    type=st.sampled_from(EventType),
    message_id=st.text(min_size=1, max_size=20),
    timestamp=st.datetimes(timezones=offsets),
    anonymous_id=optional_text,
    user_id=optional_text,
    email=optional_text,
    event_name=optional_text,
    properties=json_objects,
    traits=json_objects,
    context=json_objects,
    page=st.none() | st.builds(PageContext, optional_text, optional_text, optional_text, optional_text,
                               optional_text),
    previous_id=optional_text,
)

T1 = datetime(2024, 5, 17, 12, 30, 45, 123456, tzinfo=UTC)
TRICKY = {
    "microseconds_and_offset": Event(
        EventType.TRACK, "m-1",
        datetime(2024, 2, 29, 23, 59, 59, 999999, tzinfo=timezone(timedelta(hours=-9, minutes=-30))),
    ),
    "sub_minute_offset": Event(EventType.TRACK, "m-2", datetime(1900, 1, 1, tzinfo=timezone(timedelta(seconds=1172)))),
    "ancient_and_far": Event(EventType.PAGE, "m-3", datetime(1, 1, 1, tzinfo=UTC),
                             properties={"end": "9999-12-31"}),
    "unicode_everywhere": Event(
        EventType.IDENTIFY, "ü-✓-🎉", T1, anonymous_id="dév", user_id="用户", email="ä@example.test",
        event_name="Ö\u0000\n\"quoted\"", traits={"名前": "🎉", "": "", "nul": "a\u0000b"},
    ),
    "numbers": Event(EventType.TRACK, "m-4", T1, properties={
        "big": 2**70, "neg_big": -(2**90), "u64": 2**64 - 1, "float": 0.1, "neg_zero": -0.0, "whole": 30.0,
        "int": 30, "tiny": 5e-324, "huge": 1.7976931348623157e308, "bool": True,
    }),
    "nested_and_none": Event(
        EventType.GROUP, "m-5", T1, anonymous_id=None, user_id=None, email=None, event_name=None,
        properties={"a": {"b": [None, {"c": [[], {}]}]}, "none": None},
        page=PageContext(url="https://x.test/?q=ü", path=None, title="", referrer=None, search="?q=ü"),
        previous_id="",
    ),
    "empty": Event(EventType.SCREEN, "m", T1),
}


class TestInternalEventCodec:
    @pytest.mark.parametrize("name", sorted(SAMPLES))
    def test_samples_round_trip(self, name: str) -> None:
        assert_round_trips(SAMPLES[name])

    @pytest.mark.parametrize("name", sorted(TRICKY))
    def test_tricky_events_round_trip_exactly(self, name: str) -> None:
        assert_round_trips(TRICKY[name])

    @pytest.mark.parametrize(("name", "event"), sorted(sample_file_events().items()))
    def test_sample_file_round_trips(self, name: str, event: Event) -> None:
        assert_round_trips(event)

    @settings(max_examples=50, deadline=None)
    @given(events)
    def test_any_event_round_trips_exactly(self, event: Event) -> None:
        assert_round_trips(event)

    def test_starts_with_version_byte_and_head_length(self) -> None:
        raw = codecs.encode_event_internal(ORDER_COMPLETED)
        (head_length,) = struct.unpack_from("<I", raw, 2)
        assert raw[:2] == b"\x02\x00" and raw[6:7] == b"["
        assert json.loads(raw[6:6 + head_length])[1] == ORDER_COMPLETED.message_id
        assert json.loads(raw[6 + head_length:])[2] == ORDER_COMPLETED.properties

    def test_routing_reads_the_head_only(self) -> None:
        raw = codecs.encode_event_internal(ORDER_COMPLETED)
        (head_length,) = struct.unpack_from("<I", raw, 2)
        damaged_tail = raw[:6 + head_length] + b"not json"
        routed = codecs.decode_event_routing(damaged_tail)
        assert (routed.message_id, routed.anonymous_id, routed.user_id) == (
            ORDER_COMPLETED.message_id, ORDER_COMPLETED.anonymous_id, ORDER_COMPLETED.user_id)
        with pytest.raises(DecodeError, match="not JSON"):
            codecs.decode_event_internal(damaged_tail)

    def test_big_integers_are_flagged_for_the_standard_library(self) -> None:
        raw = codecs.encode_event_internal(TRICKY["numbers"])
        assert raw[:2] == b"\x02\x01"
        assert type(codecs.decode_event_internal(raw).properties["big"]) is int

    def test_other_mappings_and_sequences_become_json(self) -> None:
        event = Event(EventType.TRACK, "m", T1, properties=MappingProxyType({"t": (1, 2), "m": MappingProxyType({})}))
        decoded = codecs.decode_event_internal(codecs.encode_event_internal(event))
        assert decoded.properties == {"t": [1, 2], "m": {}} and type(decoded.properties) is dict

    def test_nan_becomes_null(self) -> None:
        event = Event(EventType.TRACK, "m", T1, properties={"x": math.nan})
        assert codecs.decode_event_internal(codecs.encode_event_internal(event)).properties == {"x": None}

    @pytest.mark.parametrize(
        ("event", "field"),
        [
            (Event(EventType.TRACK, "m", datetime(2024, 1, 1)), "timestamp"),
            (Event(EventType.TRACK, "m", "2024-01-01T00:00:00+00:00"), "timestamp"),  # type: ignore[arg-type]
            (Event(EventType.TRACK, "m", T1, properties={"x": object()}), "properties"),
            (Event(EventType.TRACK, "m", T1, properties={"x": object(), "big": 2**70}), "properties"),
            (Event(EventType.TRACK, "m", T1, properties={"x": math.inf, "big": 2**70}), "properties"),
        ],
    )
    def test_unwritable_event(self, event: Event, field: str) -> None:
        with pytest.raises(InvalidEvent) as info:
            codecs.encode_event_internal(event)
        assert info.value.field == field

    @pytest.mark.parametrize(
        ("raw", "message"),
        [
            (b"", "empty"),
            (encode_event(ORDER_COMPLETED, "schemaless"), "not event format version 2"),  # the old Avro format
            (b"\x03\x00[]", "not event format version 2"),
            (b"\x02\x00\x01", "cut short in its header"),
            (b"\x02\x00\x09\x00\x00\x00[]", "cut short in its head"),
            (b"\x02\x00\x02\x00\x00\x00[][]", "not the array of event fields"),
            (codecs.encode_event_internal(ORDER_COMPLETED)[:-1], "not JSON"),
            (b"\x01\x00" + b"\xff" * 10, "not JSON"),
            (b"\x01\x01" + b"\xff" * 10, "not JSON"),
            (codecs.encode_event_internal(ORDER_COMPLETED)[:-1], "not JSON"),
            (b'\x01\x00{"type":"track"}', "not the array of event fields"),
            (b"\x01\x00[1,2,3]", "not the array of event fields"),
        ],
    )
    def test_garbled_payload(self, raw: bytes, message: str) -> None:
        with pytest.raises(DecodeError, match=message):
            codecs.decode_event_internal(raw)
        if not raw.startswith(b"\x02") or "head" in message or "version" in message:
            with pytest.raises(DecodeError, match=message):
                codecs.decode_event_routing(raw)

    @pytest.mark.parametrize(
        ("index", "value", "message"),
        [
            (0, "purchase", "bad type"),
            (0, ["track"], "bad type"),
            (2, "yesterday", "bad type or timestamp"),
            (2, 1715949045, "bad type or timestamp"),
            (2, "2024-01-01T00:00:00", "wrong type"),  # naive
            (1, "", "wrong type"),
            (1, 7, "wrong type"),
            (3, 7, "wrong type"),
            (7, ["x"], "wrong type"),
            (8, ["u", None, None, None], "wrong type"),
            (8, ["u", None, None, None, 5], "wrong type"),
            (8, {"url": "u"}, "wrong type"),
            (9, [], "wrong type"),
            (11, None, "wrong type"),
        ],
    )
    @pytest.mark.parametrize("encode", [encode_v1, encode_v2])
    def test_wrong_field(self, index: int, value: Any, message: str, encode: Any) -> None:
        fields = fields_v1(ORDER_COMPLETED)
        fields[index] = value
        with pytest.raises(DecodeError, match=message):
            codecs.decode_event_internal(encode(fields))
        if encode is encode_v1 or index in (0, 1, 2, 3, 7):  # the head: what routing reads
            with pytest.raises(DecodeError, match=message):
                codecs.decode_event_routing(encode(fields))


REQUESTS = {
    "purchase": REQUEST,
    "minimal": IterableRequest(Endpoint.USERS_UPDATE, {}, "k", "e"),
    "tricky_body": IterableRequest(
        Endpoint.EVENTS_TRACK,
        {"dataFields": {"big": 2**70, "neg_zero": -0.0, "whole": 1.0, "ü": ["🎉", None, {"a": [[]]}]}},
        "person-ü", "", attempt=2**40,
        first_seen_at=datetime(2024, 6, 1, 8, 0, 0, 1, tzinfo=timezone(timedelta(hours=5, seconds=7))),
    ),
}


class TestRequestCodec:
    @pytest.mark.parametrize("name", sorted(REQUESTS))
    def test_round_trip(self, name: str) -> None:
        decoded = codecs.decode_request(codecs.encode_request(REQUESTS[name]))
        assert decoded == REQUESTS[name]
        assert exact(decoded.body) == exact(REQUESTS[name].body)
        assert exact(decoded.first_seen_at) == exact(REQUESTS[name].first_seen_at)

    @settings(max_examples=50, deadline=None)
    @given(st.builds(IterableRequest, st.sampled_from(Endpoint), json_objects, st.text(), st.text(),
                     st.integers(0, 2**63), st.none() | st.datetimes(timezones=offsets)))
    def test_any_request_round_trips_exactly(self, request_: IterableRequest) -> None:
        decoded = codecs.decode_request(codecs.encode_request(request_))
        assert decoded == request_ and exact(decoded.body) == exact(request_.body)

    def test_body_number_types_survive(self) -> None:
        body = codecs.decode_request(codecs.encode_request(REQUEST)).body
        assert type(body["total"]) is float and type(body["createdAt"]) is int

    def test_naive_time_is_read_as_utc(self) -> None:
        naive = IterableRequest(Endpoint.USERS_UPDATE, {}, "k", "e", first_seen_at=datetime(2024, 1, 1))
        assert codecs.decode_request(codecs.encode_request(naive)).first_seen_at == datetime(2024, 1, 1, tzinfo=UTC)

    def test_unserializable_body(self) -> None:
        with pytest.raises(TypeError):
            codecs.encode_request(IterableRequest(Endpoint.USERS_UPDATE, {"x": object()}, "k", "e"))

    def test_unknown_endpoint(self) -> None:
        raw = codecs.encode_request(REQUEST).replace(b"/api/commerce/trackPurchase", b"/api/commerce/trackPurchasX")
        with pytest.raises(DecodeError, match="Iterable request"):
            codecs.decode_request(raw)

    @pytest.mark.parametrize(
        ("raw", "message"),
        [
            (b"", "empty"),
            (codecs.encode_request(REQUEST)[:-4], "not JSON"),
            (codecs.encode_event_internal(ORDER_COMPLETED), "not format version 1"),  # an event record
            (b"\x00" + codecs.encode_request(REQUEST)[1:], "not format version 1"),
            (b'\x01\x00["/api/users/update",{},"k","e",0,"yesterday"]', "Iterable request"),
            (b'\x01\x00[["/api/users/update"],{},"k","e",0,null]', "Iterable request"),
            (b'\x01\x00["/api/users/updatE",{},"k","e",0,null]', "is not an endpoint"),
            (b'\x01\x00["/api/users/update",[],"k","e",0,null]', "wrong type"),
            (b'\x01\x00["/api/users/update",{},"k","e",true,null]', "wrong type"),
            (b'\x01\x00["/api/users/update",{},"k",null,0,null]', "wrong type"),
            (b'\x01\x00["/api/users/update",{},"k","e",0,"2024-01-01T00:00:00"]', "wrong type"),
        ],
    )
    def test_garbled_payload(self, raw: bytes, message: str) -> None:
        with pytest.raises(DecodeError, match=message):
            codecs.decode_request(raw)


LETTERS = {
    "undecodable": DeadLetter(
        reason="truncated", detail="TruncatedRecord: ends early", failed_at=NOW,
        source_topic="freshpaint.events",
        source_partition=2, source_offset=10_000_000_000, original_bytes=b"\x00\x00\x00\x00\x01\xff",
    ),
    "mapping": DeadLetter(
        reason="purchase_incomplete", detail="no items", failed_at=NOW, event=ORDER_COMPLETED
    ),
    "delivery": DeadLetter(
        reason="iterable_rejected", detail="400", failed_at=NOW, request=REQUEST, iterable_status=400,
        iterable_code="InvalidEmailAddressError", iterable_response='{"code":"InvalidEmailAddressError"}',
    ),
}


class TestDeadLetterCodec:
    @pytest.mark.parametrize("name", sorted(LETTERS))
    def test_round_trip(self, name: str) -> None:
        assert codecs.decode_dead_letter(codecs.encode_dead_letter(LETTERS[name])) == LETTERS[name]

    def test_not_a_dead_letter(self) -> None:
        with pytest.raises(DecodeError):
            codecs.decode_dead_letter(b"\x02")


class TestDeadLetterForUndecodable:
    @pytest.mark.parametrize(
        ("error", "reason"),
        [
            (UnknownMagicByte("x"), Reason.UNKNOWN_MAGIC_BYTE),
            (UnknownSchemaId("x", schema_id=9), Reason.UNKNOWN_SCHEMA),
            (TruncatedRecord("x"), Reason.TRUNCATED),
            (DecodeError("x"), Reason.UNDECODABLE),
            (ValueError("not ours"), Reason.UNDECODABLE),
        ],
    )
    def test_reason_and_provenance(self, error: Exception, reason: Reason) -> None:
        letter = codecs.dead_letter_for_undecodable(b"\x01raw", error, "src", 1, 42, NOW)
        assert letter.reason == reason.value
        assert (letter.source_topic, letter.source_partition, letter.source_offset) == ("src", 1, 42)
        assert letter.original_bytes == b"\x01raw" and letter.failed_at == NOW
        assert type(error).__name__ in letter.detail
        assert codecs.decode_dead_letter(codecs.encode_dead_letter(letter)) == letter
