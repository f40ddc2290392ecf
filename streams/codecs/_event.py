"""Source events on the wire: ``streams.model.Event`` <-> Avro ``freshpaint.FreshpaintEvent``.

Two wire formats (``WireFormat``):

* ``confluent``: magic byte ``0``, the schema id as 4 bytes big-endian, then the Avro body. The
  writer schema comes from the id: a schema registry, or ``BUNDLED_SCHEMA_ID`` (= 0) for our own
  v1 schema when no registry is used. Registries hand out ids from 1 upwards (Confluent and
  Apicurio both do), so 0 cannot name someone else's schema.
* ``schemaless``: the bare Avro body, written with a writer schema agreed out of band (configured).

Decoding resolves the writer schema against the reader schema (Avro's rules), so a v1 reader reads
v2 data and a v2 reader reads v1 data. Every failure becomes a ``streams.errors`` error: this is the
border where fastavro's exceptions stop. No I/O happens here; unknown schema ids are fetched by
the caller (``EventDecoder.missing_schema_id``, ``SchemaRegistryClient.ensure``).
"""

from __future__ import annotations

import io
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

import fastavro
import orjson
from fastavro.schema import to_parsing_canonical_form

from streams.codecs._body import read_body
from streams.codecs._jsontext import dumps_object, loads_object
from streams.codecs._schemas import SOURCE_V1, Schema, parsed_schema
from streams.errors import DecodeError, InvalidEvent, TruncatedRecord, UnknownMagicByte, UnknownSchemaId
from streams.model import Event, EventType, PageContext

__all__ = [
    "BUNDLED_SCHEMA_ID",
    "EventDecoder",
    "WireFormat",
    "encode_event",
    "event_from_record",
    "event_to_record",
]

WireFormat = Literal["confluent", "schemaless"]

BUNDLED_SCHEMA_ID = 0
"""Confluent schema id that stands for the bundled v1 source schema when no registry is used."""

_MAGIC = 0
_HEADER = 5
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MILLI = timedelta(milliseconds=1)
_EVENT_TYPES = {member.value: member for member in EventType}
_PAGE_FIELDS = ("url", "path", "title", "referrer", "search")


def _millis(value: datetime) -> int:
    if value.tzinfo is None:
        raise InvalidEvent("must be timezone-aware", field="timestamp")
    return (value - _EPOCH) // _MILLI  # floor: sub-millisecond digits are dropped


def event_to_record(event: Event) -> dict[str, Any]:
    """The Avro record (a dict for fastavro) of ``event``.

    Raises ``InvalidEvent`` for a naive timestamp or JSON fields that JSON cannot hold.
    """
    page = event.page
    try:
        properties = dumps_object(event.properties)
        traits = dumps_object(event.traits)
        context = dumps_object(event.context)
    except (TypeError, ValueError) as exc:
        raise InvalidEvent(f"not JSON-serializable: {exc}", field="properties") from exc
    return {
        "type": event.type.value,
        "message_id": event.message_id,
        "timestamp": _millis(event.timestamp),
        "anonymous_id": event.anonymous_id,
        "user_id": event.user_id,
        "email": event.email,
        "event_name": event.event_name,
        "previous_id": event.previous_id,
        "page": None if page is None else {name: getattr(page, name) for name in _PAGE_FIELDS},
        "properties": properties,
        "traits": traits,
        "context": context,
    }


def _json_field(record: Mapping[str, Any], name: str) -> dict[str, Any]:
    text = record.get(name, "{}")
    try:
        value = orjson.loads(text)
    except (TypeError, ValueError):
        value = None
    if type(value) is dict:  # the usual case, without loads_object's extra call and checks
        return value
    try:
        return loads_object(text)
    except (TypeError, ValueError) as exc:
        raise InvalidEvent(f"is not the text of a JSON object ({exc})", field=name) from exc


