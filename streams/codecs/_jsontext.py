"""JSON text inside Avro string fields (properties, traits, context), and the JSON writers' fallback.

orjson does the work; the standard library writes what orjson refuses (integers beyond 64 bits),
so ints stay ints and floats stay floats on the way out. On the way in, orjson reads an integer
beyond 64 bits as a float (it does not refuse it, so the standard library never sees it): such
integers in a source event's JSON fields lose precision. The internal topics avoid this by
flagging payloads that hold them (``_internal``). JSON has no NaN or infinity: orjson writes them
as ``null``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import datetime
from typing import Any

import orjson

__all__ = ["dumps_object", "json_default", "loads_object"]


def json_default(value: Any) -> Any:
    """What the JSON writers call for a value JSON has no type for: mappings become objects,
    tuples and sets arrays, datetimes ISO 8601 text (as orjson writes them); else ``TypeError``."""
    if isinstance(value, Mapping):
        return dict(value)
    if isinstance(value, tuple | set | frozenset):
        return list(value)
    if isinstance(value, datetime):
        return value.isoformat()
    raise TypeError(f"not JSON serializable: {type(value).__name__}")


def dumps_object(value: Mapping[str, Any]) -> str:
    """JSON text of a mapping. Raises ``TypeError`` or ``ValueError`` for values JSON cannot hold."""
    try:
        return orjson.dumps(value, default=json_default).decode()
    except orjson.JSONEncodeError:
        # orjson stops at 64-bit integers; the standard library does not.
        return json.dumps(value, default=json_default, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def loads_object(text: str) -> dict[str, Any]:
    """The JSON object in ``text``. Raises ``ValueError`` when it is not JSON or not an object."""
    try:
        value = orjson.loads(text)
    except orjson.JSONDecodeError:
        value = json.loads(text)  # what orjson rejects and the standard library reads (NaN); else ValueError
    if not isinstance(value, dict):
        raise ValueError(f"expected a JSON object, got {type(value).__name__}")
    return value
