"""The framework's floor: a faust app that only consumes a topic and acks each record, the way the
worker's first agent does (``noack_take`` batches, ``stream.ack`` per record), and nothing else.

Its CPU per record is what faust-streaming and aiokafka cost before any of our work; ``bench_e2e``
runs it on the same pre-loaded topic as the worker and prints it beside the worker's figure.

    python -m bench.faust_floor --bootstrap 127.0.0.1:9092 --topic t --events 100000 --datadir /tmp/x

Prints one JSON line: records consumed, seconds and CPU seconds from the first batch to the last.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
from typing import Any

import orjson


def _cpu_seconds() -> float:
    fields = Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bootstrap", required=True)
    parser.add_argument("--topic", required=True)
    parser.add_argument("--events", type=int, required=True, help="stop after this many records")
    parser.add_argument("--datadir", required=True)
    parser.add_argument("--group", default="faust-floor")
    parser.add_argument("--batch", type=int, default=2000)
    parser.add_argument("--fetch-bytes", type=int, default=4 * 1024 * 1024,
                        help="per-partition fetch size (the worker's FPI_CONSUMER_FETCH_BYTES default)")
    parser.add_argument("--inline-delivery", action="store_true",
                        help="with the worker's fix for faust's per-record delivery tasks (streams.faust_patches)")
    args = parser.parse_args()

    import faust

    app = faust.App(args.group, broker=f"kafka://{args.bootstrap}", store="memory://", datadir=args.datadir,
                    consumer_auto_offset_reset="earliest", web_enabled=False, autodiscover=False,
                    consumer_max_fetch_size=args.fetch_bytes)
    if args.inline_delivery:
        from streams.faust_patches import deliver_inline_while_flowing

        deliver_inline_while_flowing(app.consumer)
    source = app.topic(args.topic, key_type=bytes, value_type=bytes, key_serializer="raw", value_serializer="raw")
    seen = {"records": 0}
    start: dict[str, float] = {}

    @app.agent(source)
    async def consume(stream: Any) -> None:
        async for batch in stream.noack_take(args.batch, within=0.1):
            if not start:
                start.update(wall=time.monotonic(), cpu=_cpu_seconds())
            for event in batch:
                await stream.ack(event)
            seen["records"] += len(batch)
            if seen["records"] >= args.events:
                print(orjson.dumps({"records": seen["records"], "seconds": time.monotonic() - start["wall"],
                                    "cpu_seconds": _cpu_seconds() - start["cpu"]}).decode(), flush=True)
                os._exit(0)

    sys.argv = [sys.argv[0], "worker", "--loglevel", "warn", "--without-web"]
    app.main()


if __name__ == "__main__":
    main()
