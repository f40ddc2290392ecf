"""Scale out: two worker processes (one app id, one consumer group) on the same topic versus one,
with the same workload size, emulator limits off; plus a paper estimate of partitions and pods for
50,000 and 500,000 events/s from the measured per-process rate and Iterable's per-project ceiling.

    python -m bench.bench_scale                    # 20,000 events per run
    python -m bench.bench_scale --smoke
"""

from __future__ import annotations

import argparse
import asyncio
import math
import tempfile
from pathlib import Path
from typing import Any

from bench import _harness as h
from bench.bench_ceiling import CEILING
from bench.workload import encoded, expected, produce_encoded

HEADROOM = 0.6
"""Run each process at most at 60% of its measured rate (rebalances, catch-up after an outage)."""


def one_run(bootstrap: str, workdir: Path, events: int, workers: int, timeout: float) -> dict[str, Any]:
    topic, tag = h.unique(f"bench-scale{workers}") + ".events", h.unique(f"sc{workers}")
    asyncio.run(h.create_topic(bootstrap, topic, 4))
    produced = asyncio.run(produce_encoded(encoded(events, tag), bootstrap=bootstrap, topic=topic))
    want = expected(produced, tag)
    emulator = h.Emulator(workdir, rate_limits=False)
    try:
        result = h.run_workers(bootstrap, workdir / f"w{workers}", topic, emulator, len(want.event_ids),
                               len(want.purchase_ids), workers=workers, timeout=timeout,
                               FPI_ITERABLE_RATE_LIMITS_OFF="true")
    except TimeoutError as exc:
        # A stall is a result too: report how far the run got instead of losing the figures.
        counters = emulator.counters()
        got = counters["unique_event_ids"] + counters["unique_purchase_ids"]
        print(f"{workers} worker(s) STALLED: {exc}".splitlines()[0], flush=True)
        return {"workers": workers, "events": produced, "seconds": timeout, "rate": 0.0, "cpu_us": 0.0,
                "emulator_cpu": 0.0, "stalled": f"{got:,} of {len(want.event_ids) + len(want.purchase_ids):,}"}
    finally:
        emulator.stop()
    return {"workers": workers, "events": produced, "seconds": result["seconds"],
            "rate": produced / result["seconds"], "cpu_us": result["cpu"] / produced * 1e6,
            "emulator_cpu": result["emulator_cpu"], "stalled": ""}


def estimate(rate_per_process: float, target: float) -> dict[str, Any]:
    processes = math.ceil(target / (rate_per_process * HEADROOM))
    partitions = 2 ** math.ceil(math.log2(max(1, processes * 2)))
    projects = math.ceil(target / CEILING)
    return {"target": target, "processes": processes, "partitions": partitions, "projects": projects}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=20_000)
    parser.add_argument("--timeout", type=float, default=600.0)
    parser.add_argument("--smoke", action="store_true")
    args = parser.parse_args()
    if args.smoke:
        args.events, args.timeout = 200, 90.0
    load_before = h.load_average()
    with h.broker() as bootstrap, tempfile.TemporaryDirectory(prefix="bench-scale-") as tmp:
        workdir = Path(tmp)
        for sub in ("w1", "w2"):
            (workdir / sub).mkdir()
        runs = [one_run(bootstrap, workdir, args.events, n, args.timeout) for n in (1, 2)]
    load_after = h.load_average()
    one, two = runs
    speedup = two["rate"] / one["rate"] if one["rate"] else 0.0
    for r in runs:
        print(f"{r['workers']} worker(s): {r['rate']:,.0f} events/s over {r['seconds']:.1f} s, "
              f"CPU {r['cpu_us']:.0f} µs/event (all workers), emulator CPU {r['emulator_cpu']:.1f} s")
    print(f"two workers / one: {speedup:.2f}x; load {load_before} -> {load_after}")
    estimates = [estimate(one["rate"] or 1.0, target) for target in (50_000, 500_000)]
    for e in estimates:
        print(f"{e['target']:,} events/s: {e['processes']} worker processes (1 core each), >= {e['partitions']} "
              f"partitions, >= {e['projects']} Iterable projects at {CEILING:,.0f} events/s each")
    rows = "\n".join(f"| {r['workers']} | {r['events']:,} | {r['rate']:,.0f} | {r['cpu_us']:.0f} | {r['seconds']:.1f} |"
                     f" {('stalled: ' + r['stalled'] + ' records delivered') if r['stalled'] else 'complete'} |"
                     for r in runs)
    est_rows = "\n".join(
        f"| {e['target']:,} | {e['processes']:,} | {e['partitions']:,} | {e['projects']} |" for e in estimates)
    body = f"""
- Command: `{h.command_line()}` (from the repository root; `--smoke` for a quick check)
- Date: {h.now_text()}
- Machine: {h.machine()}; load average {load_before} -> {load_after}
- Setup: same workload size per run on a fresh 4-partition topic, emulator (own process) with limits off,
  the workers of a run share one app id (consumer group) and split the partitions.

| workers | events | events/s | CPU µs/event (all workers) | window | outcome |
|---:|---:|---:|---:|---:|---|
{rows}

Two workers deliver **{speedup:.2f}x** one worker. On this 2-vCPU machine the broker, the emulator and the
workers share two cores, so the second process mostly competes for the same CPU; on separate pods the
expectation is close to linear up to one process per partition (each process owns whole partitions and
their table shards).

Paper estimate (measured {one['rate']:,.0f} events/s per process, run at {HEADROOM:.0%} of it; partitions
= next power of two ≥ 2 x processes so a process can be added without re-partitioning; one Iterable project
accepts at most {CEILING:,.0f} workload events/s through trackBulk, so beyond that the load must be split
per project, each project with its own API key and its own sender limits):

| target events/s | worker processes (1 core) | partitions | Iterable projects needed |
|---:|---:|---:|---:|
{est_rows}
"""
    h.record("Scale out (`bench/bench_scale.py`)", body, smoke=args.smoke)


if __name__ == "__main__":
    main()
