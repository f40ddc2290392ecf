"""Sample events for the codec tests: our own table of shapes, plus every line of
``tests/data/sample_events.jsonl`` (normalized by ``streams.normalize``) when that file exists."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from streams.model import Event, EventType, PageContext

SAMPLE_FILE = Path(__file__).resolve().parents[2] / "data" / "sample_events.jsonl"

T0 = datetime(2024, 5, 17, 12, 30, 45, 123000, tzinfo=UTC)

ORDER_COMPLETED = Event(
    type=EventType.TRACK,
    message_id="msg-order-1",
    timestamp=T0,
    anonymous_id="dev-1",
    user_id="user-1",
    event_name="Order Completed",
    properties={
        "order_id": "o-1",
        "total": 30.0,
        "revenue": 29,
        "currency": "USD",
        "products": [
            {"product_id": "p1", "sku": "S-1", "price": 9.99, "quantity": 1, "tags": ["a", "b"]},
            {"product_id": "p2", "sku": "S-2", "price": 10, "quantity": 2, "tags": [], "extra": None},
        ],
        "$insert_id": "kept-verbatim",
        "nested": {"a": {"b": [1, 2.5, {"c": None, "d": True}]}},
    },
    context={"library": {"name": "freshpaint.js", "version": "1.3.0"}, "ip": "192.0.2.1"},
    page=PageContext(url="https://shop.test/checkout?x=1", path="/checkout", title="Checkout",
                     referrer=None, search="?x=1"),
)

SAMPLES: dict[str, Event] = {
    "order_completed": ORDER_COMPLETED,
    "identify": Event(
        type=EventType.IDENTIFY, message_id="msg-id-1", timestamp=T0, anonymous_id="dev-2",
        user_id="user-2", email="person@example.test",
        traits={"email": "person@example.test", "first_name": "Ada", "age": 36, "score": 1.0,
                "$user_props_seen": True},
    ),
    "anonymous_page": Event(
        type=EventType.PAGE, message_id="msg-page-1",
        timestamp=datetime(1999, 12, 31, 23, 59, 59, tzinfo=UTC),
        anonymous_id="dev-3", event_name="$web_event",
        properties={"$current_url": "https://x.test/", "$screen_width": 1920, "time": 946684799.0},
        page=PageContext(url="https://x.test/"),
    ),
    "alias_unicode": Event(
        type=EventType.ALIAS, message_id="msg-alias-ü-1", timestamp=datetime(1970, 1, 1, tzinfo=UTC),
        user_id="new-ü", previous_id="old-✓", properties={"emoji": "🎉", "big": 2**70, "neg": -0.0},
    ),
    "screen_empty": Event(type=EventType.SCREEN, message_id="m", timestamp=T0),
    "group": Event(type=EventType.GROUP, message_id="g-1", timestamp=T0, user_id="u",
                   traits={"$group_id": "acme", "employees": [1, [2, [3]]]}),
}


def sample_file_events() -> dict[str, Event]:
    """Every line of the shared sample file that normalizes (the file also holds deliberately bad
    lines), keyed by line number; empty while the file does not exist."""
    if not SAMPLE_FILE.exists():
        return {}
    from streams.errors import InvalidEvent
    from streams.normalize import normalize_json_line

    events = {}
    for number, line in enumerate(SAMPLE_FILE.read_text(encoding="utf-8").splitlines(), start=1):
        if line.strip():
            try:
                events[f"sample_events.jsonl:{number}"] = normalize_json_line(line)
            except InvalidEvent:
                continue
    return events
