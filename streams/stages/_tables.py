"""The stages' tables as typed mappings, with their byte formats inside.

faust keeps the tables as bytes -> bytes (the raw codec reaches the stores and changelog recovery,
where a faust Schema does not); these wrappers are the only code that knows the formats.
"""

from __future__ import annotations

import base64
from collections.abc import Callable, Iterator, MutableMapping
from dataclasses import dataclass
from datetime import datetime
from typing import Generic, TypeVar

import orjson

from streams.codecs import Source
from streams.identity import Held, Link, person_devices_key
from streams.mapping import Cart, Registered
from streams.mapping.subscriptions import Sent
from streams.model import Identity

__all__ = ["AliasTable", "CartTable", "DeviceTable", "HeldEntry", "HeldRecord", "HeldTable", "IdentityTable",
           "SubscriptionTable", "cart_from_bytes", "cart_to_bytes", "held_from_bytes", "held_to_bytes",
           "identity_from_bytes", "identity_to_bytes", "link_from_bytes", "link_to_bytes", "registered_from_bytes",
           "registered_to_bytes", "sent_from_bytes", "sent_to_bytes"]

_LINK_VERSION = b"\x01"
_HELD_VERSION = b"\x01"
_FORGOTTEN = b"\x01"
V = TypeVar("V")
_CART_VERSION = b"\x01"
_DEVICES_VERSION = b"\x01"

HeldRecord = tuple[bytes, Source]
"""What the worker keeps of a held event: its internal event bytes and its source coordinates."""


