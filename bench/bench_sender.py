"""Events per second delivered to the emulator by the sender: batched versus one request per event.

Both modes run in one process against the same emulator (rate limits off, real HTTP on loopback),
so the numbers are comparable. Prints events/s for each, the speed-up and the batch fill ratio.

    python -m bench.bench_sender            # 5,000 events per mode
    python -m bench.bench_sender --smoke    # a few hundred events, for CI
"""

from __future__ import annotations

import argparse
import asyncio
import platform
import time
from datetime import UTC, datetime

from pydantic import SecretStr

from streams.emulator import EmulatorConfig, EmulatorServer
from streams.iterable import Sender, SenderConfig, new_http_client
from streams.model import Endpoint, IterableRequest

KEY = "bench-key"


def workload(events: int, per_person: int, tag: str) -> list[IterableRequest]:
    out: list[IterableRequest] = []
    for p in range(max(1, events // per_person)):
        email = f"{tag}-{p}@example.com"
        out.append(
            IterableRequest(Endpoint.USERS_UPDATE, {"email": email, "dataFields": {"n": p}}, email, "s")
        )
        for e in range(per_person):
            body = {
                "email": email,
                "eventName": "Viewed",
                "id": f"{tag}-{p}-{e}",
                "createdAt": 1717171717,
                "dataFields": {"url": f"https://example.com/{e}", "i": e},
            }
            out.append(IterableRequest(Endpoint.EVENTS_TRACK, body, email, f"{tag}-{p}-{e}"))
    return out


async def run_mode(
    url: str, batching: bool, requests: list[IterableRequest], chunk: int
) -> tuple[float, Sender]:
    http = new_http_client(max_connections=16)
    sender = Sender(
        http,
        SenderConfig(base_url=url, api_key=SecretStr(KEY), batching=batching, limits={}, max_concurrency=16),
    )
    started = time.perf_counter()
    try:
        for i in range(0, len(requests), chunk):  # as the agent would: take_events(chunk, within)
            outcomes = await sender.deliver(requests[i : i + chunk])
            assert all(o.delivered for o in outcomes)
    finally:
        await http.close()
    return time.perf_counter() - started, sender


async def main(events: int, per_person: int, chunk: int) -> None:
    server = EmulatorServer(EmulatorConfig(api_keys=(KEY,), rate_limits_enabled=False))
    await server.start()
    try:
        results = {}
        for batching in (True, False):
            tag = "bulk" if batching else "single"
            requests = workload(events, per_person, tag)
            n_events = sum(1 for r in requests if r.endpoint is Endpoint.EVENTS_TRACK)
            elapsed, sender = await run_mode(server.url, batching, requests, chunk)
            results[tag] = n_events / elapsed
            calls = sum(sender.stats.calls.values())
            rate = n_events / elapsed
            line = f"{tag:>7}: {n_events} events in {elapsed:6.2f} s = {rate:9.0f} events/s, {calls} calls"
            if batching:
                fill = sender.stats.fill_ratio(Endpoint.EVENTS_TRACK_BULK, 1000)
                line += f", trackBulk fill ratio {fill:.2f} (of 1000 items)"
            print(line)
        counters = server.state.project.counters
        assert counters.duplicate_event_ids == 0
        print(f"speed-up of batching: {results['bulk'] / results['single']:.1f}x")
        print(
            f"# {datetime.now(UTC):%Y-%m-%d %H:%M} UTC, {platform.machine()}, "
            f"Python {platform.python_version()}, events per person {per_person}, deliver chunk {chunk}"
        )
    finally:
        await server.stop()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=5_000)
    parser.add_argument("--per-person", type=int, default=20)
    parser.add_argument("--chunk", type=int, default=1000, help="requests per deliver() call")
    parser.add_argument("--smoke", action="store_true", help="a few hundred events per mode")
    args = parser.parse_args()
    asyncio.run(main(400 if args.smoke else args.events, args.per_person, args.chunk))
