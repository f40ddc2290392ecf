"""Reading one Avro body with fastavro, and the one place its exceptions become ours."""

from __future__ import annotations

import io
from typing import Any

import fastavro
from fastavro.read import SchemaResolutionError

from streams.errors import DecodeError, TruncatedRecord

__all__ = ["read_body"]

_READ_ERRORS = (EOFError, ValueError, IndexError, KeyError, TypeError, OverflowError, SchemaResolutionError)
"""What fastavro raises on bad input: EOFError or IndexError past the end of the data,
UnicodeDecodeError (a ValueError) for bad strings, IndexError / KeyError for out-of-range union
or enum indexes, OverflowError for timestamps beyond ``datetime``'s range."""

_PADDING = b"\x00" * 64


def read_body(
    raw: bytes, offset: int, writer: dict[str, Any], reader: dict[str, Any] | None
) -> dict[str, Any]:
    """The record in ``raw[offset:]``, written with ``writer`` and resolved to ``reader`` (None: same).

    Raises ``TruncatedRecord`` when the bytes end before the record does, ``DecodeError`` when
    they are not a record of ``writer`` (including bytes left over after it).
    """
    buffer = io.BytesIO(raw)
    buffer.seek(offset)
    try:
        record = fastavro.schemaless_reader(buffer, writer, reader)
    except _READ_ERRORS as exc:
        if _is_prefix(raw, offset, writer, reader):
            raise TruncatedRecord(f"the Avro body ends early ({len(raw) - offset} bytes)") from exc
        raise DecodeError(f"not an Avro record of this schema ({type(exc).__name__}: {exc})") from exc
    if buffer.tell() != len(raw):
        raise DecodeError(f"{len(raw) - buffer.tell()} bytes left after the Avro record")
    if not isinstance(record, dict):
        raise DecodeError("the Avro value is not a record")
    return record


def _is_prefix(raw: bytes, offset: int, writer: dict[str, Any], reader: dict[str, Any] | None) -> bool:
    """Whether ``raw`` reads as the start of a record: with zero bytes appended, the read runs past
    the real end (or still wants more). fastavro reports running out of data as EOFError or as
    IndexError depending on where it happens, so the exception type alone cannot tell."""
    buffer = io.BytesIO(raw + _PADDING)
    buffer.seek(offset)
    try:
        fastavro.schemaless_reader(buffer, writer, reader)
    except EOFError:
        return True
    except _READ_ERRORS:
        return False
    return buffer.tell() > len(raw)
