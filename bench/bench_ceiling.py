"""One worker against the emulator enforcing Iterable's published limits (trackBulk 10 requests/s,
bulkUpdate 5 requests/s, 1,000 items per request; iterable-api.md §4): the share of the theoretical
bulk ceiling the worker reaches, and how many 429s it drew (target: ≥ 95%, zero 429s).

The theoretical ceiling of the workload: trackBulk carries 80% of the source events at most
10 x 1,000 events/s, so 12,500 source events/s (bulkUpdate allows 50,000 for the 10% identifies);
purchases have no published limit. Iterable's buckets (and the emulator's, ``rate_burst_seconds``)
hold one second of calls, so over a window of T seconds the limits allow ``CEILING x (T + 1 s)`` source
events; the share is what was delivered over that allowance. On long runs this is the delivered rate over
the ceiling; on short ones the burst is not mistaken for a rate above the ceiling.

    python -m bench.bench_ceiling                  # 20,000 events
    python -m bench.bench_ceiling --smoke
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from pathlib import Path
from typing import Any

from bench import _harness as h
from bench.workload import encoded, expected, produce_encoded
from streams.emulator.config import EmulatorConfig

TRACK_BULK_PER_S, BULK_UPDATE_PER_S, ITEMS = 10, 5, 1000
TRACK_SHARE, IDENTIFY_SHARE = 0.80, 0.10
CEILING = min(TRACK_BULK_PER_S * ITEMS / TRACK_SHARE, BULK_UPDATE_PER_S * ITEMS / IDENTIFY_SHARE)
BURST_SECONDS = EmulatorConfig().rate_burst_seconds  # the emulator command keeps the default


def share_of_ceiling(delivered: int, seconds: float) -> float:
    """Delivered source events over what the limits allow in ``seconds`` (bucket burst included)."""
    return delivered / (CEILING * (seconds + BURST_SECONDS))


def run(events: int, timeout: float) -> dict[str, Any]:
    load_before = h.load_average()
    with h.broker() as bootstrap, tempfile.TemporaryDirectory(prefix="bench-ceiling-") as tmp:
        workdir = Path(tmp)
        topic, tag = h.unique("bench-ceiling") + ".events", h.unique("ceil")
        asyncio.run(h.create_topic(bootstrap, topic, 4))
        produced = asyncio.run(produce_encoded(encoded(events, tag), bootstrap=bootstrap, topic=topic))
        want = expected(produced, tag)
        emulator = h.Emulator(workdir, rate_limits=True)
        try:
            result = h.run_workers(bootstrap, workdir, topic, emulator, len(want.event_ids),
                                   len(want.purchase_ids), timeout=timeout)
        finally:
            emulator.stop()
    counters = result["counters"]
    calls = counters["requests"].get("/api/events/trackBulk", 0)
    items = counters["items"].get("/api/events/trackBulk", 0)
    seconds = result["seconds"]
    return {"events": produced, "rate": produced / seconds, "share": share_of_ceiling(produced, seconds),
            "seconds": seconds, "rate_limited": counters["rate_limited_total"],
            "track_bulk_calls_per_s": calls / seconds,
            "fill": items / calls / ITEMS if calls else 0.0, "cpu_us": result["cpu"] / produced * 1e6,
            "load_before": load_before, "load_after": h.load_average()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=20_000)
    parser.add_argument("--timeout", type=float, default=900.0)
    parser.add_argument("--smoke", action="store_true")
    args = parser.parse_args()
    if args.smoke:
        args.events, args.timeout = 600, 90.0
    started = time.monotonic()
    r = run(args.events, args.timeout)
    print(f"{r['events']:,} events in {r['seconds']:.1f} s = {r['rate']:,.0f} source events/s; ceiling "
          f"{CEILING:,.0f}/s -> {r['share']:.1%} of the bulk ceiling; 429s: {r['rate_limited']}; trackBulk "
          f"{r['track_bulk_calls_per_s']:.2f} calls/s (limit {TRACK_BULK_PER_S}), fill {r['fill']:.2f}; "
          f"worker CPU {r['cpu_us']:.0f} µs/event; load {r['load_before']} -> {r['load_after']} "
          f"({time.monotonic() - started:.0f} s in all)")
    body = f"""
- Command: `{h.command_line()}` (from the repository root; `--smoke` for a quick check)
- Date: {h.now_text()}
- Machine: {h.machine()}; load average {r['load_before']} -> {r['load_after']}
- Setup: one worker with its default client-side limits, emulator (own process) enforcing Iterable's published
  limits; {r['events']:,} workload events pre-loaded on 4 partitions.

| figure | value |
|---|---:|
| theoretical bulk ceiling (trackBulk 10/s x 1,000 ÷ 80% tracked) | {CEILING:,.0f} source events/s |
| delivered, first to last record | {r['rate']:,.0f} source events/s |
| **share of the ceiling** (delivered ÷ ceiling x (window + 1 s burst)) | **{r['share']:.1%}** (target ≥ 95%) |
| **429 answers** | **{r['rate_limited']}** (target 0) |
| trackBulk calls/s (limit 10) | {r['track_bulk_calls_per_s']:.2f} |
| trackBulk fill (items per call ÷ 1,000) | {r['fill']:.2f} |
| worker CPU per event | {r['cpu_us']:.0f} µs |
"""
    h.record("Iterable's limits on (`bench/bench_ceiling.py`)", body, smoke=args.smoke)


if __name__ == "__main__":
    main()
