"""The event tester: run JSON lines of Freshpaint events through resolve and apply, in order.

The same steps the worker's stages run (``normalize``, then ``steps.resolve_step`` and
``steps.apply_step``), with plain dicts standing in for the ``aliases`` and ``identities``
tables, so identity state is carried from line to line. Used by ``explain`` and
``replay --dry-run``. Pure: no Faust, Kafka or HTTP.

With a ``HoldRule`` (``FPI_HOLD_ANONYMOUS_SECONDS``), ``steps.hold_step`` runs as in the worker: a held
event's line says ``"decision": "hold"``, and the line that links its device is followed by one record
per held event it settles (sent as the person's, or dropped ``anonymous``), in the order the worker
hands them on. Events still held at the end of the input get no second record: the worker would keep
holding them.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from streams.errors import StreamsError
from streams.identity import Held, HoldRule, Link
from streams.mapping import Cart, MappingConfig, Registered
from streams.mapping.subscriptions import Sent, route
from streams.model import Decision, DropReason, Event, Identity
from streams.normalize import normalize_json_line
from streams.projects import Routing, unrouted_detail
from streams.steps import apply_step, hold_step, resolve_step

__all__ = ["ExplainState", "decision_record", "explain_all", "explain_event", "explain_lines"]

_HELD_DETAIL = "held until its device is linked to a person"


@dataclass(slots=True)
class ExplainState:
    """In-memory stand-ins for the worker's two tables."""

    aliases: dict[str, Link] = field(default_factory=dict)
    """anonymous id -> person key and since when (the "resolve" stage's table)."""
    identities: dict[str, Identity] = field(default_factory=dict)
    """person key -> Identity (the "apply" stage's table)."""
    hold: HoldRule | None = None
    """Hold anonymous events until their device is linked; ``None``: drop them (the default)."""
    held: dict[str, list[Held[Event]]] = field(default_factory=dict)
    """device -> its held events (the "resolve" stage's ``held`` table)."""
    carts: dict[str, Cart] = field(default_factory=dict)
    """person key -> their cart (the "apply" stage's ``carts`` table; used with ``MappingConfig.carts``).
    A cart decision's ``detail`` states the cart it assumes."""
    devices: dict[str, Registered] = field(default_factory=dict)
    """person key -> their registered push devices (the ``devices`` table; with ``MappingConfig.push_app_name``)."""
    subscriptions: dict[str, Sent] = field(default_factory=dict)
    """person key -> their subscription state as sent (the ``subscriptions`` table; with a subscription trait)."""
    routing: Routing | None = None
    """The routing file's projects (``FPI_PROJECTS_FILE``): each event is mapped by its project, as in the apply
    stage, and its record names the project; ``None``: one project."""


def explain_event(event: Event, config: MappingConfig, state: ExplainState, now: datetime) -> Decision:
    """Run one event through resolve and apply, updating ``state`` like the agents update their tables.

    The event's own decision only; a held event is reported as an ``anonymous`` drop saying it is held,
    and the held events it releases are not reported (``explain_all`` reports them).
    """
    decision = explain_all(event, config, state, now)[0][1]
    assert not isinstance(decision, StreamsError), "the event's own mapping error is raised"
    return decision if decision is not None else Decision.drop(DropReason.ANONYMOUS, _HELD_DETAIL)


def explain_all(event: Event, config: MappingConfig, state: ExplainState,
                now: datetime) -> list[tuple[Event, Decision | StreamsError | None]]:
    """Run one event through resolve (and hold) and apply: its decision (``None`` when it is held), then
    the decision of each held event it settles, in the order the worker hands them on.

    Raises what ``apply_step`` raises for the event itself; for a released event that cannot be mapped
    the error takes the decision's place (the worker dead-letters it and goes on).
    """
    window = state.hold.window if state.hold is not None else None
    resolved = resolve_step(event, state.aliases, window)
    if state.hold is None:
        if resolved.person_key is None:
            assert resolved.drop is not None
            return [(event, Decision.drop(resolved.drop, resolved.detail))]
        return [(event, _apply(event, resolved.person_key, state, config, now))]
    holding = sum(len(events) for events in state.held.values())
    outcome = hold_step(event, resolved, event, state.aliases, state.held, state.hold, holding)
    if event.anonymous_id is not None and not state.held.get(event.anonymous_id, True):
        del state.held[event.anonymous_id]
    out: list[tuple[Event, Decision | StreamsError | None]]
    if outcome.held:
        out = [(event, None)]
    elif outcome.overflow:
        out = [(event, Decision.drop(DropReason.HOLD_OVERFLOW, f"device {event.anonymous_id!r} or the worker "
                                     "holds the most events allowed"))]
    elif resolved.person_key is None:
        assert resolved.drop is not None
        out = [(event, Decision.drop(resolved.drop, resolved.detail))]
    else:
        out = [(event, _apply(event, resolved.person_key, state, config, now))]
    detail = "held, but no link to a person within FPI_HOLD_ANONYMOUS_SECONDS of it"
    out += [(h.payload, Decision.drop(DropReason.ANONYMOUS, detail)) for h in outcome.dropped]
    if outcome.released:
        assert resolved.person_key is not None
        out += [(h.payload, _released(h.payload, resolved.person_key, state, config, now))
                for h in outcome.released]
    return out


