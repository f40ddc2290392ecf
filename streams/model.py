"""Plain, frozen data shared by every layer: the normalized event, identity state, Iterable
requests, decisions and dead letters. No Faust, Kafka or HTTP here (the pure core's floor).

Datetimes are timezone-aware UTC everywhere.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any

__all__ = [
    "QUIET_DROPS",
    "DeadLetter",
    "Decision",
    "DropReason",
    "Endpoint",
    "Event",
    "EventType",
    "Identity",
    "IterableRequest",
    "JSONValue",
    "PageContext",
    "ProjectType",
]

JSONValue = Any
"""A value that came from or goes to JSON: None, bool, int, float, str, list or dict of these."""


class EventType(StrEnum):
    IDENTIFY = "identify"
    TRACK = "track"
    PAGE = "page"
    SCREEN = "screen"
    ALIAS = "alias"
    GROUP = "group"


class ProjectType(StrEnum):
    """How the Iterable project identifies users (iterable-api.md §5.1)."""

    EMAIL = "email"
    USER_ID = "userId"
    HYBRID = "hybrid"


class Endpoint(StrEnum):
    """Iterable endpoints the mapping core targets; the sender may batch them into bulk calls."""

    USERS_UPDATE = "/api/users/update"
    USERS_BULK_UPDATE = "/api/users/bulkUpdate"
    USERS_UPDATE_EMAIL = "/api/users/updateEmail"
    EVENTS_TRACK = "/api/events/track"
    EVENTS_TRACK_BULK = "/api/events/trackBulk"
    COMMERCE_TRACK_PURCHASE = "/api/commerce/trackPurchase"
    COMMERCE_UPDATE_CART = "/api/commerce/updateCart"
    USERS_REGISTER_DEVICE_TOKEN = "/api/users/registerDeviceToken"
    SUBSCRIPTION_SUBSCRIBE = "PATCH /api/subscriptions/{subscriptionGroup}/{subscriptionGroupId}/user"
    """Not a path: ``PATCH .../user/{userEmail}`` or ``.../byUserId/{userId}``, the request's body names the
    group, id and user (``streams.mapping.subscriptions.route``); the value names it in metrics and logs."""
    SUBSCRIPTION_UNSUBSCRIBE = "DELETE /api/subscriptions/{subscriptionGroup}/{subscriptionGroupId}/user"
    """``DELETE`` on the same paths (as ``SUBSCRIPTION_SUBSCRIBE``)."""


class DropReason(StrEnum):
    """Why an event is not sent; expected outcomes, not errors."""

    ANONYMOUS = "anonymous"
    MISSING_IDENTIFIER = "missing_identifier"
    INVALID_EMAIL = "invalid_email"
    PURCHASE_INCOMPLETE = "purchase_incomplete"
    FILTERED = "filtered_by_transformation"
    UNSUPPORTED_TYPE = "unsupported_type"
    STALE_IDENTIFY = "stale_identify"
    UNCHANGED = "unchanged"
    """An alias that names the identifier the person already has: nothing to tell Iterable."""
    HOLD_OVERFLOW = "hold_overflow"
    """An anonymous event that could not be held: its device, or the worker, holds the most allowed
    (``FPI_HOLD_ANONYMOUS_PER_DEVICE``, ``FPI_HOLD_ANONYMOUS_TOTAL``)."""
    FORGOTTEN = "forgotten"
    """An event of a person forgotten by ``freshpaint-iterable forget`` (until ``unforget``): counted, never
    dead-lettered, since a dead letter would keep the event's personal data."""
    NO_PROJECT = "no_project"
    """With a routing file (``FPI_PROJECTS_FILE``): the event's token (or routing property) names no project and
    no default project is configured (dead-lettered, re-drivable once a project takes it)."""
    CART_FULL = "cart_full"
    """A cart event that would leave the person's cart with more items than ``FPI_CART_MAX_ITEMS``: the cart
    stays as it was (dead-lettered, so the event can be re-driven once the bound is raised)."""
    CART_INCOMPLETE = "cart_incomplete"
    """A cart event whose item(s) lack what Iterable requires of a ``CommerceItem`` (id, name, price, an
    integer quantity): the cart stays as it was."""
    SUBSCRIPTION_INVALID = "subscription_invalid"
    """An identify whose subscription trait (``FPI_UNSUBSCRIBED_CHANNELS_TRAIT`` and the others) holds something
    other than ids (or a boolean, for an opt-out trait): nothing of it is sent (dead-lettered, re-drivable)."""


