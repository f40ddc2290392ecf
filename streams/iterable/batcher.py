"""How a list of requests becomes Iterable calls: folding into bulk bodies, size limits, ordering.

Pure functions, no I/O. ``plan`` splits requests into *waves*: within a wave no person appears in
two calls of different kinds, nor twice with a request whose order matters (a profile update), and
a person's requests keep their order across waves, so an identify is accepted before the same
person's later events are sent (design.md "Delivery semantics").
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import orjson

from streams.model import Endpoint, IterableRequest, JSONValue

__all__ = ["BULK_OF", "SINGLE_OF", "Call", "call_body", "item_size", "plan"]

BULK_OF: Mapping[Endpoint, Endpoint] = {
    Endpoint.USERS_UPDATE: Endpoint.USERS_BULK_UPDATE,
    Endpoint.EVENTS_TRACK: Endpoint.EVENTS_TRACK_BULK,
}
SINGLE_OF: Mapping[Endpoint, Endpoint] = {bulk: single for single, bulk in BULK_OF.items()}
_BULK_KEY: Mapping[Endpoint, str] = {
    Endpoint.USERS_BULK_UPDATE: "users",
    Endpoint.EVENTS_TRACK_BULK: "events",
}
_ENVELOPE_BYTES = 64
ORDER_FREE: frozenset[Endpoint] = frozenset({Endpoint.EVENTS_TRACK, Endpoint.COMMERCE_TRACK_PURCHASE})
"""Kinds whose requests are records of their own (an event or purchase id): Iterable holds the same
whatever order they arrive in. A profile update overwrites fields, so its order matters."""


@dataclass(frozen=True, slots=True)
class Call:
    """One HTTP call to make: the endpoint called and the positions of its requests in the input."""

    endpoint: Endpoint
    indexes: tuple[int, ...]

    @property
    def bulk(self) -> bool:
        return self.endpoint in _BULK_KEY


def item_size(body: Mapping[str, JSONValue]) -> int:
    """Bytes ``body`` takes in a JSON array (plus one for the comma)."""
    return len(orjson.dumps(body)) + 1


def call_body(endpoint: Endpoint, bodies: Sequence[Mapping[str, JSONValue]]) -> Mapping[str, JSONValue]:
    """The JSON body of a call: ``{"users": [...]}`` / ``{"events": [...]}`` for bulk, else the one body."""
    key = _BULK_KEY.get(endpoint)
    if key is None:
        if len(bodies) != 1:
            raise ValueError(f"{endpoint} takes exactly one body")
        return bodies[0]
    return {key: list(bodies)}


def _kind(endpoint: Endpoint) -> Endpoint:
    return SINGLE_OF.get(endpoint, endpoint)


def plan(
    requests: Sequence[IterableRequest],
    *,
    batching: bool = True,
    max_items: int = 1000,
    max_bytes: int = 4_000_000,
) -> list[list[Call]]:
    """Waves of calls covering every request exactly once, in an order that is safe per person.

    With ``batching``, users/update requests fold into users/bulkUpdate and events/track into
    events/trackBulk, split at ``max_items`` items or ``max_bytes`` of body; every other endpoint
    (trackPurchase, updateCart, updateEmail: no bulk form) gets one call per request.
    """
    # A person moves to the next wave whenever the kind of their request changes, and with each
    # request whose order matters: the calls of a wave run concurrently, and a wave's bulk list is
    # split into several calls, so two updates of one profile in one wave could land in the wrong
    # order (seen: an identify's fields overwritten by the one before it, in two calls 0.04 s apart).
    last_kind: dict[str, Endpoint] = {}
    wave_of: dict[str, int] = {}
    waves: list[dict[Endpoint, list[int]]] = []
    for index, request in enumerate(requests):
        kind = _kind(request.endpoint)
        person = request.person_key
        wave = wave_of.get(person, 0)
        if person in last_kind and (last_kind[person] != kind or kind not in ORDER_FREE):
            wave += 1
        wave_of[person], last_kind[person] = wave, kind
        while len(waves) <= wave:
            waves.append({})
        waves[wave].setdefault(kind, []).append(index)

    out: list[list[Call]] = []
    for wave_kinds in waves:
        calls: list[Call] = []
        for kind, indexes in wave_kinds.items():
            bulk = BULK_OF.get(kind) if batching else None
            if bulk is None:
                calls.extend(Call(kind, (i,)) for i in indexes)
                continue
            chunk: list[int] = []
            size = _ENVELOPE_BYTES
            for i in indexes:
                grow = item_size(requests[i].body)
                if chunk and (len(chunk) >= max_items or size + grow > max_bytes):
                    calls.append(Call(bulk, tuple(chunk)))
                    chunk, size = [], _ENVELOPE_BYTES
                chunk.append(i)
                size += grow
            if chunk:
                calls.append(Call(bulk, tuple(chunk)))
        out.append(calls)
    return out

