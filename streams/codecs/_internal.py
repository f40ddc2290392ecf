"""Internal topics (Iterable requests, dead letters): schemaless Avro with our bundled schemas.

The processor is the only writer and reader of these topics, so no registry and no framing: the
value is the bare Avro body of ``avro/iterable_request.avsc`` or ``avro/dead_letter.avsc``.
Changing those schemas therefore needs the topics drained first. Times are timestamp-micros here,
so they round-trip exactly; a nested source event keeps the source schema's milliseconds.
"""

from __future__ import annotations

import io
from datetime import datetime
from typing import Any

import fastavro

from streams.codecs._body import read_body
from streams.codecs._event import EventDecoder, encode_event, event_from_record, event_to_record
from streams.codecs._jsontext import dumps_object, loads_object
from streams.codecs._schemas import DEAD_LETTER, REQUEST, parsed_schema
from streams.errors import DecodeError, Reason, StreamsError
from streams.model import DeadLetter, Endpoint, Event, IterableRequest

_INTERNAL_EVENTS = EventDecoder("schemaless", bundled=False)

__all__ = [
    "dead_letter_for_undecodable",
    "decode_dead_letter",
    "decode_event_internal",
    "decode_request",
    "encode_dead_letter",
    "encode_event_internal",
    "encode_request",
]


def _request_record(request: IterableRequest) -> dict[str, Any]:
    return {
        "endpoint": request.endpoint.value,
        "body": dumps_object(request.body),
        "person_key": request.person_key,
        "source_event_id": request.source_event_id,
        "attempt": request.attempt,
        "first_seen_at": request.first_seen_at,
    }


def _request_from(record: dict[str, Any]) -> IterableRequest:
    try:
        endpoint = Endpoint(record["endpoint"])
        body = loads_object(record["body"])
    except ValueError as exc:
        raise DecodeError(f"not an Iterable request: {exc}") from exc
    return IterableRequest(
        endpoint=endpoint,
        body=body,
        person_key=record["person_key"],
        source_event_id=record["source_event_id"],
        attempt=record["attempt"],
        first_seen_at=record["first_seen_at"],
    )


def _write(schema_name: str, record: dict[str, Any]) -> bytes:
    buffer = io.BytesIO()
    fastavro.schemaless_writer(buffer, parsed_schema(schema_name), record)
    return buffer.getvalue()


def _read(schema_name: str, raw: bytes) -> dict[str, Any]:
    return read_body(raw, 0, parsed_schema(schema_name), None)


def encode_event_internal(event: Event) -> bytes:
    """Schemaless Avro (bundled v1 source schema) of ``event``, for the internal repartition topics.
    Raises ``InvalidEvent`` when the event cannot be written."""
    return encode_event(event, "schemaless")


def decode_event_internal(raw: bytes) -> Event:
    """The ``Event`` written by ``encode_event_internal``. Raises ``DecodeError`` subclasses or
    ``InvalidEvent``."""
    return _INTERNAL_EVENTS.decode(raw)


def encode_request(request: IterableRequest) -> bytes:
    """Schemaless Avro of ``request``. Raises ``TypeError``/``ValueError`` for an unserializable body."""
    return _write(REQUEST, _request_record(request))


def decode_request(raw: bytes) -> IterableRequest:
    """The ``IterableRequest`` in ``raw``. Raises ``DecodeError`` (or ``TruncatedRecord``)."""
    return _request_from(_read(REQUEST, raw))


def encode_dead_letter(letter: DeadLetter) -> bytes:
    """Schemaless Avro of ``letter`` (its event and request nested). Raises ``InvalidEvent`` for a
    nested event that cannot be written (naive timestamp)."""
    return _write(DEAD_LETTER, {
        "reason": letter.reason,
        "detail": letter.detail,
        "failed_at": letter.failed_at,
        "source_topic": letter.source_topic,
        "source_partition": letter.source_partition,
        "source_offset": letter.source_offset,
        "original_bytes": letter.original_bytes,
        "event": None if letter.event is None else event_to_record(letter.event),
        "request": None if letter.request is None else _request_record(letter.request),
        "iterable_status": letter.iterable_status,
        "iterable_code": letter.iterable_code,
        "iterable_response": letter.iterable_response,
    })


def decode_dead_letter(raw: bytes) -> DeadLetter:
    """The ``DeadLetter`` in ``raw``. Raises ``DecodeError`` (or ``TruncatedRecord``, ``InvalidEvent``
    for a nested event that is not valid)."""
    record = _read(DEAD_LETTER, raw)
    event, request = record["event"], record["request"]
    return DeadLetter(
        reason=record["reason"],
        detail=record["detail"],
        failed_at=record["failed_at"],
        source_topic=record["source_topic"],
        source_partition=record["source_partition"],
        source_offset=record["source_offset"],
        original_bytes=record["original_bytes"],
        event=None if event is None else event_from_record(event),
        request=None if request is None else _request_from(request),
        iterable_status=record["iterable_status"],
        iterable_code=record["iterable_code"],
        iterable_response=record["iterable_response"],
    )


def dead_letter_for_undecodable(
    raw: bytes | None,
    error: BaseException,
    topic: str | None,
    partition: int | None,
    offset: int | None,
    now: datetime,
) -> DeadLetter:
    """The dead letter of a source message that did not decode into an event.

    ``reason`` is the error's code for our errors (``unknown_magic_byte``, ``unknown_schema``,
    ``truncated``, ``undecodable``, ``invalid_event``), else ``undecodable``; the bytes are kept
    exactly as read so the message can be re-driven.
    """
    reason = error.reason.value if isinstance(error, StreamsError) else Reason.UNDECODABLE.value
    return DeadLetter(
        reason=reason,
        detail=f"{type(error).__name__}: {error}",
        failed_at=now,
        source_topic=topic,
        source_partition=partition,
        source_offset=offset,
        original_bytes=raw,
    )
