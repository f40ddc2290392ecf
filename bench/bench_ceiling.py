"""One worker against the emulator enforcing Iterable's limits: the share of the ceiling the worker reaches,
how many 429s it drew (target: ≥ 95%, zero 429s), and how much of each endpoint's budget it used.

The ceiling is computed from every endpoint's budget for the workload's mix, measured in the run: an endpoint
allowing ``L`` calls/s of ``k`` items (1,000 for trackBulk and bulkUpdate, 1 otherwise), carrying ``n`` items
per source event, allows ``L x k ÷ n`` source events/s; the lowest of these binds. Published limits come from
iterable-api.md §4. trackPurchase, updateCart and updateEmail have none: the emulator enforces a *hidden*
limit for them (``--hidden-limit``, default trackPurchase at 150 calls/s: a worker needs most of a core for
its 3,000 events/s, so on a loaded machine its CPU binds first; ``=30`` puts the limit well below that), which
the sender has to find by probing from its starting guess (``DEFAULT_LIMITS``). The ceiling at that guess is
printed too: it is what a sender that trusted it would reach. Iterable's buckets (and the emulator's) hold one
second of calls, so over a window of T seconds the limits allow ``CEILING x (T + 1 s)`` source events; the
share is what was delivered over that allowance.

    python -m bench.bench_ceiling                  # 20,000 events
    python -m bench.bench_ceiling --events 100000 --hidden-limit /api/commerce/trackPurchase=400
    python -m bench.bench_ceiling --smoke
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from bench import _harness as h
from bench.workload import encoded, expected, produce_encoded
from streams.emulator.config import EmulatorConfig, parse_limits
from streams.iterable.ratelimit import DEFAULT_LIMITS
from streams.model import Endpoint

ITEMS_PER_CALL = {"/api/events/trackBulk": 1000, "/api/users/bulkUpdate": 1000}
CEILING = 10 * ITEMS_PER_CALL["/api/events/trackBulk"] / 0.80
"""Workload events/s one Iterable project takes at most whatever its unpublished limits are: trackBulk's
published 10 calls/s of 1,000 for the 80% tracked events (bench_scale sizes projects by it)."""
BURST_SECONDS = EmulatorConfig().rate_burst_seconds  # the emulator command keeps the default
DEFAULT_HIDDEN = ("/api/commerce/trackPurchase=150",)
UNPUBLISHED = ("/api/commerce/trackPurchase", "/api/commerce/updateCart", "/api/users/updateEmail")  # §4
GUESSED = {path: DEFAULT_LIMITS[Endpoint(path)] for path in UNPUBLISHED}
"""The sender's starting rate where Iterable publishes no limit (its whole budget, before probing)."""


def ceilings(limits: Mapping[str, float], items: Mapping[str, int], events: int) -> dict[str, float]:
    """Source events/s each limited endpoint allows, for the mix of ``items`` per endpoint over ``events``."""
    return {path: limits[path] * ITEMS_PER_CALL.get(path, 1) * events / n
            for path, n in items.items() if n and path in limits}


def budget_use(timeline: Mapping[str, Any], limits: Mapping[str, float]) -> dict[str, dict[str, float]]:
    """Per limited endpoint: calls/s, share of its limit used, and share of seconds at ≥ 90% of it, over the
    whole seconds of the run (the first and last, partly idle, left out)."""
    seconds = timeline["seconds"]
    busy = sorted({int(s) for path, counts in seconds.items() if not path.endswith(" 429") for s in counts})
    window = list(range(busy[0] + 1, busy[-1])) if len(busy) > 2 else busy
    out: dict[str, dict[str, float]] = {}
    for path, limit in limits.items():
        counts = seconds.get(path)
        if not counts or not window:
            continue
        per_second = [counts.get(str(s), 0) for s in window]
        out[path] = {"calls_per_s": sum(per_second) / len(window), "use": sum(per_second) / len(window) / limit,
                     "saturated": sum(1 for c in per_second if c >= 0.9 * limit) / len(window)}
    return out


def share_of_ceiling(delivered: int, seconds: float, ceiling: float) -> float:
    """Delivered source events over what the limits allow in ``seconds`` (bucket burst included)."""
    return delivered / (ceiling * (seconds + BURST_SECONDS))


