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
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from streams.model import DropReason, Event, EventType

__all__ = ["Link", "Resolution", "person_key_of", "resolve", "routing_key"]


@dataclass(frozen=True, slots=True)
class Link:
    """What the ``aliases`` table holds for a device: its person, and since when (event time)."""

    person_key: str
    since: datetime | None = None
    """Event time of the earliest event that linked them; ``None`` when unknown (links stored by
    older versions), which attributes every anonymous event of the device."""


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


def routing_key(event: Event) -> str | None:
    """The key to repartition the "resolve" stage by: the anonymous id, else the person key."""
    return event.anonymous_id or person_key_of(event)


def resolve(event: Event, link: Link | None) -> Resolution:
    """Resolve ``event`` to a person key, given ``aliases[event.anonymous_id]`` (or ``None``).

    * An event naming its person (user id, else email) resolves to it, and links its anonymous id
      when the stored link names another person, or the same person since a later time.
    * An alias event resolves to the person its device is linked to, else to its ``previousId``;
      it never re-links the device (the identity change happens in "apply").
    * An event with only an anonymous id resolves through ``link``, unless it happened before the
      link did: then, as when there is no link, it is dropped with ``DropReason.ANONYMOUS``.
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
    if link is not None and (link.since is None or event.timestamp >= link.since):
        return Resolution(link.person_key)
    return Resolution(None, drop=DropReason.ANONYMOUS)
