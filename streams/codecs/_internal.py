"""Internal topics: events between agents, Iterable requests, dead letters.

The processor is the only writer and reader of the internal event topics (by device, by person)
and the requests topic, so no schema registry. On those topics the values below travel inside frames
(``streams.codecs._frames``: many records per Kafka message), not one per message.

* Events (``encode_event_internal``) and requests (``encode_request``): our own format, not Avro.
  One version byte (``1``), one flags byte (``0``, or ``1`` when the JSON holds integers beyond 64
  bits and must be read by the standard library: orjson would turn them into floats), then the
  orjson text of one array of the value's fields:

  - event (version ``2``): after the two header bytes, the length of the head (``u32``, little-endian),
    the head ``[type, message_id, timestamp, anonymous_id, user_id, email, previous_id]`` (what routes
    and resolves the event) and then the tail ``[event_name, page, properties, traits, context]``, each
    an orjson array, ``page`` null or ``[url, path, title, referrer, search]``. The resolve stage reads
    the head only (``decode_event_routing``) and hands the bytes on untouched; the apply stage reads
    both. Version ``1`` (one array ``[type, message_id, timestamp, anonymous_id, user_id, email,
    event_name, previous_id, page, properties, traits, context]``) is still read;
  - request: ``[endpoint, body, person_key, source_event_id, attempt, first_seen_at]``, then ``project``
    only when the request has one (a routing file, ``streams.projects``).

  Times are ISO 8601 text with microseconds and UTC offset, so values round-trip exactly (an
  event keeps its microseconds, unlike the source schema's milliseconds; a naive request time is
  read as UTC, as the Avro format did). It costs a fraction of schemaless Avro. It is JSON, never
  pickle: other Kafka clients can write these topics, and reading them must not run code.
* Dead letters: the bare Avro body of ``avro/dead_letter.avsc``, a published format (times as
  timestamp-micros; a nested source event keeps the source schema's milliseconds).

Changing any of these formats needs the topics drained first (for a rolling update): a reader knows
only its own version (the event reader also version 1), and any other payload (the schemaless Avro
of earlier releases included) is a ``DecodeError`` that says so.
"""

from __future__ import annotations

import io
import json
import struct
from datetime import UTC, datetime
from typing import Any

import fastavro
import orjson

from streams.codecs._body import read_body
from streams.codecs._event import event_from_record, event_to_record
from streams.codecs._jsontext import dumps_object, json_default, loads_object
from streams.codecs._schemas import DEAD_LETTER, parsed_schema
from streams.errors import DecodeError, InvalidEvent, Reason, StreamsError
from streams.model import DeadLetter, Endpoint, Event, EventType, IterableRequest, PageContext

