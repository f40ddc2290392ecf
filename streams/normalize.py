"""Freshpaint's two input dialects -> one ``Event``.

* **Destination messages** (Segment spec): ``type``, ``messageId``, ``timestamp`` (RFC 3339),
  ``anonymousId``, ``userId``, ``event``, ``properties``, ``traits``, ``context``, ``previousId``
  (freshpaint-events.md §5).
* **Raw HTTP API / web SDK events**: ``{"event": ..., "properties": {...}}`` with ``distinct_id``,
  ``$device_id``, ``$user_id``, ``$insert_id`` and ``time`` in epoch seconds (freshpaint-events.md
  §1.1, §2, §3).

A mapping with a ``type`` key is a destination message; otherwise one with ``event`` and
``properties`` is a raw event. Anything else, or a malformed field, raises ``InvalidEvent`` naming the
field (a dotted path). Keys are not renamed here: field hygiene happens at mapping time.

Identity rules for raw events (freshpaint-events.md §3.1): the user id is ``$user_id``, else
``distinct_id`` when it differs from ``$device_id`` (a server-side event with only ``distinct_id``
is therefore identified); the anonymous id is ``$device_id``. A ``$identify`` links
``$anon_distinct_id`` (or ``$device_id``) to ``distinct_id`` and carries traits in ``$user_props``;
an ``$identify`` whose ``distinct_id`` equals the anonymous id has no user id (§3). Emails come only
from traits (``traits.email``, ``context.traits.email``, ``$user_props.email``), never from
``distinct_id`` or event properties.

Message ids: destination ``messageId``; raw ``$insert_id``. A raw event without ``$insert_id`` gets
``fp-`` + the first 32 hex digits of the SHA-256 of its canonical JSON (sorted keys, no spaces), so
the same event always gets the same id and replays stay idempotent in Iterable.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from streams.errors import InvalidEvent
from streams.mapping.fields import datetime_from_epoch, parse_timestamp
from streams.model import Event, EventType, PageContext

__all__ = ["derive_message_id", "normalize", "normalize_json_line"]

_RAW_RESERVED = frozenset(
    {
        "distinct_id",
        "token",
        "time",
        "$insert_id",
        "$device_id",
        "$user_id",
        "$anon_distinct_id",
        "$user_props",
        "$options",
        "$event_name",
    }
)
"""Raw-event properties that carry identity, credentials or routing, not user data (§1.1, §2.1)."""

_PAGE_EVENTS = frozenset({"$page", "mp_page_view"})
"""Raw events that are page views: ``page()`` and the legacy ``track_pageview()`` (§2.2)."""


def normalize(raw: Mapping[str, Any]) -> Event:
    """Return the normalized ``Event`` for one Freshpaint event in either dialect.

    Raises ``InvalidEvent`` (with ``field``) for unknown shapes and malformed fields.
    """
    if not isinstance(raw, Mapping):
        raise InvalidEvent("an event must be a JSON object", field="$")
    if "type" in raw:
        return _destination(raw)
    if "event" in raw and "properties" in raw:
        return _raw(raw)
    raise InvalidEvent(
        "neither a destination message (type) nor a raw event (event, properties)", field="type"
    )


def normalize_json_line(line: str | bytes) -> Event:
    """Parse one JSON line and ``normalize`` it; raises ``InvalidEvent`` (field ``json``) for bad JSON."""
    try:
        raw = json.loads(line)
    except (ValueError, UnicodeDecodeError) as exc:
        raise InvalidEvent(f"not valid JSON ({exc})", field="json") from exc
    return normalize(raw)


def derive_message_id(raw: Mapping[str, Any]) -> str:
    """A deterministic message id from an event's content: ``fp-`` + 32 hex digits of its SHA-256."""
    canonical = json.dumps(raw, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)
    return "fp-" + hashlib.sha256(canonical.encode("utf-8")).hexdigest()[:32]


# --- helpers -----------------------------------------------------------------------------------


def _opt_str(raw: Mapping[str, Any], key: str, path: str) -> str | None:
    value = raw.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise InvalidEvent(f"must be a string, got {type(value).__name__}", field=path)
    text = str(value).strip()
    return text or None


def _mapping(raw: Mapping[str, Any], key: str, path: str) -> Mapping[str, Any]:
    value = raw.get(key)
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise InvalidEvent(f"must be an object, got {type(value).__name__}", field=path)
    return value


def _email_from(traits: Mapping[str, Any], path: str) -> str | None:
    return _opt_str(traits, "email", path) if "email" in traits else None


# --- destination (Segment-spec) messages -------------------------------------------------------