def event_from_record(record: Mapping[str, Any]) -> Event:
    """The ``Event`` of a decoded ``FreshpaintEvent`` record (any version; unknown fields ignored).

    Raises ``InvalidEvent`` (naming the field) when the record does not make a valid event.
    """
    event_type = _EVENT_TYPES.get(record.get("type"))  # type: ignore[arg-type]
    if event_type is None:
        raise InvalidEvent(f"unknown event type {record.get('type')!r}", field="type")
    message_id = record.get("message_id")
    if not isinstance(message_id, str) or not message_id:
        raise InvalidEvent("must be a non-empty string", field="message_id")
    timestamp = record.get("timestamp")
    if not isinstance(timestamp, datetime):
        raise InvalidEvent("must be a timestamp-millis", field="timestamp")
    page = record.get("page")
    return Event(
        type=event_type,
        message_id=message_id,
        timestamp=timestamp,
        anonymous_id=record.get("anonymous_id"),
        user_id=record.get("user_id"),
        email=record.get("email"),
        event_name=record.get("event_name"),
        properties=_json_field(record, "properties"),
        traits=_json_field(record, "traits"),
        context=_json_field(record, "context"),
        page=None if page is None else PageContext(
            page.get("url"), page.get("path"), page.get("title"), page.get("referrer"), page.get("search")
        ),
        previous_id=record.get("previous_id"),
    )


def encode_event(
    event: Event,
    fmt: WireFormat = "confluent",
    *,
    schema_id: int = BUNDLED_SCHEMA_ID,
    schema: Schema | None = None,
) -> bytes:
    """``event`` as message bytes in wire format ``fmt``.

    ``schema`` is the writer schema (default: the bundled v1); ``schema_id`` is what the Confluent
    header names (default ``BUNDLED_SCHEMA_ID``; pass the registry's id after registering).
    Raises ``InvalidEvent`` when the event cannot be written.
    """
    writer = schema if schema is not None else parsed_schema(SOURCE_V1)
    buffer = io.BytesIO()
    if fmt == "confluent":
        buffer.write(bytes((_MAGIC,)))
        buffer.write(schema_id.to_bytes(4, "big"))
    elif fmt != "schemaless":
        raise ValueError(f"unknown wire format {fmt!r}")
    try:
        fastavro.schemaless_writer(buffer, writer, event_to_record(event))
    except (TypeError, ValueError) as exc:
        raise InvalidEvent(f"does not fit the Avro schema: {exc}", field="$") from exc
    return buffer.getvalue()


_IGNORED_KEYS = frozenset({"doc", "default", "aliases", "order", "__fastavro_parsed", "__named_schemas"})


def _shape(value: Any) -> Any:
    """A schema without the parts that do not change how data is read."""
    if isinstance(value, dict):
        return {k: _shape(v) for k, v in value.items() if k not in _IGNORED_KEYS}
    if isinstance(value, list):
        return [_shape(v) for v in value]
    return value


class _Plan:
    """How to read one writer schema.

    fastavro's resolution (a reader schema) costs about half the decode throughput, so it is used
    only when needed: when every reader field is in the writer with the same type (e.g. v2 data,
    v1 reader), reading with the writer schema gives every field the reader would, and
    ``event_from_record`` ignores the others.
    """

    __slots__ = ("reader", "writer")

    def __init__(self, writer: Schema, reader: Schema) -> None:
        self.writer = writer
        self.reader: Schema | None = reader
        if writer is reader or to_parsing_canonical_form(writer) == to_parsing_canonical_form(reader):
            self.reader = None
            return
        writer_fields = {f["name"]: _shape(f["type"]) for f in writer.get("fields", ())}
        reader_fields = {f["name"]: _shape(f["type"]) for f in reader.get("fields", ())}
        if writer.get("name") == reader.get("name") and all(
            writer_fields.get(name, _MISSING) == shape for name, shape in reader_fields.items()
        ):
            self.reader = None


_MISSING = object()