def _apply(event: Event, person_key: str, state: ExplainState, config: MappingConfig, now: datetime) -> Decision:
    project = ""
    if state.routing is not None:  # as the apply stage: the event's project, or a no_project dead letter
        chosen = state.routing.choose(event)
        if chosen is None:
            return Decision.drop(DropReason.NO_PROJECT, unrouted_detail(event, state.routing))
        config, project = chosen.mapping, chosen.name
    decision = apply_step(event, person_key, state.identities, config, now,
                          carts=state.carts if config.carts else None,
                          devices=state.devices if config.push_app_name else None,
                          subscriptions=state.subscriptions)
    if not project:
        return decision
    return dataclasses.replace(decision, requests=tuple(dataclasses.replace(request, project=project)
                                                        for request in decision.requests))


def _released(event: Event, person_key: str, state: ExplainState, config: MappingConfig,
              now: datetime) -> Decision | StreamsError:
    try:
        return _apply(event, person_key, state, config, now)
    except StreamsError as exc:
        return exc


def decision_record(message_id: str | None, decision: Decision | None) -> dict[str, Any]:
    """The JSON object ``explain`` prints for one decision (``None``: the event is held)."""
    if decision is None:
        return {"message_id": message_id, "decision": "hold", "reason": None, "detail": _HELD_DETAIL,
                "requests": []}
    record = {
        "message_id": message_id,
        "decision": "send" if decision.sends else "drop",
        "reason": None if decision.drop_reason is None else decision.drop_reason.value,
        "detail": decision.detail,
        "requests": [_request_record(request.endpoint.value, request.body) for request in decision.requests],
    }
    if decision.requests and decision.requests[0].project:  # several projects (FPI_PROJECTS_FILE)
        record["project"] = decision.requests[0].project
    return record


def _request_record(endpoint: str, body: Mapping[str, Any]) -> dict[str, Any]:
    """A POST of the body, or a subscription call: its method and path, no body (``mapping.subscriptions``)."""
    routed = route(endpoint, body)
    if routed is None:
        return {"method": "POST", "path": endpoint, "body": dict(body)}
    return {"method": routed[0], "path": routed[1], "body": None}


def explain_lines(
    lines: Iterable[str | bytes],
    config: MappingConfig,
    *,
    state: ExplainState | None = None,
    now: datetime | None = None,
    hold: HoldRule | None = None,
    routing: Routing | None = None,
) -> Iterator[dict[str, Any]]:
    """Yield one record per non-blank line: ``message_id``, ``decision`` (send, drop, error, or hold
    with ``hold``), ``reason`` (a stable code or null), ``detail`` (text or null) and ``requests``;
    a line that settles held events is followed by one record for each of them.

    A line that cannot be parsed or mapped yields ``decision: "error"`` and the next line follows.
    """
    state = state if state is not None else ExplainState(hold=hold, routing=routing)
    now = now or datetime.now(UTC)
    for line in lines:
        if not line.strip():
            continue
        try:
            event = normalize_json_line(line)
            decisions = explain_all(event, config, state, now)
        except StreamsError as exc:
            yield _error_record(_message_id_of(line), exc)
            continue
        for decided, decision in decisions:
            if isinstance(decision, StreamsError):
                yield _error_record(decided.message_id, decision)
            else:
                yield decision_record(decided.message_id, decision)


def _error_record(message_id: str | None, exc: StreamsError) -> dict[str, Any]:
    return {"message_id": message_id, "decision": "error", "reason": exc.reason.value, "detail": str(exc),
            "requests": []}


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
