"""Bytes on the wire: the source-event codecs (Confluent wire format and schemaless), the schema
registry client, the codecs of the internal topics and of dead letters, and the frames that carry
many internal records in one Kafka message.

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
from streams.codecs._frames import FRAME_TAG, FrameItem, Source, decode_frame, encode_frame, frame_chunks
from streams.codecs._internal import (
    dead_letter_for_undecodable,
    decode_dead_letter,
    decode_event_internal,
    decode_event_routing,
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
    load_schemas,
    parsed_schema,
    schema_text,
)
from streams.codecs._source import SourceCodec

__all__ = [
    "BUNDLED_SCHEMA_ID",
    "DEAD_LETTER",
    "FRAME_TAG",
    "REQUEST",
    "SOURCE_V1",
    "SOURCE_V2",
    "EventDecoder",
    "FrameItem",
    "Schema",
    "SchemaRegistryClient",
    "Source",
    "SourceCodec",
    "WireFormat",
    "avro_dir",
    "dead_letter_for_undecodable",
    "decode_dead_letter",
    "decode_event_internal",
    "decode_event_routing",
    "decode_frame",
    "decode_request",
    "encode_dead_letter",
    "encode_event",
    "encode_event_internal",
    "encode_frame",
    "encode_request",
    "event_from_record",
    "event_to_record",
    "frame_chunks",
    "load_schemas",
    "parsed_schema",
    "schema_text",
    "subject_for",
]