QUIET_DROPS = frozenset({DropReason.ANONYMOUS, DropReason.FILTERED, DropReason.STALE_IDENTIFY,
                         DropReason.UNCHANGED, DropReason.HOLD_OVERFLOW, DropReason.FORGOTTEN})
"""Drops that are expected, configured or no-op outcomes: counted in metrics, not dead-lettered."""


@dataclass(frozen=True, slots=True)
class PageContext:
    url: str | None = None
    path: str | None = None
    title: str | None = None
    referrer: str | None = None
    search: str | None = None


@dataclass(frozen=True, slots=True)
class Event:
    """One Freshpaint event, whichever dialect it arrived in.

    ``properties``, ``traits`` and ``context`` keep the arbitrary JSON the user sent; keys are
    not renamed here (field hygiene happens at mapping time).
    """

    type: EventType
    message_id: str
    timestamp: datetime
    anonymous_id: str | None = None
    user_id: str | None = None
    email: str | None = None
    event_name: str | None = None
    properties: Mapping[str, JSONValue] = field(default_factory=dict)
    traits: Mapping[str, JSONValue] = field(default_factory=dict)
    context: Mapping[str, JSONValue] = field(default_factory=dict)
    page: PageContext | None = None
    previous_id: str | None = None
    """For alias: the identifier being replaced (Segment's previousId, raw $create_alias)."""


@dataclass(frozen=True, slots=True)
class Identity:
    """What we know of one identified person (the ``identities`` table's value)."""

    person_key: str
    user_id: str | None = None
    email: str | None = None
    first_identified_at: datetime | None = None
    last_identified_at: datetime | None = None
    """Timestamp of the newest identify applied; older replayed identifies do not overwrite."""


@dataclass(frozen=True, slots=True)
class IterableRequest:
    """One Iterable call for one source event; the sender may fold several into a bulk call."""

    endpoint: Endpoint
    body: Mapping[str, JSONValue]
    person_key: str
    source_event_id: str
    attempt: int = 0
    first_seen_at: datetime | None = None
    project: str = ""
    """The Iterable project it goes to (a name in the routing file, ``FPI_PROJECTS_FILE``); ``""`` is the single
    project of ``FPI_ITERABLE_API_KEY`` (no routing file)."""


@dataclass(frozen=True, slots=True)
class Decision:
    """What one event becomes: requests to send, or a drop with a reason."""

    requests: tuple[IterableRequest, ...] = ()
    drop_reason: DropReason | None = None
    detail: str | None = None

    @property
    def sends(self) -> bool:
        return self.drop_reason is None

    @classmethod
    def send(cls, *requests: IterableRequest) -> Decision:
        return cls(requests=tuple(requests))

    @classmethod
    def drop(cls, reason: DropReason, detail: str | None = None) -> Decision:
        return cls(drop_reason=reason, detail=detail)


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """A record that will not be sent, with why, and where it came from so it can be re-driven.

    Exactly one of ``original_bytes`` (failed before or at decoding) and ``request`` (failed at
    Iterable) or ``event`` (failed at mapping) is normally set.
    """

    reason: str
    """A stable code: a ``streams.errors.Reason`` or ``DropReason`` value."""
    detail: str
    """A human-readable explanation; never contains the API key."""
    failed_at: datetime
    source_topic: str | None = None
    source_partition: int | None = None
    source_offset: int | None = None
    original_bytes: bytes | None = None
    event: Event | None = None
    request: IterableRequest | None = None
    iterable_status: int | None = None
    iterable_code: str | None = None
    iterable_response: str | None = None
    """Iterable's answer, as JSON text."""