def _destination(raw: Mapping[str, Any]) -> Event:
    kind = raw.get("type")
    try:
        event_type = EventType(str(kind))
    except ValueError:
        raise InvalidEvent(f"unknown type {kind!r}", field="type") from None
    message_id = _opt_str(raw, "messageId", "messageId")
    if message_id is None:
        raise InvalidEvent("is required", field="messageId")
    timestamp_text = raw.get("timestamp")
    if not isinstance(timestamp_text, str):
        raise InvalidEvent("is required as an RFC 3339 string", field="timestamp")
    try:
        timestamp = parse_timestamp(timestamp_text)
    except ValueError as exc:
        raise InvalidEvent(str(exc), field="timestamp") from exc
    anonymous_id = _opt_str(raw, "anonymousId", "anonymousId")
    user_id = _opt_str(raw, "userId", "userId")
    previous_id = _opt_str(raw, "previousId", "previousId")
    if anonymous_id is None and user_id is None and previous_id is None:
        raise InvalidEvent("an anonymousId or userId is required", field="anonymousId")
    properties = _mapping(raw, "properties", "properties")
    traits = _mapping(raw, "traits", "traits")
    context = _mapping(raw, "context", "context")
    context_traits = _mapping(context, "traits", "context.traits")
    email = _email_from(traits, "traits.email") or _email_from(context_traits, "context.traits.email")

    event_name: str | None = None
    page: PageContext | None = None
    if event_type is EventType.TRACK:
        event_name = _opt_str(raw, "event", "event")
        if event_name is None:
            raise InvalidEvent("is required for track messages", field="event")
    elif event_type in (EventType.PAGE, EventType.SCREEN):
        event_name = _opt_str(raw, "name", "name")
        page_ctx = _mapping(context, "page", "context.page")
        page = PageContext(
            url=_page_value(properties, page_ctx, "url"),
            path=_page_value(properties, page_ctx, "path"),
            title=_page_value(properties, page_ctx, "title"),
            referrer=_page_value(properties, page_ctx, "referrer"),
            search=_page_value(properties, page_ctx, "search"),
        )
    if event_type is EventType.ALIAS and user_id is None:
        raise InvalidEvent("is required for alias messages", field="userId")
    return Event(
        type=event_type,
        message_id=message_id,
        timestamp=timestamp,
        anonymous_id=anonymous_id,
        user_id=user_id,
        email=email,
        event_name=event_name,
        properties=dict(properties),
        traits=dict(traits),
        context=dict(context),
        page=page,
        previous_id=previous_id,
    )


def _page_value(properties: Mapping[str, Any], page_ctx: Mapping[str, Any], key: str) -> str | None:
    value = properties.get(key, page_ctx.get(key))
    return value if isinstance(value, str) and value else None


# --- raw HTTP API / web SDK events -------------------------------------------------------------


def _raw_timestamp(props: Mapping[str, Any]) -> datetime:
    value = props.get("time")
    if value is None:
        raise InvalidEvent("is required (epoch seconds)", field="properties.time")
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InvalidEvent(f"must be a number of epoch seconds, got {type(value).__name__}",
                           field="properties.time")
    try:
        return datetime_from_epoch(value)
    except ValueError as exc:
        raise InvalidEvent(str(exc), field="properties.time") from exc


def _raw(raw: Mapping[str, Any]) -> Event:
    name = _opt_str(raw, "event", "event")
    if name is None:
        raise InvalidEvent("is required", field="event")
    props = _mapping(raw, "properties", "properties")
    timestamp = _raw_timestamp(props)
    message_id = _opt_str(props, "$insert_id", "properties.$insert_id") or derive_message_id(raw)
    distinct_id = _opt_str(props, "distinct_id", "properties.distinct_id")
    device_id = _opt_str(props, "$device_id", "properties.$device_id")
    user_prop = _opt_str(props, "$user_id", "properties.$user_id")
    if distinct_id is None and device_id is None and user_prop is None:
        raise InvalidEvent("is required", field="properties.distinct_id")
    user_id = user_prop or (distinct_id if distinct_id != device_id else None)
    anonymous_id = device_id
    data = {key: value for key, value in props.items() if key not in _RAW_RESERVED}

    event_type = EventType.TRACK
    event_name: str | None = name
    traits: Mapping[str, Any] = {}
    page: PageContext | None = None
    previous_id: str | None = None
    email: str | None = None

    if name == "$identify":
        event_type = EventType.IDENTIFY
        event_name = None
        anon = _opt_str(props, "$anon_distinct_id", "properties.$anon_distinct_id")
        anonymous_id = device_id or anon
        if distinct_id is not None and distinct_id not in (anon, device_id):
            user_id = distinct_id
        elif user_prop is None:
            user_id = None
        traits = _mapping(props, "$user_props", "properties.$user_props")
        email = _email_from(traits, "properties.$user_props.email")
    elif name == "$create_alias":
        event_type = EventType.ALIAS
        event_name = None
        user_id = _opt_str(props, "alias", "properties.alias")
        if user_id is None:
            raise InvalidEvent("is required for $create_alias", field="properties.alias")
        previous_id = distinct_id
        data.pop("alias", None)
    elif name in _PAGE_EVENTS or (name == "$web_event" and props.get("$event_type") == "pageview"):
        event_type = EventType.PAGE
        page_name = props.get("$name")
        event_name = page_name if isinstance(page_name, str) and page_name else None
        page = _raw_page(props)
        page_props = props.get("$page_props")
        if isinstance(page_props, Mapping):
            data.pop("$page_props")
            data.update(page_props)
    elif name == "$screen":
        event_type = EventType.SCREEN
        screen_name = props.get("$name", props.get("name"))
        event_name = screen_name if isinstance(screen_name, str) and screen_name else None
    elif name == "$group":
        event_type = EventType.GROUP
        event_name = None

    if anonymous_id is None and user_id is None:
        raise InvalidEvent("no anonymous or user id", field="properties.distinct_id")
    return Event(
        type=event_type,
        message_id=message_id,
        timestamp=timestamp,
        anonymous_id=anonymous_id,
        user_id=user_id,
        email=email,
        event_name=event_name,
        properties=data,
        traits=dict(traits),
        # The environment token selects the Iterable project when a routing file is used (streams.projects).
        context={"token": token} if isinstance(token := props.get("token"), str) else {},
        page=page,
        previous_id=previous_id,
    )


def _raw_page(props: Mapping[str, Any]) -> PageContext:
    def text(key: str) -> str | None:
        value = props.get(key)
        return value if isinstance(value, str) and value else None

    # mp_page / mp_referrer are what the legacy track_pageview() sends instead (§2.2).
    return PageContext(
        url=text("$current_url") or text("mp_page"),
        path=text("$pathname"),
        title=text("$title"),
        referrer=text("$referrer") or text("mp_referrer"),
    )