class EventDecoder:
    """Decodes source-topic message values into ``Event``s; synchronous and free of I/O.

    ``fmt``: the wire format. ``reader_schema``: the schema records are resolved to (default the
    bundled v1). ``writer_schema``: for ``schemaless``, the agreed writer schema (default: the
    reader schema). ``schemas``: writer schemas already known by Confluent id. ``bundled``: whether
    ``BUNDLED_SCHEMA_ID`` means the bundled v1 schema (on unless you say otherwise).
    Schemas may be raw (JSON-shaped dicts) or fastavro-parsed; they are parsed once, here.
    """

    def __init__(
        self,
        fmt: WireFormat = "confluent",
        *,
        reader_schema: Mapping[str, Any] | None = None,
        writer_schema: Mapping[str, Any] | None = None,
        schemas: Mapping[int, Mapping[str, Any]] | None = None,
        bundled: bool = True,
    ) -> None:
        if fmt not in ("confluent", "schemaless"):
            raise ValueError(f"unknown wire format {fmt!r}")
        self.fmt: WireFormat = fmt
        self._reader = parsed_schema(SOURCE_V1) if reader_schema is None else _parse(reader_schema)
        self._plans: dict[int, _Plan] = {}
        self._schemaless = _Plan(
            self._reader if writer_schema is None else _parse(writer_schema), self._reader
        )
        if bundled:
            self.add_schema(BUNDLED_SCHEMA_ID, parsed_schema(SOURCE_V1))
        for schema_id, schema in (schemas or {}).items():
            self.add_schema(schema_id, schema)

    def add_schema(self, schema_id: int, schema: Mapping[str, Any]) -> None:
        """Make ``schema`` the writer schema of Confluent id ``schema_id``.

        Raises ``DecodeError`` when it is not a valid Avro schema or names another record than
        the reader schema. Other incompatibilities surface per message, as ``DecodeError``.
        """
        writer = _parse(schema)
        if writer.get("type") != "record" or writer.get("name") != self._reader.get("name"):
            raise DecodeError(
                f"schema {schema_id} is {writer.get('name')!r}, not readable as {self._reader.get('name')!r}"
            )
        self._plans[schema_id] = _Plan(writer, self._reader)

    def missing_schema_id(self, raw: bytes | None) -> int | None:
        """The schema id ``raw`` names if this decoder does not know it yet, else ``None``.

        ``None`` also for anything ``decode`` will reject for another reason (no header, wrong
        magic byte) and always in ``schemaless`` format. Call a registry for a returned id, then
        ``add_schema``, then ``decode``.
        """
        if self.fmt != "confluent" or raw is None or len(raw) < _HEADER or raw[0] != _MAGIC:
            return None
        schema_id = int.from_bytes(raw[1:_HEADER], "big")
        return None if schema_id in self._plans else schema_id

    def decode(self, raw: bytes | None) -> Event:
        """The ``Event`` in message value ``raw``.

        Raises ``UnknownMagicByte``, ``TruncatedRecord``, ``UnknownSchemaId`` (``schema_id``),
        ``DecodeError`` (empty value, not Avro of this schema, trailing bytes) or ``InvalidEvent``
        (a well-formed record that is not a valid event).
        """
        return event_from_record(self._record(raw))

    def _record(self, raw: bytes | None) -> dict[str, Any]:
        if not raw:
            raise DecodeError("empty message value (null or tombstone)")
        if self.fmt == "schemaless":
            agreed = self._schemaless
            return read_body(raw, 0, agreed.writer, agreed.reader)
        if raw[0] != _MAGIC:
            raise UnknownMagicByte(f"magic byte {raw[0]} is not 0 (Confluent wire format)")
        if len(raw) < _HEADER:
            raise TruncatedRecord(f"{len(raw)} bytes is shorter than the 5-byte Confluent header")
        schema_id = int.from_bytes(raw[1:_HEADER], "big")
        plan = self._plans.get(schema_id)
        if plan is None:
            raise UnknownSchemaId(f"schema id {schema_id} is not known", schema_id=schema_id)
        return read_body(raw, _HEADER, plan.writer, plan.reader)


def _parse(schema: Mapping[str, Any]) -> Schema:
    try:
        parsed = fastavro.parse_schema(dict(schema))
    except (ValueError, TypeError, KeyError, fastavro.schema.SchemaParseException) as exc:
        raise DecodeError(f"not a valid Avro schema: {exc}") from exc
    if not isinstance(parsed, dict):
        raise DecodeError("not an Avro record schema")
    return parsed

