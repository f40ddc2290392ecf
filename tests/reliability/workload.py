"""Seeded workloads for the reliability suite, and what Iterable must hold after them.

``generate(people, events, seed)`` writes Freshpaint destination messages (JSON lines). Each person
has exactly one device, so the source topic (keyed by device by ``produce``) keeps a person's
events in order. Per person: an anonymous page first (a quiet drop), then an identify, then a mix
of tracks, pages, screens, purchases, later identifies, and a few records that must end as dead
letters (incomplete purchases, group calls). People are interleaved at random; field types are
stable across people so the order between people does not change what Iterable holds.

``expect(lines)`` runs the same lines through ``streams.explain.explain_lines`` (the mapping core,
one process, in order) and replays the resulting requests into a fresh emulator ``Project``: the
state the pipeline must reach, whatever fails on the way.
"""

from __future__ import annotations

import json
import random
import time
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from streams.emulator.project import Project
from streams.explain import explain_lines
from streams.identity import HoldRule
from streams.mapping import MappingConfig
from streams.model import ProjectType

__all__ = ["Expected", "Workload", "expect", "generate", "iterable_state", "planned"]

QUIET = frozenset({"anonymous", "filtered_by_transformation", "stale_identify", "unchanged"})
_BASE = datetime(2024, 3, 5, 12, 0, tzinfo=UTC)


@dataclass(frozen=True, slots=True)
class Workload:
    lines: list[str]
    emails: tuple[str, ...]
    """Every email the workload carries (the security checks look for them)."""


def _ts(person: int, step: int) -> str:
    moment = _BASE + timedelta(seconds=person * 3 + step * 60)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def _person_lines(run: str, person: int, steps: int, rng: random.Random) -> tuple[list[dict[str, Any]], str]:
    device = f"dev-{run}-{person}"
    user_id = f"u-{run}-{person}"
    email = f"person{person}.{run}@example.com"
    out: list[dict[str, Any]] = []

    def msg(kind: str, step: int, **fields: Any) -> dict[str, Any]:
        body = {"type": kind, "messageId": f"m-{run}-{person}-{step}", "timestamp": _ts(person, step),
                "anonymousId": device}
        body.update(fields)
        return body

    out.append(msg("page", 0, name="Landing", properties={"section": "top"}))
    out.append(msg("identify", 1, userId=user_id,
                   traits={"email": email, "first_name": f"P{person}", "plan": "free", "score": person}))
    for step in range(2, steps):
        roll = rng.random()
        if roll < 0.55:
            out.append(msg("track", step, userId=user_id, event="Viewed Item",
                           properties={"sku": f"sku-{rng.randrange(50)}", "price": rng.randrange(100, 9999) / 100,
                                       "qty": rng.randrange(1, 5)}))
        elif roll < 0.70:
            out.append(msg("page", step, userId=user_id, name="Product",
                           properties={"path": f"/p/{rng.randrange(50)}"}))
        elif roll < 0.80:
            out.append(msg("screen", step, userId=user_id, name="Cart", properties={"tab": "items"}))
        elif roll < 0.87:
            price = rng.randrange(100, 5000) / 100
            out.append(msg("track", step, userId=user_id, event="Order Completed",
                           properties={"total": price, "campaignId": 7, "templateId": 8, "items": [
                               {"id": f"sku-{rng.randrange(50)}", "name": "Thing", "price": price,
                                "quantity": 1}]}))
        elif roll < 0.95:
            out.append(msg("identify", step, userId=user_id,
                           traits={"plan": rng.choice(["free", "pro", "team"]), "score": step}))
        elif roll < 0.98:
            # No items: the mapping core refuses it (purchase_incomplete) -> a dead letter.
            out.append(msg("track", step, userId=user_id, event="Order Completed",
                           properties={"total": 5, "campaignId": 7, "templateId": 8}))
        else:
            out.append(msg("group", step, userId=user_id, groupId="acme", traits={"name": "Acme"}))
    return out, email


def generate(people: int, events: int, seed: int, run: str | None = None) -> Workload:
    """About ``events`` lines over ``people`` people (each at least 3 lines), deterministic in ``seed``."""
    rng = random.Random(seed)
    run = run or f"r{seed}"
    per_person = max(3, events // people)
    queues: list[list[dict[str, Any]]] = []
    emails: list[str] = []
    for person in range(people):
        lines, email = _person_lines(run, person, per_person, rng)
        queues.append(lines)
        emails.append(email)
    # A random interleaving that keeps each person's own order.
    positions = [0] * people
    live = list(range(people))
    merged: list[str] = []
    while live:
        k = rng.randrange(len(live))
        person = live[k]
        merged.append(json.dumps(queues[person][positions[person]]))
        positions[person] += 1
        if positions[person] == len(queues[person]):
            live[k] = live[-1]
            live.pop()
    return Workload(merged, tuple(emails))


@dataclass(slots=True)
class Expected:
    """What the pipeline must produce for a list of lines."""

    produced: int = 0
    """Lines that are events (``produce`` sends them)."""
    project: Project = field(default_factory=lambda: Project(ProjectType.EMAIL, clock=time.monotonic))
    dead: Counter[str] = field(default_factory=Counter)
    """Dead letters by reason, from the mapping core."""
    dead_ids: dict[str, str] = field(default_factory=dict)
    """message id -> reason of every expected dead letter."""
    quiet: Counter[str] = field(default_factory=Counter)
    """Quiet drops (no dead letter, only ``fpi_events_dropped_total``) by reason, from the mapping core."""
    ids: set[str] = field(default_factory=set)
    """Message ids of every event of the lines."""


_CALLS: Mapping[str, Callable[[Project, Any], tuple[int, Any]]] = {
    "/api/users/update": lambda p, b: p.users_update(b),
    "/api/events/track": lambda p, b: p.events_track(b),
    "/api/commerce/trackPurchase": lambda p, b: p.track_purchase(b),
    "/api/commerce/updateCart": lambda p, b: p.update_cart(b),
    "/api/users/updateEmail": lambda p, b: p.update_email(b),
}


def expect(lines: list[str], config: MappingConfig | None = None, hold: HoldRule | None = None) -> Expected:
    """Explain ``lines`` in order (holding anonymous events with ``hold``) and apply every request to a fresh
    emulated project. A held event that is released has a record of its own later (``produced`` counts it
    again); one still held at the end has no drop record (the worker's expiry sweep is not modelled)."""
    out = Expected()
    for record in explain_lines(lines, config or MappingConfig(), hold=hold):
        if record["decision"] == "error":
            continue
        out.produced += 1
        if record["message_id"]:
            out.ids.add(record["message_id"])
        if record["decision"] == "drop" and record["reason"] in QUIET:
            out.quiet[record["reason"]] += 1
        elif record["decision"] == "drop":
            out.dead[record["reason"]] += 1
            out.dead_ids[record["message_id"]] = record["reason"]
        for request in record["requests"]:
            status, body = _CALLS[request["path"]](out.project, request["body"])
            assert status == 200, f"the expected state itself rejected {request['path']}: {body}"
    return out


def planned(events: int, seed: int) -> tuple[Workload, Expected]:
    """A scenario's workload, about ``events`` lines over ``events // 15`` people, and what Iterable must hold
    after it."""
    workload = generate(events // 15, events, seed=seed)
    return workload, expect(workload.lines)

def iterable_state(project: Project) -> dict[str, Any]:
    """The comparable part of a project: users, events and purchases (no timestamps of arrival)."""
    users = {
        (u.email, u.user_id): dict(u.data_fields) for u in project.users
    }
    return {"users": users, "events": dict(project.events), "purchases": dict(project.purchases)}
