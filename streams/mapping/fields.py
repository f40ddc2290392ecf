"""Field hygiene and Iterable date formats: the only module that parses or formats dates.

Rules and where they come from:

* Key names: ``$``-prefixed and dotted keys are renamed (``$current_url`` -> ``current_url``,
  ``a.b`` -> ``a_b``) because Iterable addresses nested fields with dotted paths and no source
  covers ``$`` keys (iterable-api.md §7, §8 item 5).
* Iterable-managed profile fields are never sent (iterable-api.md §6.1, D3).
* Dates: ISO-8601 datetimes become ``yyyy-MM-dd HH:mm:ss +00:00`` in UTC, date-only strings stay
  ``yyyy-MM-dd``, strings that merely look numeric (``"1234"``) are never dates
  (iterable-api.md §6.2; peers.md §6 items 1 and 2). Epoch numbers become dates only in fields the
  operator lists in ``date_fields`` (a number would otherwise lock the field as ``long``, §6.2).
* Type stability: a value's JSON type after normalization depends only on its JSON type before and,
  for strings, on whether it is a date; booleans and numbers are never stringified (peers.md §6
  item 4, iterable-api.md §6.3). Non-finite floats (not JSON) become ``null``.
"""

from __future__ import annotations

import math
import re
from collections.abc import Collection, Mapping
from datetime import UTC, date, datetime, timedelta
from functools import lru_cache
from typing import Any

__all__ = [
    "EPOCH_MILLIS_THRESHOLD",
    "MANAGED_PROFILE_FIELDS",
    "clean_data_fields",
    "created_at",
    "datetime_from_epoch",
    "format_datetime",
    "normalize_date_string",
    "normalize_value",
    "parse_timestamp",
    "safe_key",
]

MANAGED_PROFILE_FIELDS: frozenset[str] = frozenset(
    {
        "emailListIds",
        "signupDate",
        "signupSource",
        "profileUpdatedAt",
        "itblInternal",
        "subscribedMessageTypeIds",
        "unsubscribedChannelIds",
        "unsubscribedMessageTypeIds",
        "shoppingCartItems",
    }
)
"""Profile fields Iterable manages itself (iterable-api.md §6.1, D3; the cart belongs to updateCart, §2.6)."""

EPOCH_MILLIS_THRESHOLD = 100_000_000_000
"""Epoch numbers at or above this magnitude (year 5138 in seconds) are read as milliseconds."""

_DATE_ONLY = re.compile(r"(\d{4})-(\d{2})-(\d{2})")
_DATETIME = re.compile(
    r"(?P<date>\d{4}-\d{2}-\d{2})[T ](?P<h>\d{2}):(?P<m>\d{2})(?::(?P<s>\d{2})(?:\.(?P<frac>\d{1,9}))?)?"
    r"\s?(?P<zone>Z|z|[+-]\d{2}(?::?\d{2})?)?"
)


def format_datetime(value: datetime) -> str:
    """Return ``value`` in Iterable's standard format ``yyyy-MM-dd HH:mm:ss +00:00`` (UTC).

    Naive datetimes are taken as UTC. Sub-second precision is dropped: Iterable rejects fractions
    with a space separator (iterable-api.md §6.2, "Known bad").
    """
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S +00:00")


def _parse_iso_datetime(text: str) -> datetime | None:
    match = _DATETIME.fullmatch(text)
    if match is None:
        return None
    try:
        day = date.fromisoformat(match["date"])
        hour, minute, second = int(match["h"]), int(match["m"]), int(match["s"] or 0)
        micro = int((match["frac"] or "0")[:6].ljust(6, "0"))
        zone = match["zone"]
        offset = timedelta(0)
        if zone and zone not in ("Z", "z"):
            digits = zone[1:].replace(":", "")
            hours, minutes = int(digits[:2]), int(digits[2:4] or 0)
            if hours > 23 or minutes > 59:
                return None
            offset = timedelta(hours=hours, minutes=minutes) * (1 if zone[0] == "+" else -1)
        naive = datetime(day.year, day.month, day.day, hour, minute, second, micro)
    except ValueError:
        return None
    # Subtracting the offset instead of building a fixed-offset tz keeps dates near year 1/9999 exact.
    try:
        return (naive - offset).replace(tzinfo=UTC)
    except OverflowError:
        return None


def normalize_date_string(text: str) -> str | None:
    """Return ``text`` as an Iterable date string, or ``None`` when it is not a date.

    * ISO-8601 datetimes (``T`` or space separator, optional seconds, fraction and zone; naive means
      UTC) -> ``yyyy-MM-dd HH:mm:ss +00:00``.
    * Valid date-only strings ``yyyy-MM-dd`` are returned unchanged (peers.md §6 item 2).
    * Everything else, including digit-only strings such as ``"1234"`` and impossible calendar dates,
      returns ``None`` (peers.md §6 item 1).
    """
    if not _may_be_date(text):
        return None
    if _DATE_ONLY.fullmatch(text):
        try:
            date.fromisoformat(text)
        except ValueError:
            return None
        return text
    parsed = _parse_iso_datetime(text)
    return None if parsed is None else format_datetime(parsed)


def _may_be_date(text: str) -> bool:
    """False for most strings that neither date pattern can match (both start ``dddd-dd-dd``),
    without running a regex. ``_normalize`` and ``_clean`` inline the same test (a call per string
    value costs more than the test)."""
    return len(text) >= 10 and text[4] == "-"


