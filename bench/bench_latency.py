"""Latency at a steady rate: produce time -> the emulator receiving the event (p50/p95/p99).

A worker (default settings unless ``--env`` says otherwise; emulator limits off, own process) runs
and is warmed up first; then the workload is produced at ``--rate`` events/s for ``--seconds``.
Each event's wall-clock produce time is matched with its first arrival at the emulator (the
emulator records arrivals per event / purchase id). Target (issue 19 goal 4): p99 ≤ 0.3 s at 500/s.

After the run, the time is split per hop: the Kafka timestamp of the source record, of the frame on each
internal topic that holds it (frames name their source record), and the emulator's arrival. Each hop is
the stage that wrote the next record: its consumer fetch, take window, work and producer linger.

    python -m bench.bench_latency                  # 500 events/s for 60 s
    python -m bench.bench_latency --env FPI_SEND_LINGER_SECONDS=0.2   # another take window
    python -m bench.bench_latency --smoke          # 100 events/s for 2 s
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from bench import _harness as h
from bench.workload import encoded, events, expected, produce_encoded
from streams.settings import Settings

TARGET_P99 = 0.3


def _ids(n: int, tag: str) -> list[str | None]:
    """Per produced index, the Iterable id it becomes (None: identify or anonymous, nothing tracked)."""
    out: list[str | None] = []
    for message in events(n, tag):
        if message["type"] == "identify" or "userId" not in message:
            out.append(None)
        elif message.get("event") == "Order Completed":
            out.append(message["properties"]["order_id"])
        else:
            out.append(message["messageId"])
    return out


PARTITIONS = 4
"""Of the source topic (created here) and of the worker's topics (``worker_env``)."""

HOPS = ("route", "resolve", "apply", "send")
"""Source -> by-device -> by-person -> requests -> Iterable: each hop named after the stage that ends it."""


async def _read_all(bootstrap: str, topic: str) -> list[Any]:
    """Every record of ``topic`` (read from the start to the end offsets of this moment)."""
    from aiokafka import AIOKafkaConsumer, TopicPartition  # type: ignore[import-untyped]

    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False,
                                auto_offset_reset="earliest", max_partition_fetch_bytes=16 << 20)
    await consumer.start()
    try:
        tps = [TopicPartition(topic, p) for p in range(PARTITIONS)]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        ends = await consumer.end_offsets(tps)
        records: list[Any] = []
        while [tp for tp in tps if await consumer.position(tp) < ends[tp]]:
            for batch in (await consumer.getmany(timeout_ms=1000)).values():
                records.extend(batch)
        return records
    finally:
        await consumer.stop()


async def hop_times(bootstrap: str, source: str, internal: tuple[str, str, str],
                    arrivals: dict[str, float]) -> tuple[dict[str, list[float]], dict[str, tuple[int, int]]]:
    """Seconds spent in each hop (``HOPS``) per source record that reached Iterable, and the frames and records
    each internal topic received (the batch sizes of the stage that wrote it)."""
    from streams.codecs import decode_frame, decode_request

    at: dict[tuple[int, int], list[float]] = {
        (r.partition, r.offset): [r.timestamp / 1000] for r in await _read_all(bootstrap, source)}
    last: dict[tuple[int, int], str] = {}
    frames: dict[str, tuple[int, int]] = {}
    for n, topic in enumerate(internal):
        records = await _read_all(bootstrap, topic)
        items = [(record, decode_frame(record.value)) for record in records]
        frames[HOPS[n]] = (len(records), sum(len(frame) for _, frame in items))
        for record, frame in items:
            for item in frame:
                _, partition, offset = item.source
                times = at.get((partition or 0, offset or 0))
                if times is None or len(times) != n + 1:
                    continue  # not from the source topic, or a second request of the same event
                times.append(record.timestamp / 1000)
                if n == 2:
                    request = decode_request(item.value)
                    last[(partition or 0, offset or 0)] = next(
                        (i for i in (str(request.body.get("id")), request.source_event_id) if i in arrivals), "")
    hops: dict[str, list[float]] = {hop: [] for hop in HOPS}
    for coordinates, times in at.items():
        arrival = arrivals.get(last.get(coordinates, ""))
        if len(times) == 4 and arrival is not None:
            for hop, (start, end) in zip(HOPS, zip(times, [*times[1:], arrival], strict=True), strict=True):
                hops[hop].append(end - start)
    return hops, frames


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * len(ordered)) - 1))]


def windows(env: dict[str, str]) -> str:
    """The take windows the worker runs with: the settings' defaults unless ``env`` sets them."""
    defaults = Settings.model_fields
    def pick(name: str) -> str:
        return env.get(f"FPI_{name.upper()}", str(defaults[name].default))
    return (f"first stage {pick('stage_batch_seconds')} s, frame stages {pick('frame_take_seconds')} s, "
            f"send {pick('send_linger_seconds')} s")