__all__ = [
    "dead_letter_for_undecodable",
    "decode_dead_letter",
    "decode_event_internal",
    "decode_event_routing",
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


_VERSION = 1
_ORJSON = bytes((_VERSION, 0))
_STDLIB = bytes((_VERSION, 1))
_EVENT_TYPES = {member.value: member for member in EventType}
_ENDPOINTS: dict[Any, Endpoint] = {member.value: member for member in Endpoint}
"""A dict lookup instead of ``Endpoint(value)``, whose call was 2% of the worker's samples
(``bench_e2e --spy native``)."""
_EVENT_FIELDS = 12
_EVENT_VERSION = 2
_EVENT_ORJSON = bytes((_EVENT_VERSION, 0))
_EVENT_STDLIB = bytes((_EVENT_VERSION, 1))
_HEAD_LENGTH = struct.Struct("<I")
_HEAD_START = 2 + _HEAD_LENGTH.size
_HEAD_FIELDS = 7
_TAIL_FIELDS = 5
_REQUEST_FIELDS = 6


def _dumps(fields: list[Any]) -> bytes:
    """The header and JSON text of ``fields``. Raises ``TypeError`` or ``ValueError`` (from the
    standard library) for values JSON cannot hold."""
    try:
        return _ORJSON + orjson.dumps(fields, default=json_default)
    except orjson.JSONEncodeError:
        pass  # integers beyond 64 bits (or values JSON cannot hold: the standard library says which)
    text = json.dumps(fields, default=json_default, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    return _STDLIB + text.encode()


def _loads(raw: bytes, what: str, count: int, optional: int = 0) -> list[Any]:
    """The ``count`` fields (and up to ``optional`` more) ``_dumps`` wrote. Raises ``DecodeError`` naming
    ``what`` for anything else."""
    header = raw[:2]
    try:
        if header == _ORJSON:
            fields = orjson.loads(raw[2:])  # a bytes slice reads faster than a memoryview
        elif header == _STDLIB:
            fields = json.loads(raw[2:])
        else:
            raise DecodeError(_unknown_version(raw, what))
    except ValueError as exc:  # orjson.JSONDecodeError, UnicodeDecodeError are ValueErrors
        raise DecodeError(f"internal {what} payload is not JSON: {exc}") from exc
    if type(fields) is not list or not count <= len(fields) <= count + optional:
        raise DecodeError(f"internal {what} payload is not the array of {what} fields")
    return fields


def _unknown_version(raw: bytes, what: str) -> str:
    if not raw:
        return f"empty internal {what} payload (null or tombstone)"
    return (
        f"internal {what} payload starts with {bytes(raw[:2])!r}, not format version {_VERSION} "
        f"({_ORJSON!r} or {_STDLIB!r}); written by another release? drain the internal topics before "
        "changing the format"
    )


def _time(value: datetime | None) -> str | None:
    # isoformat, not orjson's own datetimes: orjson rounds offsets to whole minutes.
    if value is None:
        return None
    return (value if value.tzinfo is not None else value.replace(tzinfo=UTC)).isoformat()


def encode_event_internal(event: Event) -> bytes:
    """``event`` in the internal event format (version 2, module docstring), for the internal topics.

    Raises ``InvalidEvent`` when the event cannot be written: a timestamp that is not a
    timezone-aware datetime, or JSON fields that JSON cannot hold.
    """
    timestamp = event.timestamp
    if not isinstance(timestamp, datetime) or timestamp.tzinfo is None:
        raise InvalidEvent("must be a timezone-aware datetime", field="timestamp")
    page = event.page
    head = [
        event.type,  # a StrEnum: both JSON writers write its value, without the slow .value
        event.message_id,
        timestamp.isoformat(),
        event.anonymous_id,
        event.user_id,
        event.email,
        event.previous_id,
    ]
    tail = [
        event.event_name,
        None if page is None else [page.url, page.path, page.title, page.referrer, page.search],
        event.properties,
        event.traits,
        event.context,
    ]
    try:
        try:
            head_text = orjson.dumps(head)
            tail_text = orjson.dumps(tail, default=json_default)
            header = _EVENT_ORJSON
        except orjson.JSONEncodeError:
            # integers beyond 64 bits (or values JSON cannot hold: the standard library says which)
            head_text, tail_text = _stdlib_text(head), _stdlib_text(tail)
            header = _EVENT_STDLIB
    except (TypeError, ValueError) as exc:
        raise InvalidEvent(f"not JSON-serializable: {exc}", field="properties") from exc
    return header + _HEAD_LENGTH.pack(len(head_text)) + head_text + tail_text


def _stdlib_text(fields: list[Any]) -> bytes:
    return json.dumps(fields, default=json_default, separators=(",", ":"), ensure_ascii=False,
                      allow_nan=False).encode()


def decode_event_internal(raw: bytes) -> Event:
    """The ``Event`` written by ``encode_event_internal`` (or by the version 1 writer of earlier releases).

    Raises ``DecodeError`` for anything else: empty, another format version (e.g. the schemaless
    Avro of earlier releases: drain the internal topics before upgrading), not JSON, or not the
    arrays of an event.
    """
    header = raw[:2]
    if header != _EVENT_ORJSON and header != _EVENT_STDLIB:
        if header in (_ORJSON, _STDLIB):
            return _decode_event_v1(raw)
        raise DecodeError(_unknown_event_version(raw))
    loads = orjson.loads if header == _EVENT_ORJSON else json.loads
    middle = _head_end(raw)
    head, tail = _fields(loads, raw[_HEAD_START:middle], _HEAD_FIELDS), _fields(loads, raw[middle:], _TAIL_FIELDS)
    kind, message_id, timestamp, anonymous_id, user_id, email, previous_id = head
    event_name, page, properties, traits, context = tail
    return _event(kind, message_id, timestamp, anonymous_id, user_id, email, event_name, previous_id, page,
                  properties, traits, context)


def decode_event_routing(raw: bytes) -> Event:
    """The ``Event`` in ``raw`` as far as routing and resolving it needs: type, message id, timestamp,
    anonymous id, user id, email and previous id; its event name, page, properties, traits and context are
    not read (left empty). For a stage that hands ``raw`` on untouched (resolve). Raises ``DecodeError``
    as ``decode_event_internal`` does (a version 1 record is read whole)."""
    header = raw[:2]
    if header != _EVENT_ORJSON and header != _EVENT_STDLIB:
        return decode_event_internal(raw)
    loads = orjson.loads if header == _EVENT_ORJSON else json.loads
    kind, message_id, timestamp, anonymous_id, user_id, email, previous_id = _fields(
        loads, raw[_HEAD_START:_head_end(raw)], _HEAD_FIELDS)
    return _event(kind, message_id, timestamp, anonymous_id, user_id, email, None, previous_id, None, {}, {}, {})


def _head_end(raw: bytes) -> int:
    if len(raw) < _HEAD_START:
        raise DecodeError("internal event payload is cut short in its header")
    end: int = _HEAD_START + _HEAD_LENGTH.unpack_from(raw, 2)[0]
    if end > len(raw):
        raise DecodeError("internal event payload is cut short in its head")
    return end


def _fields(loads: Any, text: bytes, count: int) -> list[Any]:
    try:
        fields = loads(text)  # a bytes slice reads faster than a memoryview
    except ValueError as exc:  # orjson.JSONDecodeError, UnicodeDecodeError are ValueErrors
        raise DecodeError(f"internal event payload is not JSON: {exc}") from exc
    if type(fields) is not list or len(fields) != count:
        raise DecodeError("internal event payload is not the array of event fields")
    return fields


def _unknown_event_version(raw: bytes) -> str:
    if not raw:
        return "empty internal event payload (null or tombstone)"
    return (
        f"internal event payload starts with {bytes(raw[:2])!r}, not event format version {_EVENT_VERSION} "
        f"({_EVENT_ORJSON!r} or {_EVENT_STDLIB!r}) or 1; written by another release? drain the internal topics "
        "before changing the format"
    )


def _decode_event_v1(raw: bytes) -> Event:
    """A version 1 event: one array of all twelve fields (module docstring)."""
    (kind, message_id, timestamp, anonymous_id, user_id, email, event_name, previous_id, page,
     properties, traits, context) = _loads(raw, "event", _EVENT_FIELDS)
    return _event(kind, message_id, timestamp, anonymous_id, user_id, email, event_name, previous_id, page,
                  properties, traits, context)


def _event(kind: Any, message_id: Any, timestamp: Any, anonymous_id: Any, user_id: Any, email: Any,
           event_name: Any, previous_id: Any, page: Any, properties: Any, traits: Any, context: Any) -> Event:
    """The ``Event`` of decoded fields, each checked for its type."""
    try:
        event_type = _EVENT_TYPES[kind]
        when = datetime.fromisoformat(timestamp)
    except (KeyError, TypeError, ValueError) as exc:
        raise DecodeError(f"internal event payload has a bad type or timestamp: {exc!r}") from exc
    if (
        type(message_id) is not str or not message_id or when.tzinfo is None
        or not _optional_strings(anonymous_id, user_id, email, event_name, previous_id)
        or type(properties) is not dict or type(traits) is not dict or type(context) is not dict
        or not (page is None or (type(page) is list and len(page) == 5 and _optional_strings(*page)))
    ):
        raise DecodeError("internal event payload is not the array of event fields (one has the wrong type)")
    return Event(
        type=event_type,
        message_id=message_id,
        timestamp=when,
        anonymous_id=anonymous_id,
        user_id=user_id,
        email=email,
        event_name=event_name,
        properties=properties,
        traits=traits,
        context=context,
        page=None if page is None else PageContext(*page),
        previous_id=previous_id,
    )


def _optional_strings(*values: Any) -> bool:
    for value in values:  # noqa: SIM110 (a loop is cheaper than all() over a generator, per event)
        if value is not None and type(value) is not str:
            return False
    return True


def encode_request(request: IterableRequest) -> bytes:
    """``request`` in the internal request format (module docstring), for the requests topic.

    Raises ``TypeError``/``ValueError`` for a body JSON cannot hold.
    """
    return _dumps([
        request.endpoint,  # a StrEnum, written as its value
        request.body,
        request.person_key,
        request.source_event_id,
        request.attempt,
        _time(request.first_seen_at),
        *_project_field(request),
    ])


def _project_field(request: IterableRequest) -> tuple[str, ...]:
    """The optional seventh request field: the project, written only when there is one (routing file), so
    a single project's records are the six fields they always were and old records still decode."""
    return (request.project,) if request.project else ()


def decode_request(raw: bytes) -> IterableRequest:
    """The ``IterableRequest`` written by ``encode_request``.

    Raises ``DecodeError`` for anything else (another format version, not JSON, an unknown
    endpoint, a field of the wrong type).
    """
    fields = _loads(raw, "request", _REQUEST_FIELDS, optional=1)
    project = fields.pop() if len(fields) > _REQUEST_FIELDS else ""
    endpoint, body, person_key, source_event_id, attempt, first_seen_at = fields
    try:
        endpoint = _ENDPOINTS[endpoint]
        first_seen = None if first_seen_at is None else datetime.fromisoformat(first_seen_at)
    except KeyError:
        raise DecodeError(f"not an Iterable request: {endpoint!r} is not an endpoint") from None
    except (TypeError, ValueError) as exc:
        raise DecodeError(f"not an Iterable request: {exc}") from exc
    if (
        type(body) is not dict or type(person_key) is not str or type(source_event_id) is not str
        or type(attempt) is not int or (first_seen is not None and first_seen.tzinfo is None)
        or type(project) is not str
    ):
        raise DecodeError("not an Iterable request: a field has the wrong type")
    return IterableRequest(
        endpoint=endpoint,
        body=body,
        person_key=person_key,
        source_event_id=source_event_id,
        attempt=attempt,
        first_seen_at=first_seen,
        project=project,
    )


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
