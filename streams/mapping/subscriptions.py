"""Subscription preferences: which traits change Iterable's subscription state, and how (issue 21 part 3).

Traits chosen in settings are *subscription state*, not profile fields: they never travel in ``dataFields``
(Iterable manages ``emailListIds``, ``unsubscribedChannelIds`` and ``unsubscribedMessageTypeIds`` itself,
iterable-api.md §6.1), they become calls to Iterable's per-group subscription endpoints:

* ``PATCH /api/subscriptions/{subscriptionGroup}/{subscriptionGroupId}/user/{userEmail}`` subscribes the user,
  ``DELETE`` on the same path unsubscribes them; ``.../byUserId/{userId}`` when the person is addressed by
  userId. ``subscriptionGroup`` is ``emailList``, ``messageChannel`` or ``messageType`` (OpenAPI
  ``subscribeSingleUser`` / ``unsubscribeSingleUser``). No body.

Each such call changes one group of one person and nothing else. ``users/updateSubscriptions`` is not used:
it *overwrites* every array it is given (§2.8), so a boolean such as ``email_opt_out`` would have to be sent
with the person's whole unsubscribed-channel list, which the worker does not know (a user may also unsubscribe
in an Iterable email, which the worker never sees).

The traits (``SubscriptionTraits``; empty names are off):

* ``unsubscribed_channels`` (``FPI_UNSUBSCRIBED_CHANNELS_TRAIT``): a list of channel ids the person is
  unsubscribed from. Each listed channel is unsubscribed; a channel this worker unsubscribed before and that is
  no longer listed is subscribed again.
* ``unsubscribed_message_types`` (``FPI_UNSUBSCRIBED_MESSAGE_TYPES_TRAIT``): the same for message types.
* ``email_lists`` (``FPI_EMAIL_LISTS_TRAIT``): a list of email list ids the person is on. Each listed list is
  subscribed; a list this worker subscribed the person to before and no longer listed is unsubscribed. Lists
  the worker never saw are left alone (``updateSubscriptions`` would take the person off them).
* ``opt_outs`` (``FPI_OPT_OUT_TRAITS``): boolean trait -> channel id; ``true`` unsubscribes the channel,
  ``false`` subscribes it. Applied after ``unsubscribed_channels``, so it wins for its channel.

A trait absent from the identify, or ``null``, changes nothing. Ids are integers (a string of digits is taken as
one); anything else makes the identify a ``subscription_invalid`` drop.

State (``Sent``): per person, the state last sent per group and id; only a change is sent, so a replayed
identify, or the same trait on every identify, costs no call. The worker writes it (table ``subscriptions``)
only once the requests are in Kafka.
"""

from __future__ import annotations

import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = ["GROUPS", "MAX_IDS", "Change", "Sent", "SubscriptionTraits", "changes", "route", "trait_names"]

GROUPS = ("emailList", "messageChannel", "messageType")
"""Iterable's subscription groups (the path's ``subscriptionGroup``)."""

MAX_IDS = 1000
"""Most ids one list trait may hold; more is ``subscription_invalid`` (a trait that size is not preferences)."""

_SUBSCRIBE = "PATCH"
_UNSUBSCRIBE = "DELETE"


@dataclass(frozen=True, slots=True)
class SubscriptionTraits:
    """The traits that carry subscription state (module doc); an empty name is not read."""

    unsubscribed_channels: str = ""
    unsubscribed_message_types: str = ""
    email_lists: str = ""
    opt_outs: Mapping[str, int] = field(default_factory=dict)

    @property
    def any(self) -> bool:
        return bool(self.unsubscribed_channels or self.unsubscribed_message_types or self.email_lists
                    or self.opt_outs)


def trait_names(traits: SubscriptionTraits) -> tuple[str, ...]:
    """The trait names kept out of ``dataFields``."""
    names = (traits.unsubscribed_channels, traits.unsubscribed_message_types, traits.email_lists, *traits.opt_outs)
    return tuple(name for name in names if name)


