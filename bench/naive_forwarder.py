"""The naive baseline: what a simple forwarder does. One aiokafka consumer, one Iterable HTTP request
per event (``users/update``, ``events/track``, ``commerce/trackPurchase``) with aiohttp, awaited one by
one; no batching, no repartitioning, identities in a dict.

It uses the same decoder and mapping core as the worker, so both send the same bodies and the
comparison is about the delivery shape only. Runs until ``--events`` source records were handled
or ``--seconds`` passed, then prints one JSON line of counts.

    python -m bench.naive_forwarder --bootstrap HOST:PORT --topic T --url http://127.0.0.1:P
    (the API key comes from FPI_ITERABLE_API_KEY)
"""

from __future__ import annotations

import argparse
import asyncio
import os
import time
from datetime import UTC, datetime

import aiohttp
import orjson

from streams.codecs import EventDecoder
from streams.errors import StreamsError
from streams.identity import Link, resolve
from streams.mapping import MappingConfig, apply_event
from streams.model import Identity


async def forward(bootstrap: str, topic: str, url: str, group: str, max_events: int, seconds: float) -> dict[str, int]:
    from aiokafka import AIOKafkaConsumer  # type: ignore[import-untyped]

    decoder = EventDecoder("confluent")
    config = MappingConfig()
    aliases: dict[str, Link] = {}
    identities: dict[str, Identity] = {}
    headers = {"Api-Key": os.environ["FPI_ITERABLE_API_KEY"], "Content-Type": "application/json"}
    counts = {"consumed": 0, "requests": 0, "failed": 0, "dropped": 0}
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, group_id=group, auto_offset_reset="earliest")
    deadline = time.monotonic() + seconds
    timeout = aiohttp.ClientTimeout(total=30)
    async with aiohttp.ClientSession(base_url=url, headers=headers, timeout=timeout) as http:
        await consumer.start()
        try:
            while counts["consumed"] < max_events and time.monotonic() < deadline:
                batch = await consumer.getmany(timeout_ms=500)
                for records in batch.values():
                    for record in records:
                        counts["consumed"] += 1
                        try:
                            event = decoder.decode(record.value)
                        except StreamsError:
                            counts["dropped"] += 1
                            continue
                        device = event.anonymous_id
                        resolution = resolve(event, aliases.get(device) if device else None)
                        if resolution.new_link and device:
                            aliases[device] = resolution.new_link
                        if resolution.person_key is None:
                            counts["dropped"] += 1
                            continue
                        key = resolution.person_key
                        applied = apply_event(event, key, identities.get(key), config, datetime.now(UTC))
                        if applied.identity is not None:
                            identities[key] = applied.identity
                        for request in applied.decision.requests:
                            async with http.post(request.endpoint.value, data=orjson.dumps(request.body)) as response:
                                await response.read()
                            counts["requests"] += 1
                            counts["failed"] += response.status != 200
                        if not applied.decision.requests:
                            counts["dropped"] += 1
                        if counts["consumed"] >= max_events or time.monotonic() >= deadline:
                            break
        finally:
            await consumer.stop()
    return counts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bootstrap", required=True)
    parser.add_argument("--topic", required=True)
    parser.add_argument("--url", required=True)
    parser.add_argument("--group", default="naive-forwarder")
    parser.add_argument("--events", type=int, default=10**9)
    parser.add_argument("--seconds", type=float, default=60.0)
    args = parser.parse_args()
    counts = asyncio.run(forward(args.bootstrap, args.topic, args.url, args.group, args.events, args.seconds))
    print(orjson.dumps(counts).decode(), flush=True)


if __name__ == "__main__":
    main()