def run(events: int, timeout: float, hidden: Mapping[str, float], overrides: Mapping[str, str] | None = None,
        keep_log: Path | None = None) -> dict[str, Any]:
    load_before = h.load_average()
    with h.broker() as bootstrap, tempfile.TemporaryDirectory(prefix="bench-ceiling-") as tmp:
        workdir = Path(tmp)
        topic, tag = h.unique("bench-ceiling") + ".events", h.unique("ceil")
        asyncio.run(h.create_topic(bootstrap, topic, 4))
        produced = asyncio.run(produce_encoded(encoded(events, tag), bootstrap=bootstrap, topic=topic))
        want = expected(produced, tag)
        emulator = h.Emulator(workdir, rate_limits=True, hidden_limits=hidden)
        try:
            result = h.run_workers(bootstrap, workdir, topic, emulator, len(want.event_ids),
                                   len(want.purchase_ids), timeout=timeout, **(overrides or {}))
        finally:
            emulator.stop()
            if keep_log is not None and (workdir / "worker-0.log").exists():
                shutil.copyfile(workdir / "worker-0.log", keep_log)
    counters, timeline = result["counters"], result["timeline"]
    limits: dict[str, float] = timeline["limits"]
    items = {path: n for path, n in counters["items"].items() if path in limits or path in GUESSED}
    enforced = ceilings(limits, items, produced)
    guessed = ceilings({**limits, **GUESSED}, items, produced)
    binding = min(enforced, key=enforced.__getitem__)
    seconds = result["seconds"]
    calls = counters["requests"].get("/api/events/trackBulk", 0)
    return {"events": produced, "rate": produced / seconds, "seconds": seconds, "limits": limits,
            "hidden": set(timeline["hidden"]), "items": items, "ceilings": enforced, "guessed": guessed,
            "binding": binding, "ceiling": enforced[binding],
            "share": share_of_ceiling(produced, seconds, enforced[binding]),
            "rate_limited": counters["rate_limited_total"], "rate_limited_by": counters["rate_limited"],
            "use": budget_use(timeline, limits),
            "fill": counters["items"].get("/api/events/trackBulk", 0) / calls / 1000 if calls else 0.0,
            "cpu_us": result["cpu"] / produced * 1e6, "core_share": result["cpu"] / seconds,
            "series": series(timeline, binding),
            "start": {path: series(timeline, path, 20) for path in sorted(timeline["seconds"])
                      if not path.endswith(" 429")},
            "load_before": load_before, "load_after": h.load_average()}


def series(timeline: Mapping[str, Any], path: str, limit: int = 90) -> str:
    """Calls answered each second (first ``limit`` seconds of the run) at ``path``, 429s in brackets."""
    seconds = timeline["seconds"]
    calls, refused = seconds.get(path, {}), seconds.get(f"{path} 429", {})
    busy = sorted(int(s) for counts in seconds.values() for s in counts)
    if not busy:
        return ""
    out = []
    for s in range(busy[0], min(busy[-1], busy[0] + limit) + 1):
        n, r = calls.get(str(s), 0), refused.get(str(s), 0)
        out.append(f"{n}[{r}]" if r else str(n))
    return " ".join(out)


def _kind(path: str, r: Mapping[str, Any]) -> str:
    if path in r["hidden"]:
        return f"hidden {r['limits'][path]:g}/s (sender starts at {GUESSED.get(path, 0):g})"
    if path in r["limits"]:
        return f"published {r['limits'][path]:g}/s"
    return f"none enforced (sender starts at {GUESSED[path]:g})"


