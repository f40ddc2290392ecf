"""Iterable requests and dead letters on the internal topics (schemaless Avro, bundled schemas)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from streams.codecs import (
    dead_letter_for_undecodable,
    decode_dead_letter,
    decode_event_internal,
    decode_request,
    encode_dead_letter,
    encode_event_internal,
    encode_request,
)
from streams.errors import DecodeError, Reason, TruncatedRecord, UnknownMagicByte, UnknownSchemaId
from streams.model import DeadLetter, Endpoint, IterableRequest
from tests.unit.codecs.avro_samples import ORDER_COMPLETED, SAMPLES

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


class TestInternalEventCodec:
    @pytest.mark.parametrize("name", sorted(SAMPLES))
    def test_round_trip(self, name: str) -> None:
        assert decode_event_internal(encode_event_internal(SAMPLES[name])) == SAMPLES[name]

    def test_is_bare_avro(self) -> None:
        assert encode_event_internal(ORDER_COMPLETED)[0] != 0  # no Confluent header

    def test_truncated(self) -> None:
        with pytest.raises(TruncatedRecord):
            decode_event_internal(encode_event_internal(ORDER_COMPLETED)[:-1])


class TestRequestCodec:
    @pytest.mark.parametrize("request_", [REQUEST, IterableRequest(Endpoint.USERS_UPDATE, {}, "k", "e")])
    def test_round_trip(self, request_: IterableRequest) -> None:
        assert decode_request(encode_request(request_)) == request_

    def test_body_number_types_survive(self) -> None:
        body = decode_request(encode_request(REQUEST)).body
        assert type(body["total"]) is float and type(body["createdAt"]) is int

    def test_truncated(self) -> None:
        with pytest.raises(TruncatedRecord):
            decode_request(encode_request(REQUEST)[:-4])

    def test_unknown_endpoint(self) -> None:
        raw = encode_request(REQUEST).replace(b"/api/commerce/trackPurchase", b"/api/commerce/trackPurchasX")
        with pytest.raises(DecodeError, match="Iterable request"):
            decode_request(raw)


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
        assert decode_dead_letter(encode_dead_letter(LETTERS[name])) == LETTERS[name]

    def test_not_a_dead_letter(self) -> None:
        with pytest.raises(DecodeError):
            decode_dead_letter(b"\x02")


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
        letter = dead_letter_for_undecodable(b"\x01raw", error, "src", 1, 42, NOW)
        assert letter.reason == reason.value
        assert (letter.source_topic, letter.source_partition, letter.source_offset) == ("src", 1, 42)
        assert letter.original_bytes == b"\x01raw" and letter.failed_at == NOW
        assert type(error).__name__ in letter.detail
        assert decode_dead_letter(encode_dead_letter(letter)) == letter