def _time(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


def identity_to_bytes(identity: Identity) -> bytes:
    """The ``identities`` table's value: compact JSON, stable field names.

    Copied to its own size: orjson's bytes keep the 4 KB buffer they were written into, and
    the memory:// table holds every value it is given (1,000,000 identities: 4 GB instead of 0.2).
    """
    return bytes(memoryview(orjson.dumps({
        "person_key": identity.person_key,
        "user_id": identity.user_id,
        "email": identity.email,
        "first_identified_at": _time(identity.first_identified_at),
        "last_identified_at": _time(identity.last_identified_at),
    })))


def identity_from_bytes(data: bytes) -> Identity:
    fields = orjson.loads(data)
    first = fields.get("first_identified_at")
    last = fields.get("last_identified_at")
    return Identity(
        person_key=fields["person_key"],
        user_id=fields.get("user_id"),
        email=fields.get("email"),
        first_identified_at=datetime.fromisoformat(first) if first else None,
        last_identified_at=datetime.fromisoformat(last) if last else None,
    )


def link_to_bytes(link: Link) -> bytes:
    """The ``aliases`` table's value: a version byte, then ``[person key, since]`` as JSON."""
    since = link.since.isoformat() if link.since is not None else None
    return _LINK_VERSION + orjson.dumps([link.person_key, since])


def link_from_bytes(data: bytes) -> Link:
    """Read a stored link; a value without the version byte is a bare person key (older versions)."""
    if data[:1] != _LINK_VERSION:
        return Link(data.decode())
    person_key, since = orjson.loads(data[1:])
    return Link(person_key, datetime.fromisoformat(since) if since else None)


INDEX_MAX_DEVICES = 1000
"""Most devices indexed for one person on one partition: the entry is rewritten whole for each new device (a
shared test account can have thousands); links beyond it are stored but ``forget`` does not find them."""


class AliasTable:
    """``aliases``: device (anonymous id) -> ``Link`` to a person; and, per person and by-device partition, the
    index of the devices linked to them there (``identity.person_devices_key``: a hash and the partition, so no
    email in the key; the value is ``[forgotten, [device, ...]]`` as JSON after a version byte).

    ``forget`` reads the index to write a tombstone for each of the person's links, then marks the index entry
    forgotten: from then on no link to the person is stored on that partition, until ``unforget``. Both land in
    the changelog partition of the record being handled, in order, so a forgotten mark in the changelog means
    the tombstones before it are there too.
    """

    def __init__(self, table: MutableMapping[bytes, bytes]) -> None:
        self.table = table
        self.partition = 0
        """The by-device partition of the record being resolved (set by the stage): the index entry it writes."""

    def get(self, device: str, /) -> Link | None:
        stored = self.table.get(device.encode())
        return link_from_bytes(stored) if stored else None

    def __setitem__(self, device: str, link: Link, /) -> None:
        """Store the link and index the device under its person, unless the person is forgotten here (then nothing
        is stored: the event still resolves to the person, whose apply stage drops it ``forgotten``)."""
        key = person_devices_key(link.person_key, self.partition).encode()
        forgotten, devices = _person_devices(self.table.get(key))
        if forgotten:
            return
        if device not in devices and len(devices) < INDEX_MAX_DEVICES:
            # The index first: an indexed device without a link is harmless, a link missing from the index is not.
            self.table[key] = _LINK_VERSION + orjson.dumps([False, [*devices, device]])
        self.table[device.encode()] = link_to_bytes(link)

    def forget(self, person_key: str, forgotten: bool = True) -> int:
        """Delete the links to ``person_key`` indexed on this partition (tombstones) and mark them forgotten; with
        ``forgotten=False`` (``unforget``) delete the mark. Returns how many links were deleted. Idempotent."""
        key = person_devices_key(person_key, self.partition).encode()
        if not forgotten:
            if key in self.table:
                del self.table[key]
            return 0
        deleted = 0
        for device in _person_devices(self.table.get(key))[1]:
            link = self.get(device)
            if link is not None and link.person_key == person_key:  # the device may have been linked to another since
                del self.table[device.encode()]
                deleted += 1
        self.table[key] = _LINK_VERSION + orjson.dumps([True, []])
        return deleted


def _person_devices(stored: bytes | None) -> tuple[bool, list[str]]:
    if not stored:
        return False, []
    if stored[:1] != _LINK_VERSION:
        raise ValueError(f"unknown aliases-index format {stored[:1]!r}")
    forgotten, devices = orjson.loads(stored[1:])
    return bool(forgotten), list(devices)


class IdentityTable:
    """``identities``: person key -> ``Identity``; and, for each forgotten person, a marker keyed by
    ``identity.forgotten_key`` (a hash, so no email in the key, and a value without personal data; only a
    user id of exactly that shape, ``forgotten:`` and 64 hex digits, could collide with one)."""

    def __init__(self, table: MutableMapping[bytes, bytes]) -> None:
        self.table = table

    def get(self, person_key: str, /) -> Identity | None:
        stored = self.table.get(person_key.encode())
        return identity_from_bytes(stored) if stored else None

    def __setitem__(self, person_key: str, identity: Identity, /) -> None:
        self.table[person_key.encode()] = identity_to_bytes(identity)

    def delete(self, person_key: str, /) -> None:
        """Remove the person's entry: a tombstone in the changelog (compaction then drops their email)."""
        key = person_key.encode()
        if key in self.table:
            del self.table[key]

    def __contains__(self, marker: object, /) -> bool:
        """Whether the forgotten-marker ``marker`` (``identity.forgotten_key``) is set."""
        return isinstance(marker, str) and bool(self.table.get(marker.encode()))

    def set_forgotten(self, marker: str, forgotten: bool, /) -> None:
        """Set the forgotten-marker ``marker`` (its value is only a version byte: no personal data), or
        delete it (a tombstone)."""
        key = marker.encode()
        if forgotten:
            self.table[key] = _FORGOTTEN
        elif key in self.table:
            del self.table[key]


@dataclass(frozen=True, slots=True)
class HeldEntry:
    """The ``held`` table's value for a device: the by-device partition it was held on (its changelog
    partition, which the expiry sweep writes to) and its events in the order held."""

    partition: int
    events: list[Held[HeldRecord]]


def held_to_bytes(entry: HeldEntry) -> bytes:
    """A version byte, then JSON ``[partition, [[time, message id, event (base64), topic, partition,
    offset], ...]]``."""
    return _HELD_VERSION + orjson.dumps([entry.partition, [
        [h.time.isoformat(), h.message_id, base64.b64encode(h.payload[0]).decode(), *h.payload[1]]
        for h in entry.events]])


def held_from_bytes(data: bytes) -> HeldEntry:
    """Raises ``ValueError`` for a value of another format version."""
    if data[:1] != _HELD_VERSION:
        raise ValueError(f"unknown held-table format {data[:1]!r}")
    partition, events = orjson.loads(data[1:])
    return HeldEntry(partition, [
        Held(datetime.fromisoformat(time), message_id, (base64.b64decode(value), (topic, part, offset)))
        for time, message_id, value, topic, part, offset in events])


class HeldTable:
    """``held``: device (anonymous id) -> ``HeldEntry``, its events waiting for a link."""

    def __init__(self, table: MutableMapping[bytes, bytes]) -> None:
        self.table = table

    def get(self, device: str, /) -> HeldEntry | None:
        stored = self.table.get(device.encode())
        return held_from_bytes(stored) if stored else None

    def put(self, device: str, entry: HeldEntry) -> None:
        """Store ``entry``; without events the device's key is deleted (a tombstone in the changelog)."""
        key = device.encode()
        if entry.events:
            self.table[key] = held_to_bytes(entry)
        elif key in self.table:
            del self.table[key]

    def entries(self) -> Iterator[tuple[str, HeldEntry]]:
        """Every device held in the table as this worker has it."""
        for key, value in list(self.table.items()):
            if value:
                yield key.decode(), held_from_bytes(value)


def cart_to_bytes(cart: Cart) -> bytes:
    """The ``carts`` table's value: a version byte, then JSON ``{"items": [CommerceItem, ...], "applied":
    [message id, ...]}`` (items exactly as sent to ``commerce/updateCart``)."""
    return _CART_VERSION + orjson.dumps({"items": list(cart.items), "applied": list(cart.applied)})


def cart_from_bytes(data: bytes) -> Cart:
    """Raises ``ValueError`` for a value of another format version."""
    if data[:1] != _CART_VERSION:
        raise ValueError(f"unknown carts-table format {data[:1]!r}")
    fields = orjson.loads(data[1:])
    return Cart(tuple(fields["items"]), tuple(fields["applied"]))


class _ByPerson(Generic[V]):
    """A table of person key -> one value, with the value's byte format given."""

    def __init__(self, table: MutableMapping[bytes, bytes], to_bytes: Callable[[V], bytes],
                 from_bytes: Callable[[bytes], V]) -> None:
        self.table = table
        self._to_bytes = to_bytes
        self._from_bytes = from_bytes

    def get(self, person_key: str, /) -> V | None:
        stored = self.table.get(person_key.encode())
        return self._from_bytes(stored) if stored else None

    def __setitem__(self, person_key: str, value: V, /) -> None:
        self.table[person_key.encode()] = self._to_bytes(value)

    def delete(self, person_key: str, /) -> None:
        """Remove the person's entry: a tombstone in the changelog (``forget``)."""
        key = person_key.encode()
        if key in self.table:
            del self.table[key]


class CartTable(_ByPerson[Cart]):
    """``carts``: person key -> ``Cart``, the person's shopping cart as last sent to Iterable."""

    def __init__(self, table: MutableMapping[bytes, bytes]) -> None:
        super().__init__(table, cart_to_bytes, cart_from_bytes)


def registered_to_bytes(registered: Registered) -> bytes:
    """The ``devices`` table's value: a version byte, then the JSON list of registration digests (no token)."""
    return _DEVICES_VERSION + orjson.dumps(list(registered.digests))


def registered_from_bytes(data: bytes) -> Registered:
    """Raises ``ValueError`` for a value of another format version."""
    if data[:1] != _DEVICES_VERSION:
        raise ValueError(f"unknown devices-table format {data[:1]!r}")
    return Registered(tuple(orjson.loads(data[1:])))


class DeviceTable(_ByPerson[Registered]):
    """``devices``: person key -> ``Registered``, the push devices registered with Iterable for the person."""

    def __init__(self, table: MutableMapping[bytes, bytes]) -> None:
        super().__init__(table, registered_to_bytes, registered_from_bytes)


_SUBSCRIPTIONS_VERSION = b"\x01"


def sent_to_bytes(sent: Sent) -> bytes:
    """The ``subscriptions`` table's value: a version byte, then the JSON object ``"group:id"`` -> subscribed."""
    return _SUBSCRIPTIONS_VERSION + orjson.dumps(dict(sent.state))


def sent_from_bytes(data: bytes) -> Sent:
    """Raises ``ValueError`` for a value of another format version."""
    if data[:1] != _SUBSCRIPTIONS_VERSION:
        raise ValueError(f"unknown subscriptions-table format {data[:1]!r}")
    return Sent(orjson.loads(data[1:]))


class SubscriptionTable(_ByPerson[Sent]):
    """``subscriptions``: person key -> ``Sent``, the subscription state last sent to Iterable for the person."""

    def __init__(self, table: MutableMapping[bytes, bytes]) -> None:
        super().__init__(table, sent_to_bytes, sent_from_bytes)
