"""The limit beside us: a bare aiokafka consumer that reads a topic in batches (``getmany``) and commits
after each batch, with no work at all, and no faust.

Its CPU per record is what reading Kafka costs in Python on this machine; ``bench_e2e`` runs it on the same
pre-loaded topic as the worker and the faust floors, and prints the three side by side (issue 19: faust's
own consume + ack cost 10-17x this per record).

    python -m bench.aiokafka_floor --bootstrap 127.0.0.1:9092 --topic t --events 100000

Prints one JSON line: records consumed, seconds and CPU seconds from the first batch to the last.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import time
from pathlib import Path

import orjson


def _cpu_seconds() -> float:
    fields = Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def consume(bootstrap: str, topic: str, events: int, group: str, batch: int,
                  fetch_bytes: int) -> dict[str, float]:
    from aiokafka import AIOKafkaConsumer  # type: ignore[import-untyped]

    consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False,
                                auto_offset_reset="earliest", max_partition_fetch_bytes=fetch_bytes)
    await consumer.start()
    records = 0
    wall = cpu = 0.0
    try:
        while records < events:
            fetched = await consumer.getmany(timeout_ms=100, max_records=batch)
            if not fetched:
                continue
            if not records:
                wall, cpu = time.monotonic(), _cpu_seconds()
            records += sum(len(part) for part in fetched.values())
            await consumer.commit()
        return {"records": records, "seconds": time.monotonic() - wall, "cpu_seconds": _cpu_seconds() - cpu}
    finally:
        await consumer.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bootstrap", required=True)
    parser.add_argument("--topic", required=True)
    parser.add_argument("--events", type=int, required=True, help="stop after this many records")
    parser.add_argument("--group", default="aiokafka-floor")
    parser.add_argument("--batch", type=int, default=2000)
    parser.add_argument("--fetch-bytes", type=int, default=4 * 1024 * 1024,
                        help="per-partition fetch size (the worker's FPI_CONSUMER_FETCH_BYTES default)")
    args = parser.parse_args()
    result = asyncio.run(consume(args.bootstrap, args.topic, args.events, args.group, args.batch, args.fetch_bytes))
    print(orjson.dumps(result).decode(), flush=True)


if __name__ == "__main__":
    main()