def run(rate: float, seconds: float, timeout: float, overrides: dict[str, str]) -> dict[str, Any]:
    load_before = h.load_average()
    n = int(rate * seconds)
    with h.broker() as bootstrap, tempfile.TemporaryDirectory(prefix="bench-latency-") as tmp:
        workdir = Path(tmp)
        topic = h.unique("bench-latency") + ".events"
        asyncio.run(h.create_topic(bootstrap, topic, PARTITIONS))
        emulator = h.Emulator(workdir, rate_limits=False)
        worker = None
        try:
            env = h.worker_env(bootstrap, emulator.url, workdir / "data", topic, FPI_ITERABLE_RATE_LIMITS_OFF="true",
                               **overrides)
            worker = h.start_worker(env, workdir / "worker.log")
            warm_tag = h.unique("warm")
            warm = expected(40, warm_tag)
            asyncio.run(produce_encoded(encoded(40, warm_tag), bootstrap=bootstrap, topic=topic))
            sampler = h.Sampler(worker)
            h.wait_delivered(emulator, len(warm.event_ids), len(warm.purchase_ids), 120, sampler, (worker,))
            tag = h.unique("lat")
            records = list(encoded(n, tag))
            ids = _ids(len(records), tag)
            sent_at: dict[str, float] = {}

            def on_sent(index: int, t: float) -> None:
                if ids[index] is not None:
                    sent_at.setdefault(str(ids[index]), t)

            cpu0 = sampler.cpu()
            started = time.monotonic()
            asyncio.run(produce_encoded(records, bootstrap=bootstrap, topic=topic, rate=rate, on_sent=on_sent))
            produce_seconds = time.monotonic() - started
            want = expected(len(records), tag)
            h.wait_delivered(emulator, len(warm.event_ids) + len(want.event_ids),
                             len(warm.purchase_ids) + len(want.purchase_ids), timeout, sampler, (worker,))
            cpu = sampler.cpu() - cpu0
            arrivals = emulator.arrivals()
            app = env["FPI_APP_ID"]
            hops, frames = asyncio.run(hop_times(bootstrap, topic, (f"{app}-by-device", env["FPI_BY_PERSON_TOPIC"],
                                                            env["FPI_REQUESTS_TOPIC"]), arrivals))
        finally:
            if worker is not None:
                worker.stop()
            emulator.stop()
    latencies = [arrivals[i] - t for i, t in sent_at.items() if i in arrivals]
    return {"events": n, "rate": n / produce_seconds, "measured": len(latencies),
            "p50": percentile(latencies, 50), "p95": percentile(latencies, 95), "p99": percentile(latencies, 99),
            "max": max(latencies), "mean": statistics.fmean(latencies), "worker_cpu": cpu, "hops": hops,
            "frames": frames,
            "load_before": load_before, "load_after": h.load_average()}


def hop_table(hops: dict[str, list[float]], frames: dict[str, tuple[int, int]]) -> str:
    rows = ["| hop | records | p50 | p95 | p99 | mean | frames written (records per frame) |",
            "|---|---:|---:|---:|---:|---:|---:|"]
    for hop, values in hops.items():
        if values:
            written, items = frames.get(hop, (0, 0))
            per_frame = f"{written:,} ({items / written:.1f})" if written else "-"
            rows.append(f"| {hop} | {len(values):,} | {percentile(values, 50):.3f} s | {percentile(values, 95):.3f} s "
                        f"| {percentile(values, 99):.3f} s | {statistics.fmean(values):.3f} s | {per_frame} |")
    return "\n".join(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=float, default=500.0)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--timeout", type=float, default=600.0)
    parser.add_argument("--env", action="append", default=[], metavar="FPI_NAME=VALUE",
                        help="a worker setting for this run (e.g. a take window)")
    parser.add_argument("--smoke", action="store_true")
    args = parser.parse_args()
    if args.smoke:
        args.rate, args.seconds, args.timeout = 100.0, 2.0, 90.0
    overrides = dict(item.split("=", 1) for item in args.env)
    r = run(args.rate, args.seconds, args.timeout, overrides)
    print(f"{r['events']:,} events at {r['rate']:.0f}/s; {r['measured']:,} tracked records: p50 {r['p50']:.3f} s, "
          f"p95 {r['p95']:.3f} s, p99 {r['p99']:.3f} s, max {r['max']:.3f} s (target p99 ≤ {TARGET_P99} s); "
          f"windows: {windows(overrides)}; worker CPU {r['worker_cpu'] / r['events'] * 1e6:.0f} µs/event; "
          f"load {r['load_before']} -> {r['load_after']}")
    table = hop_table(r["hops"], r["frames"])
    print(table)
    body = f"""
- Command: `{h.command_line()}` (from the repository root; `--smoke` for a quick check)
- Date: {h.now_text()}
- Machine: {h.machine()}; load average {r['load_before']} -> {r['load_after']}
- Setup: one warmed-up worker (take windows: {windows(overrides)}; limits off), emulator in its own process;
  {r['events']:,} workload events produced at a steady {r['rate']:.0f} events/s; latency = emulator arrival
  (wall clock) - produce call, for the {r['measured']:,} events and purchases Iterable receives.

| p50 | p95 | p99 | max | mean |
|---:|---:|---:|---:|---:|
| {r['p50']:.3f} s | {r['p95']:.3f} s | **{r['p99']:.3f} s** | {r['max']:.3f} s | {r['mean']:.3f} s |

Worker CPU from the first produced event to the last delivery: {r['worker_cpu'] / r['events'] * 1e6:.0f} µs per event.

Per hop (Kafka timestamps of the record on each topic, then the arrival; the stage that ends the hop):

{table}

Target: p99 ≤ {TARGET_P99} s at 500 events/s (issue 19 goal 4).
"""
    h.record(f"Latency at a steady {args.rate:g} events/s (`bench/bench_latency.py`)", body, smoke=args.smoke)


if __name__ == "__main__":
    main()
