"""The bundled Avro schemas (the top-level ``avro/`` folder), read and parsed once per process.

An installed package carries them as ``streams/_avro`` (``streams.bundled``); a source checkout reads
``<repo>/avro``. ``FPI_AVRO_DIR`` overrides both, for a deployment that ships its own copies. Parsed
schemas are fastavro's parsed form and are shared: never mutate them.
"""

from __future__ import annotations

import json
import os
from functools import cache
from importlib.resources.abc import Traversable
from pathlib import Path
from typing import Any

import fastavro

from streams.bundled import bundled
from streams.errors import ConfigError

__all__ = [
    "DEAD_LETTER",
    "REQUEST",
    "SOURCE_V1",
    "SOURCE_V2",
    "Schema",
    "avro_dir",
    "load_schemas",
    "parsed_schema",
    "schema_text",
]

Schema = dict[str, Any]
"""A fastavro-parsed Avro schema."""

SOURCE_V1 = "freshpaint_event"
SOURCE_V2 = "freshpaint_event_v2"
REQUEST = "iterable_request"
DEAD_LETTER = "dead_letter"

_DEPENDS_ON: dict[str, tuple[str, ...]] = {DEAD_LETTER: (SOURCE_V1, REQUEST)}
"""Schemas that refer to named types of other files, and those files (parsed first)."""


def avro_dir() -> Traversable:
    """The folder of ``.avsc`` files: ``FPI_AVRO_DIR`` if set, else the package's own schemas."""
    configured = os.environ.get("FPI_AVRO_DIR")
    if configured:
        return Path(configured)
    return bundled("_avro", "avro")


@cache
def schema_text(name: str) -> str:
    """The text of ``<avro_dir>/<name>.avsc``, as registered with a schema registry.

    Raises ``ConfigError`` when the file is missing.
    """
    path = avro_dir().joinpath(f"{name}.avsc")
    try:
        return path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(
            f"Avro schema {name!r} not found at {path}: set FPI_AVRO_DIR to a folder of the .avsc files, "
            "or unset it to use the schemas bundled with the package"
        ) from exc


@cache
def parsed_schema(name: str) -> Schema:
    """The schema ``name`` parsed by fastavro, with the named types it refers to resolved.

    Raises ``ConfigError`` when the file is missing or not a valid Avro schema.
    """
    named: dict[str, Any] = {}
    for dependency in _DEPENDS_ON.get(name, ()):
        _parse(dependency, named)
    return _parse(name, named)


def load_schemas() -> None:
    """Read and parse every bundled schema now, so a command fails before it connects anywhere.

    Raises ``ConfigError`` when one is missing or invalid.
    """
    for name in (SOURCE_V1, SOURCE_V2, REQUEST, DEAD_LETTER):
        parsed_schema(name)


def _parse(name: str, named: dict[str, Any]) -> Schema:
    try:
        parsed = fastavro.parse_schema(json.loads(schema_text(name)), named_schemas=named)
    except (ValueError, fastavro.schema.SchemaParseException) as exc:
        raise ConfigError(f"Avro schema {name!r} is invalid: {exc}") from exc
    if not isinstance(parsed, dict):
        raise ConfigError(f"Avro schema {name!r} is not a record schema")
    return parsed
