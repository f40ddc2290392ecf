"""The event tester: run JSON lines of Freshpaint events through resolve and apply, in order.

The same steps the worker's stages run (``normalize``, then ``steps.resolve_step`` and
``steps.apply_step``), with plain dicts standing in for the ``aliases`` and ``identities``
tables, so identity state is carried from line to line. Used by ``explain`` and
``replay --dry-run``. Pure: no Faust, Kafka or HTTP.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from streams.errors import StreamsError
from streams.identity import Link
from streams.mapping import MappingConfig
from streams.model import Decision, Event, Identity
from streams.normalize import normalize_json_line
from streams.steps import apply_step, resolve_step

__all__ = ["ExplainState", "decision_record", "explain_event", "explain_lines"]


@dataclass(slots=True)
class ExplainState:
    """In-memory stand-ins for the worker's two tables."""

    aliases: dict[str, Link] = field(default_factory=dict)
    """anonymous id -> person key and since when (the "resolve" stage's table)."""
    identities: dict[str, Identity] = field(default_factory=dict)
    """person key -> Identity (the "apply" stage's table)."""


def explain_event(event: Event, config: MappingConfig, state: ExplainState, now: datetime) -> Decision:
    """Run one event through resolve and apply, updating ``state`` like the agents update their tables."""
    resolved = resolve_step(event, state.aliases)
    if resolved.person_key is None:
        assert resolved.drop is not None
        return Decision.drop(resolved.drop, resolved.detail)
    return apply_step(event, resolved.person_key, state.identities, config, now)


def decision_record(message_id: str | None, decision: Decision) -> dict[str, Any]:
    """The JSON object ``explain`` prints for one decision."""
    return {
        "message_id": message_id,
        "decision": "send" if decision.sends else "drop",
        "reason": None if decision.drop_reason is None else decision.drop_reason.value,
        "detail": decision.detail,
        "requests": [
            {"method": "POST", "path": request.endpoint.value, "body": dict(request.body)}
            for request in decision.requests
        ],
    }


def explain_lines(
    lines: Iterable[str | bytes],
    config: MappingConfig,
    *,
    state: ExplainState | None = None,
    now: datetime | None = None,
) -> Iterator[dict[str, Any]]:
    """Yield one record per non-blank line: ``message_id``, ``decision`` (send, drop or error),
    ``reason`` (a stable code or null), ``detail`` (text or null) and ``requests``.

    A line that cannot be parsed or mapped yields ``decision: "error"`` and the next line follows.
    """
    state = state if state is not None else ExplainState()
    now = now or datetime.now(UTC)
    for line in lines:
        if not line.strip():
            continue
        try:
            event = normalize_json_line(line)
            decision = explain_event(event, config, state, now)
        except StreamsError as exc:
            yield {
                "message_id": _message_id_of(line),
                "decision": "error",
                "reason": exc.reason.value,
                "detail": str(exc),
                "requests": [],
            }
            continue
        yield decision_record(event.message_id, decision)


def _message_id_of(line: str | bytes) -> str | None:
    """Best effort: the message id of a line that failed, for the error record."""
    try:
        raw = json.loads(line)
    except (ValueError, UnicodeDecodeError):
        return None
    if not isinstance(raw, dict):
        return None
    value = raw.get("messageId")
    if value is None and isinstance(raw.get("properties"), dict):
        value = raw["properties"].get("$insert_id")
    return value if isinstance(value, str) else None
