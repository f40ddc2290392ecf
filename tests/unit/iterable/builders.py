"""Iterable requests for the sender's tests, unit and integration: an identify, a tracked event, a purchase, a crowd."""

from __future__ import annotations

from typing import Any

from streams.model import Endpoint, IterableRequest


def identify(person: str, **fields: Any) -> IterableRequest:
    return IterableRequest(
        Endpoint.USERS_UPDATE,
        {"email": f"{person}@example.com", "dataFields": fields},
        person,
        f"src-{person}-id",
    )


def track(person: str, event_id: str, name: str = "Viewed", **fields: Any) -> IterableRequest:
    body = {
        "email": f"{person}@example.com",
        "eventName": name,
        "id": event_id,
        "createdAt": 1717171717,
        "dataFields": fields,
    }
    return IterableRequest(Endpoint.EVENTS_TRACK, body, person, f"src-{event_id}")


def purchase(person: str, order: str) -> IterableRequest:
    body = {
        "id": order,
        "user": {"email": f"{person}@example.com"},
        "total": 3.5,
        "items": [{"id": "sku", "name": "Mug", "price": 3.5, "quantity": 1}],
    }
    return IterableRequest(Endpoint.COMMERCE_TRACK_PURCHASE, body, person, f"src-{order}")


def people(n_people: int, events_each: int, prefix: str = "p") -> list[IterableRequest]:
    """Per person: an identify, then ``events_each`` tracked events."""
    out: list[IterableRequest] = []
    for p in range(n_people):
        out.append(identify(f"{prefix}{p}", n=p))
        out.extend(track(f"{prefix}{p}", f"{prefix}{p}-e{e}") for e in range(events_each))
    return out
