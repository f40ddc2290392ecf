"""One event's step through the "resolve" and "apply" stages, over the stages' tables.

The worker's stages (``streams.stages``) and the event tester (``streams.explain``) both run these
functions (``resolve_step``, ``hold_step`` when anonymous events are held, ``apply_step``), so what
``explain`` predicts is what the agents do: the worker passes typed wrappers of its faust tables,
``explain`` passes plain dicts. Pure: no Faust, Kafka or HTTP.
"""

from __future__ import annotations

from collections.abc import Container
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Generic, Protocol, TypeVar

from streams.identity import Held, HoldRule, Link, expired, forgotten_key, resolve, routing_key, settle
from streams.mapping import Cart, MappingConfig, Registered, apply_event
from streams.mapping.subscriptions import Sent
from streams.model import Decision, DropReason, Event, Identity

__all__ = ["HoldOutcome", "Resolved", "Table", "apply_step", "hold_step", "resolve_step"]

V = TypeVar("V")
P = TypeVar("P")


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


def resolve_step(event: Event, aliases: Table[Link], window: timedelta | None = None) -> Resolved:
    """Find the event's person through ``aliases`` (device -> person), storing a new link there.

    ``window``: when anonymous events are held, how long before its device's link an anonymous
    event still belongs to the person (``identity.resolve``).
    """
    device = event.anonymous_id
    link = aliases.get(device) if device else None
    resolution = resolve(event, link, window)
    if resolution.new_link is not None and device:
        aliases[device] = resolution.new_link
    if resolution.person_key is not None:
        return Resolved(resolution.person_key)
    detail = (f"happened before device {routing_key(event)!r} was linked to a person" if link is not None
              else f"no person known for device {routing_key(event)!r}")
    return Resolved(None, resolution.drop or DropReason.ANONYMOUS, detail)


@dataclass(frozen=True, slots=True)
class HoldOutcome(Generic[P]):
    """What ``hold_step`` did with an event and its device's held events."""

    held: bool = False
    """The event waits in the held table (``stored``: put there now; else it already was: a redelivery)."""
    stored: bool = False
    overflow: bool = False
    """The event is anonymous and could not be held: drop it ``hold_overflow``."""
    released: tuple[Held[P], ...] = ()
    """Held events of the device that now belong to its person: hand them on after the event, in this order."""
    dropped: tuple[Held[P], ...] = ()
    """Held events that no link will claim (they happened more than the window before the link, or before
    the device's latest event): anonymous."""


def hold_step(event: Event, resolved: Resolved, payload: P, aliases: Table[Link], held: Table[list[Held[P]]],
              rule: HoldRule, holding: int) -> HoldOutcome[P]:
    """Run after ``resolve_step`` (given its ``resolved``) when anonymous events are held.

    A device linked by now has its held events settled (``identity.settle``) and removed from ``held``
    (an empty list: the caller deletes the key). An anonymous event of a device not linked yet is held
    with ``payload``, unless it is there already (redelivered after a crash: same message id), its
    device holds ``rule.per_device`` events or ``holding`` (events held in all) reached ``rule.total``;
    the device's held events older than this event by more than the window expire first.
    """
    device = event.anonymous_id
    if device is None:
        return HoldOutcome()
    entries = held.get(device) or []
    link = aliases.get(device)
    if link is not None:
        if not entries:
            return HoldOutcome()
        released, dropped = settle(entries, link, rule.window)
        held[device] = []
        return HoldOutcome(released=tuple(released), dropped=tuple(dropped))
    if resolved.person_key is not None:
        return HoldOutcome()
    kept, gone = expired(entries, event.timestamp, rule.window)
    if gone:
        held[device] = kept
    if any(h.message_id == event.message_id for h in kept):
        return HoldOutcome(held=True, dropped=tuple(gone))
    if len(kept) >= rule.per_device or holding - len(gone) >= rule.total:
        return HoldOutcome(overflow=True, dropped=tuple(gone))
    held[device] = [*kept, Held(event.timestamp, event.message_id, payload)]
    return HoldOutcome(held=True, stored=True, dropped=tuple(gone))


def apply_step(event: Event, person_key: str, identities: Table[Identity], config: MappingConfig,
               now: datetime, forgotten: Container[str] = frozenset(),
               carts: Table[Cart] | None = None, devices: Table[Registered] | None = None,
               subscriptions: Table[Sent] | None = None) -> Decision:
    """Decide the event's Iterable requests for its person, storing the person's changed identity and,
    with ``carts`` (``config.carts``), their changed cart, with ``devices`` (``config.push_app_name``) the push
    devices registered now, with ``subscriptions`` (a subscription trait set) the subscription state sent now.

    ``forgotten`` holds the ``identity.forgotten_key`` of each forgotten person key: an event whose person
    key, user id or email is one of them is dropped ``forgotten`` and changes nothing (an identify cannot
    bring a forgotten person back; ``unforget`` does).

    Raises what ``apply_event`` raises for an event that cannot be mapped (a ``StreamsError``).
    """
    if forgotten and any(key is not None and forgotten_key(key) in forgotten
                         for key in (person_key, event.user_id, event.email)):
        return Decision.drop(DropReason.FORGOTTEN, "the person was forgotten (freshpaint-iterable forget)")
    cart = carts.get(person_key) if carts is not None else None
    registered = devices.get(person_key) if devices is not None else None
    sent = subscriptions.get(person_key) if subscriptions is not None else None
    applied = apply_event(event, person_key, identities.get(person_key), config, now, cart, registered, sent)
    if applied.identity is not None:
        identities[person_key] = applied.identity
    if applied.cart is not None and carts is not None:
        carts[person_key] = applied.cart
    if applied.devices is not None and devices is not None:
        devices[person_key] = applied.devices
    if applied.subscriptions is not None and subscriptions is not None:
        subscriptions[person_key] = applied.subscriptions
    return applied.decision