def table(r: Mapping[str, Any]) -> str:
    rows = ["| endpoint | limit | items per 1,000 events | ceiling (events/s) | at the sender's guess | calls/s used "
            "| **use of budget** | seconds ≥ 90% | 429s |", "|---|---|---:|---:|---:|---:|---:|---:|---:|"]
    for path in sorted(r["items"], key=lambda p: r["ceilings"].get(p, float("inf"))):
        use = r["use"].get(path)
        ceiling = r["ceilings"].get(path)
        used = (f"{use['calls_per_s']:.1f} | **{use['use']:.0%}** | {use['saturated']:.0%}" if use
                else "- | - | -")
        rows.append(
            f"| `{path}`{' **(binds)**' if path == r['binding'] else ''} | {_kind(path, r)} "
            f"| {r['items'][path] * 1000 / r['events']:.0f} | {f'{ceiling:,.0f}' if ceiling else '∞'} "
            f"| {r['guessed'].get(path, 0):,.0f} | {used} | {r['rate_limited_by'].get(path, 0)} |")
    return "\n".join(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=20_000)
    parser.add_argument("--timeout", type=float, default=900.0)
    parser.add_argument("--hidden-limit", action="append", metavar="PATH=CALLS_PER_S",
                        help=f"a limit the emulator enforces without publishing it (default {DEFAULT_HIDDEN[0]})")
    parser.add_argument("--env", action="append", default=[], metavar="FPI_NAME=VALUE",
                        help="a setting for the worker (diagnosis: FPI_LOG_LEVEL=info)")
    parser.add_argument("--keep-log", type=Path, metavar="PATH", help="copy the worker's log there")
    parser.add_argument("--smoke", action="store_true")
    args = parser.parse_args()
    if args.smoke:
        args.events, args.timeout = 600, 90.0
    hidden = parse_limits(args.hidden_limit or list(DEFAULT_HIDDEN))
    started = time.monotonic()
    overrides = dict(item.split("=", 1) for item in args.env)
    r = run(args.events, args.timeout, hidden, overrides, args.keep_log)
    guess = min(r["guessed"].values())
    print(f"{r['events']:,} events in {r['seconds']:.1f} s = {r['rate']:,.0f} source events/s; ceiling "
          f"{r['ceiling']:,.0f}/s bound by {r['binding']} -> {r['share']:.1%} of the ceiling (at the sender's "
          f"starting guesses it would be {guess:,.0f}/s); 429s: {r['rate_limited']}; trackBulk fill "
          f"{r['fill']:.2f}; worker CPU {r['cpu_us']:.0f} µs/event; load {r['load_before']} -> {r['load_after']} "
          f"({time.monotonic() - started:.0f} s in all)")
    print(f"  worker CPU {r['core_share']:.0%} of a core over the window; {r['binding']} calls each second "
          f"(429s in brackets): {r['series']}")
    print("  every endpoint's calls in the run's first 20 seconds (429s in brackets):")
    for path, start in r["start"].items():
        print(f"    {path}: {start}")
    probing = sum(n for path, n in r["rate_limited_by"].items() if path in UNPUBLISHED)
    print(f"  429s at published limits: {r['rate_limited'] - probing} (target 0); while finding the unpublished "
          f"ones (one overshoot each, at the least): {probing}")
    for path, use in sorted(r["use"].items()):
        print(f"  {path}: {use['calls_per_s']:.1f} calls/s of {r['limits'][path]:g} = {use['use']:.0%} of its "
              f"budget, {use['saturated']:.0%} of seconds at >= 90%; 429s {r['rate_limited_by'].get(path, 0)}")
    body = f"""
- Command: `{h.command_line()}` (from the repository root; `--smoke` for a quick check)
- Date: {h.now_text()}
- Machine: {h.machine()}; load average {r['load_before']} -> {r['load_after']}
- Setup: one worker with its default client-side limits (probing where none is published), emulator (own
  process) enforcing Iterable's published limits and the hidden ones given; {r['events']:,} workload events
  pre-loaded on 4 partitions.

| figure | value |
|---|---:|
| ceiling: lowest of every endpoint's (below), bound by `{r['binding']}` | {r['ceiling']:,.0f} source events/s |
| ceiling at the sender's starting guesses for unpublished limits | {guess:,.0f} source events/s |
| delivered, first to last record | {r['rate']:,.0f} source events/s |
| **share of the ceiling** (delivered ÷ ceiling x (window + 1 s burst)) | **{r['share']:.1%}** (target ≥ 95%) |
| **429 answers** | **{r['rate_limited']}** (target 0), of which at published limits: {r['rate_limited'] - probing} |
| trackBulk fill (items per call ÷ 1,000) | {r['fill']:.2f} |
| worker CPU per event (one core allows {1e6 / r['cpu_us']:,.0f} events/s) | {r['cpu_us']:.0f} µs |
| worker CPU over the window (on a machine whose load average is given above) | {r['core_share']:.0%} of a core |

Each endpoint's budget and its use over the run's whole seconds:

{table(r)}

`{r['binding']}` calls answered each second of the run (429s in brackets), from the emulator's timeline:
`{r['series']}`
"""
    h.record("Iterable's limits on (`bench/bench_ceiling.py`)", body, smoke=args.smoke)


if __name__ == "__main__":
    main()