def parse_timestamp(text: str) -> datetime:
    """Parse an RFC 3339 / ISO-8601 event timestamp into an aware UTC datetime.

    A date-only string means midnight UTC. Raises ``ValueError`` when ``text`` is not such a value.
    """
    if _DATE_ONLY.fullmatch(text):
        return datetime.combine(date.fromisoformat(text), datetime.min.time(), tzinfo=UTC)
    parsed = _parse_iso_datetime(text)
    if parsed is None:
        raise ValueError(f"not an ISO-8601 timestamp: {text!r}")
    return parsed


def datetime_from_epoch(value: float) -> datetime:
    """Convert epoch seconds (or milliseconds at or above ``EPOCH_MILLIS_THRESHOLD``) to aware UTC.

    Raises ``ValueError`` for booleans, non-finite or out-of-range values.
    """
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ValueError(f"not an epoch number: {value!r}")
    seconds = value / 1000 if abs(value) >= EPOCH_MILLIS_THRESHOLD else value
    try:
        return datetime.fromtimestamp(seconds, tz=UTC)
    except (OverflowError, OSError, ValueError) as exc:
        raise ValueError(f"epoch value out of range: {value!r}") from exc


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_NAIVE_EPOCH = datetime(1970, 1, 1)


def created_at(timestamp: datetime) -> int:
    """``createdAt`` for events and purchases: Unix **seconds** (iterable-api.md §6.1; peers.md §7 item 3);
    a naive timestamp is read as UTC."""
    # Whole seconds of the calendar time, in integers: timestamp() goes through a float, which rounds
    # .999999 s up to the next second for dates a few centuries out. A timedelta's days and seconds are
    # the floor of its length (calendar.timegm(utctimetuple()) gives the same, at a sixth of the speed).
    since = timestamp - (_EPOCH if timestamp.tzinfo is not None else _NAIVE_EPOCH)
    return since.days * 86_400 + since.seconds


@lru_cache(maxsize=65_536)  # keys repeat across events; bounded, so odd keys cannot grow it forever
def safe_key(key: str) -> str:
    """Rename a field key for Iterable: strip leading ``$``, turn dots into underscores (§7).

    A key that would become empty is named ``unnamed``.
    """
    renamed = key.lstrip("$").replace(".", "_")
    return renamed or "unnamed"


def normalize_value(value: Any, *, key: str | None = None, date_fields: Collection[str] = ()) -> Any:
    """Normalize one JSON value for ``dataFields`` (recursively for objects and arrays).

    Date strings are formatted (``normalize_date_string``); numbers in a field named in
    ``date_fields`` are read as epoch values and formatted; every other value keeps its JSON type.
    """
    return _normalize(value, key, date_fields)


def _normalize(value: Any, key: str | None, date_fields: Collection[str]) -> Any:
    # Exact-type fast paths for what JSON decoding produces, most frequent first; subclasses and
    # other types (datetimes, tuples, other mappings) take the general path, with the same results.
    kind = type(value)
    if kind is str:
        if len(value) < 10 or value[4] != "-":  # _may_be_date, inlined: most strings stop here
            return value
        formatted = normalize_date_string(value)
        return value if formatted is None else formatted
    if kind is int or kind is float:
        return _number(value, key, date_fields)
    if kind is dict:
        return _clean(value, date_fields, False, ())
    if kind is list:
        return [_normalize(item, key, date_fields) for item in value]
    if value is None or kind is bool:
        return value
    return _normalize_other(value, key, date_fields)


def _number(value: float, key: str | None, date_fields: Collection[str]) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if key is not None and key in date_fields:
        try:
            return format_datetime(datetime_from_epoch(value))
        except ValueError:
            return value
    return value


def _normalize_other(value: Any, key: str | None, date_fields: Collection[str]) -> Any:
    if isinstance(value, bool):
        return value
    if isinstance(value, int | float):
        return _number(value, key, date_fields)
    if isinstance(value, str):
        formatted = normalize_date_string(value)
        return value if formatted is None else formatted
    if isinstance(value, datetime):
        return format_datetime(value)
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, Mapping):
        return _clean(value, date_fields, False, ())
    if isinstance(value, list | tuple):
        return [_normalize(item, key, date_fields) for item in value]
    return value


def clean_data_fields(
    fields: Mapping[str, Any],
    *,
    date_fields: Collection[str] = (),
    drop_managed: bool = True,
    exclude: Collection[str] = (),
) -> dict[str, Any]:
    """Return ``fields`` ready for Iterable ``dataFields``.

    Keys go through ``safe_key``; when a renamed key collides with a key that was already safe, the
    explicit key keeps its name and the renamed one becomes ``fp_<name>`` (deterministic, nothing
    lost). Top-level keys in ``exclude`` (after renaming) and, with ``drop_managed``, the
    Iterable-managed profile fields are left out. Values go through ``normalize_value``.
    """
    return _clean(fields, date_fields, drop_managed, exclude)


def _clean(
    fields: Mapping[str, Any], date_fields: Collection[str], drop_managed: bool, exclude: Collection[str]
) -> dict[str, Any]:
    keys = list(fields)
    names = list(map(safe_key, keys))
    # Only when some key was renamed can it collide with a key that was already safe.
    explicit = () if names == keys else {key for key, name in zip(keys, names, strict=True) if name == key}
    cleaned: dict[str, Any] = {}
    for key, name, value in zip(keys, names, fields.values(), strict=True):
        if name != key and name in explicit:
            name = f"fp_{name}"
        if name in exclude or (drop_managed and name in MANAGED_PROFILE_FIELDS):
            continue
        kind = type(value)
        if (kind is str and (len(value) < 10 or value[4] != "-")) or value is None or kind is bool:
            cleaned[name] = value  # what _normalize returns for them, without the call
        else:
            cleaned[name] = _normalize(value, name, date_fields)
    return cleaned
