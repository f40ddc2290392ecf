"""One event's step through the "resolve" and "apply" stages, over the stages' tables.

The worker's stages (``streams.stages``) and the event tester (``streams.explain``) both run these
two functions, so what ``explain`` predicts is what the agents do: the worker passes typed wrappers
of its faust tables, ``explain`` passes plain dicts. Pure: no Faust, Kafka or HTTP.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Protocol, TypeVar

from streams.identity import Link, resolve, routing_key
from streams.mapping import MappingConfig, apply_event
from streams.model import Decision, DropReason, Event, Identity

__all__ = ["Resolved", "Table", "apply_step", "resolve_step"]

V = TypeVar("V")


class Table(Protocol[V]):
    """What a step needs of a table keyed by ``str``: a ``dict`` is one."""

    def get(self, key: str, /) -> V | None: ...

    def __setitem__(self, key: str, value: V, /) -> None: ...


@dataclass(frozen=True, slots=True)
class Resolved:
    """The outcome of ``resolve_step``: the person the event belongs to, or why it is dropped."""

    person_key: str | None
    drop: DropReason | None = None
    detail: str | None = None


def resolve_step(event: Event, aliases: Table[Link]) -> Resolved:
    """Find the event's person through ``aliases`` (device -> person), storing a new link there."""
    device = event.anonymous_id
    link = aliases.get(device) if device else None
    resolution = resolve(event, link)
    if resolution.new_link is not None and device:
        aliases[device] = resolution.new_link
    if resolution.person_key is not None:
        return Resolved(resolution.person_key)
    detail = (f"happened before device {routing_key(event)!r} was linked to a person" if link is not None
              else f"no person known for device {routing_key(event)!r}")
    return Resolved(None, resolution.drop or DropReason.ANONYMOUS, detail)


def apply_step(event: Event, person_key: str, identities: Table[Identity], config: MappingConfig,
               now: datetime) -> Decision:
    """Decide the event's Iterable requests for its person, storing the person's changed identity.

    Raises what ``apply_event`` raises for an event that cannot be mapped (a ``StreamsError``).
    """
    applied = apply_event(event, person_key, identities.get(person_key), config, now)
    if applied.identity is not None:
        identities[person_key] = applied.identity
    return applied.decision
