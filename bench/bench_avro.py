"""Decode and encode throughput of the Avro source schema against JSON (json, orjson), in one run.

    python -m bench.bench_avro            # ~2 s per case
    python -m bench.bench_avro --smoke    # about a second in all (CI: it runs, numbers are noise)

The events are the lines of tests/data/sample_events.jsonl that normalize, plus an Order Completed
with nested products. Every case loops over the same events:

* ``avro decode -> Event``: ``EventDecoder.decode`` (Confluent framing, fastavro, orjson for the
  three JSON-text fields, ``Event`` construction): what the worker does per message.
* ``avro decode, record only``: fastavro alone (no JSON fields parsed, no ``Event``).
* ``avro v2 -> v1 reader``: schema resolution on every record (a v2 producer, a v1 worker).
* ``json.loads`` / ``orjson.loads`` of the original JSON line (to dicts; no ``Event``), and
  ``orjson.loads + normalize -> Event`` (the same end product from JSON).
* ``design``: the schema choice on a reduced record (id, timestamp, properties, traits, context),
  the three JSON fields as JSON text (+ orjson) against a recursive Avro union of
  null/boolean/long/double/string/array/map (+ unwrapping to plain values); over all events and
  over the Order Completed event alone (the nested shape the choice is about).
* Encode: ``encode_event`` from ``Event``; ``json.dumps`` / ``orjson.dumps`` of the raw dicts.
"""

from __future__ import annotations

import argparse
import io
import json
import platform
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import fastavro
import orjson

from streams.codecs import SOURCE_V1, SOURCE_V2, EventDecoder, encode_event, parsed_schema
from streams.errors import InvalidEvent
from streams.model import Event
from streams.normalize import normalize, normalize_json_line

SAMPLES = Path(__file__).resolve().parent.parent / "tests" / "data" / "sample_events.jsonl"

ORDER_COMPLETED = {
    "type": "track", "messageId": "bench-order-1", "timestamp": "2024-05-17T12:30:45.123Z",
    "anonymousId": "dev-1", "userId": "user-1", "event": "Order Completed",
    "properties": {
        "order_id": "o-1", "total": 30.0, "revenue": 29, "currency": "USD",
        "products": [
            {"product_id": "p1", "sku": "S-1", "price": 9.99, "quantity": 1, "tags": ["a", "b"]},
            {"product_id": "p2", "sku": "S-2", "price": 10, "quantity": 2, "tags": []},
        ],
    },
    "context": {"library": {"name": "freshpaint.js", "version": "1.3.0"}, "ip": "192.0.2.1",
                "page": {"url": "https://shop.test/checkout", "path": "/checkout", "title": "Checkout"}},
}

_JSON = {"type": "record", "name": "Json", "fields": [{"name": "v", "type": [
    "null", "boolean", "long", "double", "string", {"type": "array", "items": "Json"},
    {"type": "map", "values": "Json"}]}]}
RECURSIVE = fastavro.parse_schema({"type": "record", "name": "RecursiveEvent", "fields": [
    {"name": "message_id", "type": "string"},
    {"name": "timestamp", "type": {"type": "long", "logicalType": "timestamp-millis"}},
    {"name": "properties", "type": {"type": "map", "values": _JSON}},
    {"name": "traits", "type": {"type": "map", "values": "Json"}},
    {"name": "context", "type": {"type": "map", "values": "Json"}},
]})


JSON_TEXT = fastavro.parse_schema({"type": "record", "name": "JsonTextEvent", "fields": [
    {"name": "message_id", "type": "string"},
    {"name": "timestamp", "type": {"type": "long", "logicalType": "timestamp-millis"}},
    {"name": "properties", "type": "string"},
    {"name": "traits", "type": "string"},
    {"name": "context", "type": "string"},
]})


def _json_text_body(event: Event) -> bytes:
    buffer = io.BytesIO()
    fastavro.schemaless_writer(buffer, JSON_TEXT, {
        "message_id": event.message_id, "timestamp": event.timestamp,
        "properties": orjson.dumps(event.properties).decode(), "traits": orjson.dumps(event.traits).decode(),
        "context": orjson.dumps(event.context).decode(),
    })
    return buffer.getvalue()


def _record_only(raw: bytes) -> dict[str, Any]:
    """The Avro record in a Confluent-framed v1 value, without building an ``Event``."""
    record: dict[str, Any] = fastavro.schemaless_reader(io.BytesIO(raw[5:]), parsed_schema(SOURCE_V1), None)
    return record


def _json_text_decode(raw: bytes) -> dict[str, Any]:
    record = fastavro.schemaless_reader(io.BytesIO(raw), JSON_TEXT)
    for name in ("properties", "traits", "context"):
        record[name] = orjson.loads(record[name])
    return record


