"""Latency at a steady rate: produce time -> the emulator receiving the event (p50/p95/p99).

A worker (default settings unless ``--env`` says otherwise; emulator limits off, own process) runs
and is warmed up first; then the workload is produced at ``--rate`` events/s for ``--seconds``.
Each event's wall-clock produce time is matched with its first arrival at the emulator (the
emulator records arrivals per event / purchase id). Target (issue 19 goal 4): p99 ≤ 0.3 s at 500/s.

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
        asyncio.run(h.create_topic(bootstrap, topic, 4))
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

            started = time.monotonic()
            asyncio.run(produce_encoded(records, bootstrap=bootstrap, topic=topic, rate=rate, on_sent=on_sent))
            produce_seconds = time.monotonic() - started
            want = expected(len(records), tag)
            cpu0 = sampler.cpu()
            h.wait_delivered(emulator, len(warm.event_ids) + len(want.event_ids),
                             len(warm.purchase_ids) + len(want.purchase_ids), timeout, sampler, (worker,))
            cpu = sampler.cpu() - cpu0
            arrivals = emulator.arrivals()
        finally:
            if worker is not None:
                worker.stop()
            emulator.stop()
    latencies = [arrivals[i] - t for i, t in sent_at.items() if i in arrivals]
    return {"events": n, "rate": n / produce_seconds, "measured": len(latencies),
            "p50": percentile(latencies, 50), "p95": percentile(latencies, 95), "p99": percentile(latencies, 99),
            "max": max(latencies), "mean": statistics.fmean(latencies), "cpu_after_produce": cpu,
            "load_before": load_before, "load_after": h.load_average()}


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
          f"windows: {windows(overrides)}; load {r['load_before']} -> {r['load_after']}")
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

Target: p99 ≤ {TARGET_P99} s at 500 events/s (issue 19 goal 4).
"""
    h.record(f"Latency at a steady {args.rate:g} events/s (`bench/bench_latency.py`)", body, smoke=args.smoke)


if __name__ == "__main__":
    main()