@dataclass(frozen=True, slots=True)
class Change:
    """One subscription call: subscribe (or unsubscribe) the person to (from) ``group`` ``group_id``."""

    group: str
    group_id: int
    subscribe: bool


@dataclass(frozen=True, slots=True)
class Sent:
    """What was sent for one person: ``"group:id"`` -> subscribed."""

    state: Mapping[str, bool] = field(default_factory=dict)

    def subscribed(self, group: str, group_id: int) -> bool | None:
        return self.state.get(f"{group}:{group_id}")

    def after(self, done: tuple[Change, ...]) -> Sent:
        return Sent({**self.state, **{f"{c.group}:{c.group_id}": c.subscribe for c in done}})


def _ids(name: str, value: Any) -> list[int]:
    if not isinstance(value, list):
        raise ValueError(f"trait {name!r} must be a list of ids, not {type(value).__name__}")
    if len(value) > MAX_IDS:
        raise ValueError(f"trait {name!r} holds {len(value)} ids, more than {MAX_IDS}")
    return [_id(name, item) for item in value]


def _id(name: str, value: Any) -> int:
    if isinstance(value, int) and not isinstance(value, bool) and value > 0:
        return value
    if isinstance(value, str) and value.isascii() and value.isdigit() and int(value) > 0:
        return int(value)
    raise ValueError(f"trait {name!r} holds {value!r}, not a positive integer id")


def changes(traits: Mapping[str, Any], config: SubscriptionTraits, sent: Sent) -> tuple[Change, ...]:
    """The calls that bring Iterable from ``sent`` to what ``traits`` say (module doc), in a stable order.

    Raises ``ValueError`` naming the trait when one holds something other than ids (or a boolean)."""
    wanted: dict[tuple[str, int], bool] = {}

    def listed(name: str, group: str, listed_means: bool) -> None:
        value = traits.get(name) if name else None
        if value is None:
            return
        ids = set(_ids(name, value))
        for key, subscribed in sent.state.items():
            sent_group, _, sent_id = key.partition(":")
            if sent_group == group and subscribed is listed_means and int(sent_id) not in ids:
                wanted[(group, int(sent_id))] = not listed_means
        for group_id in sorted(ids):
            wanted[(group, group_id)] = listed_means

    listed(config.unsubscribed_channels, "messageChannel", False)
    for name, channel in config.opt_outs.items():
        value = traits.get(name)
        if value is None:
            continue
        if not isinstance(value, bool):
            raise ValueError(f"trait {name!r} must be true or false, not {value!r}")
        wanted[("messageChannel", channel)] = not value
    listed(config.unsubscribed_message_types, "messageType", False)
    listed(config.email_lists, "emailList", True)
    return tuple(Change(group, group_id, subscribed) for (group, group_id), subscribed in sorted(wanted.items())
                 if sent.subscribed(group, group_id) is not subscribed)


def route(endpoint: str, body: Mapping[str, Any]) -> tuple[str, str] | None:
    """The HTTP method and path of a subscription request (``body``: ``subscriptionGroup``,
    ``subscriptionGroupId`` and ``email`` or ``userId``), or ``None`` for any other endpoint (a POST of its body).

    The identifier is percent-encoded whole (``/`` too): ``user/a%2Bb%40x.com``."""
    if endpoint.startswith(_SUBSCRIBE + " "):
        method = _SUBSCRIBE
    elif endpoint.startswith(_UNSUBSCRIBE + " "):
        method = _UNSUBSCRIBE
    else:
        return None
    base = f"/api/subscriptions/{body['subscriptionGroup']}/{body['subscriptionGroupId']}"
    if "email" in body:
        return method, f"{base}/user/{urllib.parse.quote(str(body['email']), safe='')}"
    return method, f"{base}/byUserId/{urllib.parse.quote(str(body['userId']), safe='')}"