def _wrap(value: Any) -> dict[str, Any]:
    if isinstance(value, dict):
        return {"v": {k: _wrap(v) for k, v in value.items()}}
    if isinstance(value, list):
        return {"v": [_wrap(v) for v in value]}
    return {"v": value}


def _unwrap(value: dict[str, Any]) -> Any:
    inner = value["v"]
    if isinstance(inner, dict):
        return {k: _unwrap(v) for k, v in inner.items()}
    if isinstance(inner, list):
        return [_unwrap(v) for v in inner]
    return inner


def _recursive_body(event: Event) -> bytes:
    buffer = io.BytesIO()
    fastavro.schemaless_writer(buffer, RECURSIVE, {
        "message_id": event.message_id, "timestamp": event.timestamp,
        "properties": {k: _wrap(v) for k, v in event.properties.items()},
        "traits": {k: _wrap(v) for k, v in event.traits.items()},
        "context": {k: _wrap(v) for k, v in event.context.items()},
    })
    return buffer.getvalue()


def _recursive_decode(raw: bytes) -> dict[str, Any]:
    record = fastavro.schemaless_reader(io.BytesIO(raw), RECURSIVE)
    for name in ("properties", "traits", "context"):
        record[name] = {k: _unwrap(v) for k, v in record[name].items()}
    return record


def load_events() -> tuple[list[str], list[Event]]:
    lines, events = [], []
    for line in [*SAMPLES.read_text(encoding="utf-8").splitlines(), json.dumps(ORDER_COMPLETED)]:
        try:
            events.append(normalize_json_line(line))
        except InvalidEvent:
            continue
        lines.append(line)
    return lines, events


def rate(items: list[Any], fn: Callable[[Any], object], seconds: float) -> float:
    """Records per second of ``fn`` over ``items``, looping whole passes for at least ``seconds``."""
    for item in items:  # warm-up, and proof that every item works
        fn(item)
    done, started = 0, time.perf_counter()
    while True:
        for item in items:
            fn(item)
        done += len(items)
        elapsed = time.perf_counter() - started
        if elapsed >= seconds:
            return done / elapsed


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--smoke", action="store_true", help="tiny time budget: checks it runs")
    parser.add_argument("--seconds", type=float, default=2.0, help="time per case (default 2)")
    args = parser.parse_args(argv)
    seconds = 0.05 if args.smoke else args.seconds

    lines, events = load_events()
    raw_dicts = [json.loads(line) for line in lines]
    avro = [encode_event(event) for event in events]
    v2_id = 2
    avro_v2 = [encode_event(event, schema_id=v2_id, schema=parsed_schema(SOURCE_V2)) for event in events]
    recursive = [_recursive_body(event) for event in events]
    json_text = [_json_text_body(event) for event in events]
    order = [e for e in events if e.message_id == "bench-order-1"]
    decoder = EventDecoder(schemas={v2_id: parsed_schema(SOURCE_V2)})
    assert [decoder.decode(raw) for raw in avro_v2] == [decoder.decode(raw) for raw in avro]
    assert parsed_schema(SOURCE_V1)  # parsed before timing

    avro_size = sum(map(len, avro)) / len(avro)
    json_size = sum(len(line.encode()) for line in lines) / len(lines)
    print(f"{len(events)} events; mean size: Avro (Confluent) {avro_size:.0f} B, JSON line {json_size:.0f} B")
    print(f"python {platform.python_version()}, fastavro {fastavro.__version__}, "
          f"orjson {orjson.__version__}, {seconds:g} s per case{' (smoke)' if args.smoke else ''}")
    cases: list[tuple[str, list[Any], Callable[[Any], object]]] = [
        ("decode  avro -> Event (EventDecoder)", avro, decoder.decode),
        ("decode  avro, record only (fastavro)", avro, _record_only),
        ("decode  avro v2 data -> v1 reader -> Event", avro_v2, decoder.decode),
        ("decode  json.loads (dicts)", lines, json.loads),
        ("decode  orjson.loads (dicts)", lines, orjson.loads),
        ("decode  orjson.loads + normalize -> Event", lines, lambda line: normalize(orjson.loads(line))),
        ("design  JSON-text fields, all events", json_text, _json_text_decode),
        ("design  recursive union, all events", recursive, _recursive_decode),
        ("design  JSON-text fields, Order Completed", [_json_text_body(e) for e in order], _json_text_decode),
        ("design  recursive union, Order Completed", [_recursive_body(e) for e in order], _recursive_decode),
        ("encode  Event -> avro (encode_event)", events, encode_event),
        ("encode  json.dumps (dicts)", raw_dicts, json.dumps),
        ("encode  orjson.dumps (dicts)", raw_dicts, orjson.dumps),
    ]
    for name, items, fn in cases:
        print(f"{name:<46} {rate(items, fn, seconds):>12,.0f} records/s")


if __name__ == "__main__":
    main()
