"""The benchmark workload: a realistic mix of Freshpaint events (destination dialect, ~1 KB each).

Mix per block of 20 events (so any multiple of 20 keeps the shares exact):

* 2 identifies (10%): two new people, each on their own device, with traits;
* 16 track / page events of those two people (80%): 10 tracks, 6 pages, nested properties;
* 1 ``Order Completed`` (5%) with a products list (a purchase in Iterable);
* 1 track from a device that is never identified (5%): dropped as anonymous.

Message ids are ``<tag>-<n>`` (letters, digits, hyphens), so the Iterable id of each event and
purchase is its message id and the emulator's arrival times can be matched to produce times.

    python -m bench.workload --events 1000 > events.jsonl     # JSON lines for `produce`
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson

from streams.codecs import BUNDLED_SCHEMA_ID, encode_event
from streams.commands.produce import event_key
from streams.normalize import normalize

__all__ = ["BLOCK", "Expected", "encoded", "events", "expected", "produce_encoded"]

BLOCK = 20
_START = datetime(2026, 1, 1, tzinfo=UTC)
_PAGES = ("/", "/pricing", "/docs/getting-started", "/blog/2026/streams", "/checkout", "/account/settings")
_TRACKS = ("Product Viewed", "Product Added", "Signed Up", "Video Played", "Search Performed")


@dataclass(frozen=True, slots=True)
class Expected:
    """What Iterable should receive for ``events(n, tag)``: ids of tracked events and purchases."""

    event_ids: frozenset[str]
    purchase_ids: frozenset[str]
    identifies: int
    anonymous: int


def _context(device: str, i: int, page: str) -> dict[str, Any]:
    return {
        "ip": f"10.{i % 250}.{(i // 250) % 250}.7",
        "locale": "en-US",
        "timezone": "Europe/Berlin",
        "userAgent": "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0",
        "library": {"name": "freshpaint-js", "version": "1.3.0"},
        "page": {"path": page, "url": f"https://shop.example.com{page}", "title": "Shop",
                 "referrer": "https://www.google.com/", "search": ""},
        "campaign": {"source": "newsletter", "medium": "email", "name": "spring-sale", "content": "hero"},
        "device": {"id": device, "type": "browser"},
        "screen": {"width": 1920, "height": 1080, "density": 2},
    }


def _properties(i: int, page: str) -> dict[str, Any]:
    return {
        "path": page,
        "sku": f"SKU-{i % 997:04d}",
        "price": round(9.99 + (i % 50), 2),
        "currency": "EUR",
        "quantity": 1 + i % 3,
        "product": {"id": f"p-{i % 997}", "name": "Trail running shoe", "brand": "Acme", "category": "shoes",
                    "variant": {"color": "blue", "size": 42 + i % 4}, "tags": ["outdoor", "running", "sale"]},
        "experiment": {"id": "exp-42", "variant": "b" if i % 2 else "a"},
        "session": {"id": f"s-{i // 20}", "index": i % 20, "firstVisit": i % 20 == 0},
    }


def events(n: int, tag: str = "bm") -> Iterator[dict[str, Any]]:
    """``n`` raw destination messages (``n`` rounded up to a multiple of ``BLOCK``), in order."""
    blocks = (n + BLOCK - 1) // BLOCK
    i = 0
    for b in range(blocks):
        people = [(f"{tag}-d{2 * b + k}", f"{tag}-u{2 * b + k}") for k in range(2)]
        for k, (device, user) in enumerate(people):
            yield _message(tag, i, "identify", device, user, traits={
                "email": f"{user}@example.com", "first_name": "Ada", "last_name": f"Person{2 * b + k}",
                "plan": "pro" if k else "free", "company": {"name": "Acme GmbH", "employees": 120 + b % 50},
                "address": {"city": "Berlin", "country": "DE", "postal_code": "10115"},
            })
            i += 1
        for j in range(16):
            device, user = people[j % 2]
            if j % 8 < 5:
                yield _message(tag, i, "track", device, user, event=_TRACKS[j % len(_TRACKS)])
            else:
                yield _message(tag, i, "page", device, user, name="Shop Page")
            i += 1
        device, user = people[b % 2]
        yield _message(tag, i, "track", device, user, event="Order Completed", extra={
            "order_id": f"{tag}-o{b}", "total": 129.9, "campaignId": 1201, "templateId": 3401,
            "revenue": 119.9, "currency": "EUR",
            "items": [{"product_id": f"p-{b % 97}", "sku": "SKU-1", "name": "Trail running shoe",
                          "price": 99.9, "quantity": 1, "category": "shoes"},
                         {"product_id": "p-socks", "sku": "SKU-2", "name": "Socks", "price": 10.0,
                          "quantity": 2, "category": "apparel"}],
        })
        i += 1
        yield _message(tag, i, "track", f"{tag}-anon{b}", None, event="Product Viewed")
        i += 1


def _message(tag: str, i: int, kind: str, device: str, user: str | None, *, traits: dict[str, Any] | None = None,
             event: str | None = None, name: str | None = None,
             extra: dict[str, Any] | None = None) -> dict[str, Any]:
    page = _PAGES[i % len(_PAGES)]
    message: dict[str, Any] = {
        "type": kind,
        "messageId": f"{tag}-{i}",
        "timestamp": (_START + timedelta(milliseconds=250 * i)).isoformat().replace("+00:00", "Z"),
        "anonymousId": device,
        "context": _context(device, i, page),
    }
    if user is not None:
        message["userId"] = user
    if traits is not None:
        message["traits"] = traits
    else:
        message["properties"] = {**_properties(i, page), **(extra or {})}
    if event is not None:
        message["event"] = event
    if name is not None:
        message["name"] = name
    return message


def expected(n: int, tag: str = "bm") -> Expected:
    """The ids Iterable receives for ``events(n, tag)`` (structure of the mix, checked against
    ``explain`` by the smoke test)."""
    event_ids: set[str] = set()
    purchase_ids: set[str] = set()
    identifies = anonymous = 0
    for message in events(n, tag):
        if message["type"] == "identify":
            identifies += 1
        elif "userId" not in message:
            anonymous += 1
        elif message.get("event") == "Order Completed":
            purchase_ids.add(message["properties"]["order_id"])
        else:
            event_ids.add(message["messageId"])
    return Expected(frozenset(event_ids), frozenset(purchase_ids), identifies, anonymous)


def encoded(n: int, tag: str = "bm") -> Iterator[tuple[bytes | None, bytes]]:
    """``(key, Avro value)`` pairs as ``produce`` would write them (Confluent format, bundled schema)."""
    for message in events(n, tag):
        event = normalize(message)
        yield event_key(event), encode_event(event, "confluent", schema_id=BUNDLED_SCHEMA_ID)


async def produce_encoded(
    records: Iterator[tuple[bytes | None, bytes]] | list[tuple[bytes | None, bytes]],
    *, bootstrap: str, topic: str, rate: float | None = None,
    on_sent: Callable[[int, float], None] | None = None,
) -> int:
    """Produce pre-encoded records, batched (no per-record await); optional steady ``rate``.

    ``on_sent(index, t)`` is called with the wall-clock time just before each record is handed to
    the producer. Returns the number produced, after the broker acked them all.
    """
    from aiokafka import AIOKafkaProducer  # type: ignore[import-untyped]

    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks=1, linger_ms=5 if rate else 20,
                                max_batch_size=1 << 20)
    await producer.start()
    pending: list[asyncio.Future[Any]] = []
    sent = 0
    started = time.monotonic()
    try:
        for key, value in records:
            if rate:
                delay = started + sent / rate - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
            if on_sent is not None:
                on_sent(sent, time.time())
            pending.append(await producer.send(topic, value, key=key))
            sent += 1
            if len(pending) >= 5000:
                await asyncio.gather(*pending)
                pending.clear()
        await asyncio.gather(*pending)
    finally:
        await producer.stop()
    return sent


def main() -> None:
    parser = argparse.ArgumentParser(description="Write the benchmark workload as JSON lines to stdout.")
    parser.add_argument("--events", type=int, default=1000)
    parser.add_argument("--tag", default="bm")
    args = parser.parse_args()
    out = sys.stdout.buffer
    for message in events(args.events, args.tag):
        out.write(orjson.dumps(message) + b"\n")


if __name__ == "__main__":
    main()
