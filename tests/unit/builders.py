"""Event, identity and config builders shared by the mapping-core unit tests."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from streams.mapping import Applied, MappingConfig, apply_event
from streams.model import Event, EventType, Identity, ProjectType

T0 = datetime(2024, 3, 5, 14, 7, tzinfo=UTC)
NOW = datetime(2024, 3, 6, tzinfo=UTC)


def event(type: EventType = EventType.TRACK, **fields: Any) -> Event:
    fields.setdefault("message_id", "m-1")
    fields.setdefault("timestamp", T0)
    if type is EventType.TRACK:
        fields.setdefault("event_name", "Viewed Pricing")
    return Event(type=type, **fields)


def person(user_id: str | None = "u-1", email: str | None = "jane@example.com", **fields: Any) -> Identity:
    fields.setdefault("last_identified_at", T0)
    fields.setdefault("first_identified_at", T0)
    return Identity(person_key=user_id or email or "?", user_id=user_id, email=email, **fields)


def run(
    ev: Event,
    identity: Identity | None = None,
    project: ProjectType = ProjectType.EMAIL,
    **config: Any,
) -> Applied:
    key = identity.person_key if identity else (ev.user_id or ev.email or "k")
    return apply_event(ev, key, identity, MappingConfig(project_type=project, **config), NOW)


def body(applied: Applied, index: int = 0) -> dict[str, Any]:
    assert applied.decision.sends, applied.decision
    return dict(applied.decision.requests[index].body)
