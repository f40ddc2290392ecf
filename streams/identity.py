"""Identity rules of the "resolve" stage: which person an event belongs to.

The stage is keyed by device / anonymous id and owns the ``aliases`` table (anonymous id -> person
key). The person key is the user id, else the email (user ids are stable across email changes,
and Iterable's userId and hybrid projects look users up by it, iterable-api.md §5). Events of
devices that were never linked to a person are dropped with ``DropReason.ANONYMOUS``: Iterable has
no anonymous users (seed "Events"; freshpaint-events.md §5; peers.md §3).

Linking (freshpaint-events.md §3.1): any event that carries both an anonymous id and a person
key (an identify, or a later event with ``$user_id``) records ``anonymous id -> person key``, with
the event time of the earliest event that showed the link; later events of that device with only
the anonymous id resolve to that person. Whether the person was ever *identified* (an identify
seen) is checked in the "apply" stage, which holds the identities.

"Anonymous" is decided by event time, not by processing order: an anonymous-only event that
happened before its device was linked is dropped even when it is processed after the link (a
redelivery after a crash or rebalance, or a late arrival), so the outcome does not depend on when
the worker happens to see it.

Holding (opt-in, ``FPI_HOLD_ANONYMOUS_SECONDS``, a ``HoldRule``): an anonymous event that happened at
most ``window`` before its device's link (``since - window <= time``) belongs to the linked person
too, whenever it is processed. Before the link is known such an event is *held* (kept by the caller,
see ``steps.hold_step``) and ``settle`` sorts the held events once the device is linked: those within
the window are released to the person in event-time order, the older ones are dropped as anonymous.
``expired`` finds held events no link can claim any more, given the latest event time seen (the
watermark): they happened more than ``window`` before it. Both rules read event times only.

Forgetting (``freshpaint-iterable forget``): ``forgotten_key`` names the marker that says a person key is
forgotten. It is a SHA-256 of the key, so the marker does not keep the email or user id in plain text
(unsalted: whoever already knows an address can test it against the marker, which is what lets the worker
recognise the person's later events; it is pseudonymous, not anonymous). ``person_devices_key`` names, the same
way, the resolve stage's index of the devices it linked to a person on one partition, which ``forget`` reads to
delete the person's links.
"""


from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Generic, TypeVar

from streams.model import DropReason, Event, EventType

__all__ = ["Held", "HoldRule", "Link", "Resolution", "expired", "forgotten_key", "person_devices_key",
           "person_key_of", "resolve", "routing_key", "settle"]

P = TypeVar("P")


@dataclass(frozen=True, slots=True)
class Link:
    """What the ``aliases`` table holds for a device: its person, and since when (event time)."""

    person_key: str
    since: datetime | None = None
    """Event time of the earliest event that linked them; ``None`` when unknown (links stored by
    older versions), which attributes every anonymous event of the device."""


@dataclass(frozen=True, slots=True)
class HoldRule:
    """How anonymous events wait for their device's link (``FPI_HOLD_ANONYMOUS_*``)."""

    window: timedelta
    """How long before its device's link (event time) an anonymous event still belongs to the person."""
    per_device: int
    """Most events held for one device; more are dropped ``hold_overflow``."""
    total: int
    """Most events held in all (per worker); more are dropped ``hold_overflow``."""


@dataclass(frozen=True, slots=True)
class Held(Generic[P]):
    """One held event: its event time and message id (the rules read these), and what the caller keeps
    to send it later (the worker: the internal event bytes and source coordinates; ``explain``: the event)."""

    time: datetime
    message_id: str
    payload: P


@dataclass(frozen=True, slots=True)
class Resolution:
    """The outcome of ``resolve`` for one event."""

    person_key: str | None
    """The key of the "apply" stage; ``None`` when the event is dropped."""
    new_link: Link | None = None
    """Store this in ``aliases[event.anonymous_id]`` (set only when it changes)."""
    drop: DropReason | None = None


def person_key_of(event: Event) -> str | None:
    """The person key an event names itself: its user id, else its email, else ``None``.

    For alias events the *previous* identifier names the person (the new one is the change).
    """
    if event.type is EventType.ALIAS:
        return event.previous_id if event.previous_id != event.anonymous_id else None
    return event.user_id or event.email


def forgotten_key(person_key: str) -> str:
    """The key of the marker that says ``person_key`` is forgotten: ``forgotten:`` and the SHA-256 of the
    key in hex (no email in it; see the module docstring)."""
    return "forgotten:" + hashlib.sha256(person_key.encode()).hexdigest()


def person_devices_key(person_key: str, partition: int) -> str:
    """The key of the index of the devices linked to ``person_key`` on by-device ``partition``: ``devices-of:``,
    the SHA-256 of the key in hex, ``:`` and the partition (one entry per partition: each partition's stage writes
    its own)."""
    return f"devices-of:{hashlib.sha256(person_key.encode()).hexdigest()}:{partition}"


def routing_key(event: Event) -> str | None:
    """The key to repartition the "resolve" stage by: the anonymous id, else the person key."""
    return event.anonymous_id or person_key_of(event)


def resolve(event: Event, link: Link | None, window: timedelta | None = None) -> Resolution:
    """Resolve ``event`` to a person key, given ``aliases[event.anonymous_id]`` (or ``None``).

    * An event naming its person (user id, else email) resolves to it, and links its anonymous id
      when the stored link names another person, or the same person since a later time.
    * An alias event resolves to the person its device is linked to, else to its ``previousId``;
      it never re-links the device (the identity change happens in "apply").
    * An event with only an anonymous id resolves through ``link``, unless it happened before the
      link did (more than ``window`` before, when holding): then, as when there is no link, it is
      dropped with ``DropReason.ANONYMOUS``.
    """
    if event.type is EventType.ALIAS:
        key = link.person_key if link is not None else person_key_of(event)
        return Resolution(key) if key else Resolution(None, drop=DropReason.ANONYMOUS)
    key = person_key_of(event)
    if key is not None:
        if event.anonymous_id is None:
            return Resolution(key)
        if link is None or link.person_key != key:
            return Resolution(key, new_link=Link(key, event.timestamp))
        if link.since is not None and event.timestamp < link.since:
            return Resolution(key, new_link=Link(key, event.timestamp))
        return Resolution(key)
    if link is not None and (link.since is None or event.timestamp >= link.since - (window or timedelta(0))):
        return Resolution(link.person_key)
    return Resolution(None, drop=DropReason.ANONYMOUS)


def settle(held: Sequence[Held[P]], link: Link, window: timedelta) -> tuple[list[Held[P]], list[Held[P]]]:
    """Split a device's held events once it is linked: ``(released, dropped)``.

    Released are those that happened at most ``window`` before the link (or any time after it, held
    because they were seen before the link was), in event-time order (ties in the order held); they
    belong to ``link.person_key`` exactly as ``resolve`` would attribute them. Dropped are the older
    ones: anonymous.
    """
    start = link.since - window if link.since is not None else None
    released = sorted((h for h in held if start is None or h.time >= start), key=lambda h: h.time)
    dropped = [h for h in held if start is not None and h.time < start]
    return released, dropped


def expired(held: Sequence[Held[P]], watermark: datetime, window: timedelta) -> tuple[list[Held[P]], list[Held[P]]]:
    """Split held events by the latest event time seen: ``(kept, expired)``.

    An event that happened more than ``window`` before ``watermark`` could only be claimed by a link
    older than the watermark, which would arrive out of order: it is expired (anonymous).
    """
    kept = [h for h in held if h.time + window >= watermark]
    gone = [h for h in held if h.time + window < watermark]
    return kept, gone
