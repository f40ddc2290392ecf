"""User-configured event transformations (the seed's "Event Transformations"), applied before mapping.

Rules live in TOML as an array of tables named ``transformations`` and run in file order; each rule
sees the output of the previous one. A rule has one ``action`` and may be restricted with ``event``
(a name or list of names, matched against the current event name) and ``type`` (``identify``,
``track``, ``page``, ``screen``, ``alias``, ``group``, or a list). "Property" means the event's
``properties``, or its ``traits`` for identify events::

    [[transformations]]
    action = "drop"                       # drop matching events
    event = ["Debug Ping"]

    [[transformations]]
    action = "rename_event"               # to = new event name
    event = "Signed Up"
    to = "Sign Up"

    [[transformations]]
    action = "rename_property"            # property -> to (no-op when absent)
    property = "plan_name"
    to = "plan"

    [[transformations]]
    action = "drop_property"
    property = "$browser"

    [[transformations]]
    action = "set_property"               # value: any TOML value
    type = "track"
    property = "source"
    value = "web"

    [[transformations]]
    action = "map_values"                 # values: old -> new; unmapped values are kept
    property = "plan"
    values = { p = "pro", f = "free" }

Invalid rules raise ``ConfigError`` naming the rule's position (1-based) and the reason, at start-up.
"""

from __future__ import annotations

import dataclasses
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from streams.errors import ConfigError
from streams.model import Event, EventType

__all__ = ["Rule", "Transformations", "load_transformations", "parse_transformations", "read_toml"]

_ACTIONS: dict[str, tuple[frozenset[str], frozenset[str]]] = {
    # action: (required keys, optional keys) besides action/event/type
    "drop": (frozenset(), frozenset()),
    "rename_event": (frozenset({"to"}), frozenset()),
    "rename_property": (frozenset({"property", "to"}), frozenset()),
    "drop_property": (frozenset({"property"}), frozenset()),
    "set_property": (frozenset({"property", "value"}), frozenset()),
    "map_values": (frozenset({"property", "values"}), frozenset()),
}
_MATCHERS = frozenset({"action", "event", "type"})


@dataclass(frozen=True, slots=True)
class Rule:
    """One validated transformation rule."""

    action: str
    events: frozenset[str] | None = None
    types: frozenset[EventType] | None = None
    property: str | None = None
    to: str | None = None
    value: Any = None
    values: tuple[tuple[Any, Any], ...] = ()

    def matches(self, event: Event) -> bool:
        if self.types is not None and event.type not in self.types:
            return False
        return self.events is None or event.event_name in self.events

    def apply(self, event: Event) -> Event | None:
        if not self.matches(event):
            return event
        if self.action == "drop":
            return None
        if self.action == "rename_event":
            return dataclasses.replace(event, event_name=self.to)
        assert self.property is not None
        target = "traits" if event.type is EventType.IDENTIFY else "properties"
        fields = dict(getattr(event, target))
        if self.action == "rename_property":
            assert self.to is not None
            if self.property not in fields:
                return event
            fields[self.to] = fields.pop(self.property)
        elif self.action == "drop_property":
            if self.property not in fields:
                return event
            del fields[self.property]
        elif self.action == "set_property":
            fields[self.property] = self.value
        elif self.action == "map_values":
            current = fields.get(self.property)
            for old, new in self.values:
                if current == old and type(current) is type(old):
                    fields[self.property] = new
                    break
            else:
                return event
        if target == "traits":
            return dataclasses.replace(event, traits=fields)
        return dataclasses.replace(event, properties=fields)


@dataclass(frozen=True, slots=True)
class Transformations:
    """An ordered list of rules; ``Transformations()`` changes nothing."""

    rules: tuple[Rule, ...] = ()

    def apply(self, event: Event) -> Event | None:
        """Return the transformed event, or ``None`` when a rule dropped it."""
        current: Event | None = event
        for rule in self.rules:
            assert current is not None
            current = rule.apply(current)
            if current is None:
                return None
        return current


def read_toml(path: str | Path, what: str) -> dict[str, Any]:
    """The TOML document at ``path``. Raises ``ConfigError`` naming ``what`` (e.g. "transformations file") and the
    path when it cannot be read or is not TOML."""
    try:
        with Path(path).open("rb") as handle:
            return tomllib.load(handle)
    except OSError as exc:
        raise ConfigError(f"cannot read {what} {path}: {exc.strerror}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{what} {path} is not valid TOML: {exc}") from exc


def load_transformations(path: str | Path) -> Transformations:
    """Read the ``transformations`` array of a TOML file. Raises ``ConfigError``."""
    return parse_transformations(read_toml(path, "transformations file").get("transformations", []))


def parse_transformations(rules: Any) -> Transformations:
    """Validate a list of rule tables (as parsed from TOML). Raises ``ConfigError``."""
    if not isinstance(rules, list):
        raise ConfigError("transformations must be an array of tables ([[transformations]])")
    return Transformations(tuple(_parse_rule(position, raw) for position, raw in enumerate(rules, 1)))


def _fail(position: int, reason: str) -> ConfigError:
    return ConfigError(f"transformation rule #{position}: {reason}")


def _names(position: int, raw: Mapping[str, Any], key: str) -> frozenset[str] | None:
    if key not in raw:
        return None
    value = raw[key]
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, list) or not items or not all(isinstance(i, str) and i for i in items):
        raise _fail(position, f"{key!r} must be a non-empty string or a non-empty list of strings")
    return frozenset(items)


def _parse_rule(position: int, raw: Any) -> Rule:
    if not isinstance(raw, Mapping):
        raise _fail(position, "must be a table")
    action = raw.get("action")
    if action not in _ACTIONS:
        raise _fail(position, f"unknown or missing action {action!r} (one of {', '.join(sorted(_ACTIONS))})")
    required, optional = _ACTIONS[action]
    unknown = set(raw) - _MATCHERS - required - optional
    if unknown:
        raise _fail(position, f"unknown key(s) {', '.join(sorted(unknown))} for action {action!r}")
    missing = required - set(raw)
    if missing:
        raise _fail(position, f"action {action!r} needs {', '.join(sorted(missing))}")
    for key in ("property", "to"):
        if key in raw and (not isinstance(raw[key], str) or not raw[key]):
            raise _fail(position, f"{key!r} must be a non-empty string")
    events = _names(position, raw, "event")
    type_names = _names(position, raw, "type")
    types: frozenset[EventType] | None = None
    if type_names is not None:
        bad = sorted(name for name in type_names if name not in EventType._value2member_map_)
        if bad:
            raise _fail(position, f"unknown event type(s) {', '.join(bad)}")
        types = frozenset(EventType(name) for name in type_names)
    values: tuple[tuple[Any, Any], ...] = ()
    if action == "map_values":
        table = raw["values"]
        if not isinstance(table, Mapping) or not table:
            raise _fail(position, "'values' must be a non-empty table of old = new")
        values = tuple(table.items())
    return Rule(
        action=action,
        events=events,
        types=types,
        property=raw.get("property"),
        to=raw.get("to"),
        value=raw.get("value"),
        values=values,
    )
