"""Table memory and start-up: a worker recovering 1,000,000 known identities, rocksdb:// vs memory://.

The ``identities`` changelog topic (``<app id>-identities-changelog``, 4 partitions, compacted) is
pre-filled directly with aiokafka in the app's format (raw bytes: person key -> ``identity_to_bytes``).
Start-up time is from process start to a marker event (an identify and its events, produced after
the pre-fill) reaching the emulator: the agents only run once recovery is complete. RSS is read
right then (VmRSS) and at its peak (VmHWM). rocksdb:// is also restarted on its warm data dir.

The baseline, in the same run on the same changelog: a worker with faust's own recovery loop, one
record at a time (``faust_patches.drain_changelogs_in_batches`` switched off in that process only).

    python -m bench.bench_tables                   # 1,000,000 identities, with the baseline
    python -m bench.bench_tables --no-baseline     # without it
    python -m bench.bench_tables --smoke           # 500 identities, no baseline
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import sys
import tempfile
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench import _harness as h
from bench.workload import encoded, expected, produce_encoded
from streams.model import Identity
from streams.stages import identity_to_bytes


def identity_records(count: int, tag: str) -> Iterator[tuple[bytes | None, bytes]]:
    """Generated while produced: as a list, 1,000,000 of them took 4 GB in the benchmark process
    (orjson's bytes keep a 4 KB buffer each)."""
    at = datetime(2026, 1, 1, tzinfo=UTC)
    for i in range(count):
        key = f"{tag}-u{i}"
        yield key.encode(), identity_to_bytes(
            Identity(person_key=key, user_id=key, email=f"{key}@example.com", first_identified_at=at,
                     last_identified_at=at))


_READY = "[^---Recovery]: Worker ready"

_FAUST_LOOP = ("import streams.faust_patches as p; p.drain_changelogs_in_batches = lambda recovery: None; "
               "from streams.cli import main; main()")
"""The worker with faust's own recovery loop: the batched one is not installed (the baseline)."""
BASELINE = "faust's loop"



def ready_after(log_path: Path, started_at: float) -> float | None:
    """Seconds from ``started_at`` (epoch) to faust's "Worker ready" in the worker's json log, if logged.

    Logged at info level only (``--log-level info``, the default here).
    """
    if not log_path.exists():
        return None
    for line in log_path.read_text(errors="replace").splitlines():
        if _READY in line:
            with contextlib.suppress(ValueError, KeyError):
                return datetime.fromisoformat(json.loads(line)["time"]).timestamp() - started_at
    return None


def start_and_measure(bootstrap: str, workdir: Path, emulator: h.Emulator, env: dict[str, str], name: str,
                      timeout: float, baseline: bool = False) -> dict[str, Any]:
    """Start a worker, produce a marker, wait for it at the emulator: seconds and RSS.

    Also when faust logged "Worker ready" (recovery done): a worker that is ready but delivers
    nothing is a stall, not a slow recovery, and the error says so.
    """
    marker_tag = h.unique("mark")
    marker = expected(20, marker_tag)
    started, started_at = time.monotonic(), time.time()
    log_path = workdir / f"{name.split(':')[0]}-{'baseline-' if baseline else ''}{int(time.time())}.log"
    worker = (h.Process([sys.executable, "-c", _FAUST_LOOP, "worker"], env, log_path) if baseline
              else h.start_worker(env, log_path))
    sampler = h.Sampler(worker)
    try:
        asyncio.run(produce_encoded(encoded(20, marker_tag), bootstrap=bootstrap, topic=env["FPI_SOURCE_TOPIC"]))
        before = emulator.counters()
        try:
            h.wait_delivered(emulator, before["unique_event_ids"] + len(marker.event_ids),
                             before["unique_purchase_ids"] + len(marker.purchase_ids), timeout, sampler, (worker,))
        except TimeoutError as exc:
            ready = ready_after(log_path, started_at)
            state = (f"faust logged 'Worker ready' after {ready:.1f} s, then delivered nothing for "
                     f"{time.time() - started_at - ready:.0f} s (stalled after recovery)" if ready is not None
                     else "no 'Worker ready' in the log (still recovering, or --log-level above info)")
            raise TimeoutError(f"{name}: {state}; worker log {log_path}\n{exc}") from exc
        seconds = time.monotonic() - started
        sampler.sample()
        rss = h.memory_kb(worker.pid, "VmRSS") / 1024
    finally:
        worker.stop(60)
    return {"name": name, "seconds": seconds, "ready_s": ready_after(log_path, started_at), "rss_mb": rss,
            "peak_rss_mb": sampler.peak_rss_mb()}


def run(identities: int, timeout: float, stores: tuple[str, ...] = ("memory://", "rocksdb://"),
        keep: bool = False, log_level: str = "info", baseline: bool = True) -> dict[str, Any]:
    load_before = h.load_average()
    results = []
    with h.broker() as bootstrap, contextlib.ExitStack() as stack:
        prefix = "bench-tables-"
        workdir = Path(tempfile.mkdtemp(prefix=prefix) if keep
                       else stack.enter_context(tempfile.TemporaryDirectory(prefix=prefix)))
        print(f"work dir (worker logs): {workdir}{'' if keep else ' (removed at the end; --keep keeps it)'}",
              flush=True)
        emulator = h.Emulator(workdir, rate_limits=False)
        try:
            for store in stores:
                topic = h.unique("bench-tables") + ".events"
                asyncio.run(h.create_topic(bootstrap, topic, 4))
                env = h.worker_env(bootstrap, emulator.url, workdir / f"data-{store[:4]}", topic,
                                   FPI_STORE=store, FPI_ITERABLE_RATE_LIMITS_OFF="true", FPI_LOG_LEVEL=log_level)
                changelog = f"{env['FPI_APP_ID']}-identities-changelog"
                asyncio.run(h.create_topic(bootstrap, changelog, 4, {"cleanup.policy": "compact"}))
                started = time.monotonic()
                asyncio.run(produce_encoded(identity_records(identities, h.unique("id")), bootstrap=bootstrap,
                                            topic=changelog))
                print(f"{store}: pre-filled {identities:,} identities in {time.monotonic() - started:.1f} s",
                      flush=True)
                if baseline:  # same app id and changelog, a fresh data dir
                    results.append(start_and_measure(
                        bootstrap, workdir, emulator, env | {"FPI_DATA_DIR": str(workdir / f"base-{store[:4]}")},
                        f"{store} ({BASELINE})", timeout, baseline=True))
                    print(results[-1], flush=True)
                results.append(start_and_measure(bootstrap, workdir, emulator, env, store, timeout))
                print(results[-1], flush=True)
                if store == "rocksdb://":
                    results.append(start_and_measure(bootstrap, workdir, emulator, env, "rocksdb:// (warm restart)",
                                                     timeout))
                    print(results[-1], flush=True)
        finally:
            with contextlib.suppress(Exception):
                emulator.stop()
    return {"identities": identities, "results": results, "load_before": load_before,
            "load_after": h.load_average()}


def _seconds(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.1f} s"


def _rate(identities: int, ready_s: float | None) -> str:
    """Identities per second of the time until faust's "Worker ready" (start-up included)."""
    return "n/a" if not ready_s else f"{identities / ready_s:,.0f}"


def _ratio(row: dict[str, Any], results: list[dict[str, Any]]) -> str:
    """`` (N.Nx faster than faust's loop)`` for a store's row when its baseline ran in the same run."""
    base = next((x for x in results if x["name"] == f"{row['name']} ({BASELINE})"), None)
    if base is None or not base["ready_s"] or not row["ready_s"]:
        return ""
    return f" ({base['ready_s'] / row['ready_s']:.1f}x faster than {BASELINE})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--identities", type=int, default=1_000_000)
    parser.add_argument("--timeout", type=float, default=600.0)
    parser.add_argument("--smoke", action="store_true")
    parser.add_argument("--stores", default="memory://,rocksdb://", help="comma-separated stores to measure")
    parser.add_argument("--keep", action="store_true", help="keep the work dir (worker logs, data dirs)")
    parser.add_argument("--no-baseline", action="store_true",
                        help="skip the baseline workers (faust's own recovery loop)")
    parser.add_argument("--log-level", default="info",
                        help="the worker's FPI_LOG_LEVEL (info logs recovery progress and 'Worker ready')")
    args = parser.parse_args()
    if args.smoke:
        args.identities, args.timeout = 500, 90.0
    r = run(args.identities, args.timeout, tuple(args.stores.split(",")), args.keep, args.log_level,
            baseline=not (args.no_baseline or args.smoke))
    results = r["results"]
    for row in results:
        row["rate"] = "-" if "warm" in row["name"] else _rate(r["identities"], row["ready_s"])
        row["ratio"] = _ratio(row, results)
        print(f"{row['name']:>26}: start-up to first delivery {row['seconds']:.1f} s (faust ready after "
              f"{_seconds(row['ready_s'])}: {row['rate']} identities/s{row['ratio']}), RSS {row['rss_mb']:.0f} MB, "
              f"peak {row['peak_rss_mb']:.0f} MB")
    rows = "\n".join(f"| {x['name']} | {x['seconds']:.1f} s | {_seconds(x['ready_s'])} | {x['rate']}{x['ratio']} | "
                     f"{x['rss_mb']:.0f} MB | {x['peak_rss_mb']:.0f} MB |" for x in results)
    body = f"""
- Command: `{h.command_line()}` (from the repository root; `--smoke` for a quick check)
- Date: {h.now_text()}
- Machine: {h.machine()}; load average {r['load_before']} -> {r['load_after']}
- Setup: {r['identities']:,} identities pre-filled into the `identities` changelog (4 partitions, compacted,
  the app's raw-bytes format); one worker started on a fresh data dir; start-up = process start until a
  marker identify + events produced after start reach the emulator (agents run only after recovery).
  "{BASELINE}": the same changelog recovered by a worker with faust's own recovery loop (one record at a
  time), on a fresh data dir just before the store's own row; the ratio is its time until ready over that row's.

| store | start-up incl. recovery | of which until faust "Worker ready" | identities/s to ready | RSS then | peak RSS |
|---|---:|---:|---:|---:|---:|
{rows}
"""
    h.record("Tables: known identities, rocksdb vs memory (`bench/bench_tables.py`)", body, smoke=args.smoke)


if __name__ == "__main__":
    main()
