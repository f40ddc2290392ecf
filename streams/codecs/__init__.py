"""Avro on the wire: the source-event codecs (Confluent wire format and schemaless), the schema
registry client, and the schemaless codecs of the internal request and dead-letter topics.

The only package that imports fastavro; ``_registry`` is its only module that does I/O. Schemas
come from the top-level ``avro/`` folder (``FPI_AVRO_DIR`` overrides it), parsed once.
"""

from __future__ import annotations

from streams.codecs._event import (
    BUNDLED_SCHEMA_ID,
    EventDecoder,
    WireFormat,
    encode_event,
    event_from_record,
    event_to_record,
)
from streams.codecs._internal import (
    dead_letter_for_undecodable,
    decode_dead_letter,
    decode_event_internal,
    decode_request,
    encode_dead_letter,
    encode_event_internal,
    encode_request,
)
from streams.codecs._registry import SchemaRegistryClient, subject_for
from streams.codecs._schemas import (
    DEAD_LETTER,
    REQUEST,
    SOURCE_V1,
    SOURCE_V2,
    Schema,
    avro_dir,
    parsed_schema,
    schema_text,
)
from streams.codecs._source import SourceCodec

__all__ = [
    "BUNDLED_SCHEMA_ID",
    "DEAD_LETTER",
    "REQUEST",
    "SOURCE_V1",
    "SOURCE_V2",
    "EventDecoder",
    "Schema",
    "SchemaRegistryClient",
    "SourceCodec",
    "WireFormat",
    "avro_dir",
    "dead_letter_for_undecodable",
    "decode_dead_letter",
    "decode_event_internal",
    "decode_request",
    "encode_dead_letter",
    "encode_event",
    "encode_event_internal",
    "encode_request",
    "event_from_record",
    "event_to_record",
    "parsed_schema",
    "schema_text",
    "subject_for",
]
