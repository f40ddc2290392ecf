"""Start-up time against the partition count: seconds until a worker's ``/readyz`` answers 200.

For each partition count a worker starts on fresh topics and a fresh consumer group (it creates
the topics itself, so topic creation is included), is stopped, and starts again on the same group
(an existing group, offsets committed where there were records). The 1-partition figures of the
same run are the baseline: start-up must not grow with the partition count.

    python -m bench.bench_startup                      # 1, 4, 16 and 64 partitions
    python -m bench.bench_startup --partitions 12,32
    python -m bench.bench_startup --smoke              # 1 and 4 partitions, nothing recorded
"""

from __future__ import annotations

import argparse
import contextlib
import tempfile
import time
from pathlib import Path

import httpx

from bench import _harness as h


def seconds_until_ready(worker: h.Process, port: int, timeout: float) -> float:
    started = time.monotonic()
    deadline = started + timeout
    with httpx.Client(timeout=2) as client:
        while time.monotonic() < deadline:
            with contextlib.suppress(httpx.HTTPError):
                if client.get(f"http://127.0.0.1:{port}/readyz").status_code == 200:
                    return time.monotonic() - started
            if not worker.alive():
                raise RuntimeError(f"the worker exited while starting:\n{worker.log_tail()}")
            time.sleep(0.1)
    raise TimeoutError(f"not ready after {timeout:.0f} s:\n{worker.log_tail()}")


def start_up(bootstrap: str, emulator: h.Emulator, workdir: Path, partitions: int,
             timeout: float) -> tuple[float, float]:
    """Seconds to ready on fresh topics and a fresh group, then again on the same group."""
    run = h.unique("startup")
    env = h.worker_env(bootstrap, emulator.url, workdir / f"data-{partitions}", f"{run}.events",
                       FPI_TOPIC_PARTITIONS=str(partitions))
    times = []
    for attempt in ("fresh", "existing"):
        worker = h.start_worker(env, workdir / f"worker-{partitions}-{attempt}.log")
        try:
            times.append(seconds_until_ready(worker, int(env["FPI_WEB_PORT"]), timeout))
        finally:
            worker.stop()
    return times[0], times[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--partitions", default="1,4,16,64", help="comma-separated partition counts")
    parser.add_argument("--timeout", type=float, default=180, help="seconds to wait for each start")
    parser.add_argument("--smoke", action="store_true", help="1 and 4 partitions; records nothing")
    args = parser.parse_args()
    counts = [1, 4] if args.smoke else sorted({int(n) for n in args.partitions.split(",")} | {1})
    load_before = h.load_average()
    rows: list[tuple[int, float, float]] = []
    with h.broker() as bootstrap, tempfile.TemporaryDirectory(prefix="bench-startup-") as tmp:
        workdir = Path(tmp)
        emulator = h.Emulator(workdir, rate_limits=False)
        try:
            for partitions in counts:
                fresh, existing = start_up(bootstrap, emulator, workdir, partitions, args.timeout)
                rows.append((partitions, fresh, existing))
                print(f"{partitions:>4} partitions: ready after {fresh:6.1f} s fresh, {existing:6.1f} s on the "
                      "existing group", flush=True)
        finally:
            emulator.stop()
    base_fresh, base_existing = rows[0][1], rows[0][2]
    table = ["| partitions (each of 5 stream topics + changelogs) | ready, fresh topics and group | x 1 partition "
             "| ready, existing group | x 1 partition |", "|---:|---:|---:|---:|---:|"]
    for partitions, fresh, existing in rows:
        table.append(f"| {partitions} | {fresh:.1f} s | {fresh / base_fresh:.2f} | {existing:.1f} s "
                     f"| {existing / base_existing:.2f} |")
    body = "\n".join([
        f"Command: `{h.command_line()}`; {h.now_text()}; {h.machine()}; load before {load_before}.",
        "",
        "Seconds from starting `freshpaint-iterable worker` to `/readyz` 200, one worker, topic creation "
        "included in the fresh start. Baseline: the 1-partition start of the same run.",
        "",
        *table,
    ])
    print(body)
    h.record("Start-up time against partitions (bench_startup)", body, smoke=args.smoke)


if __name__ == "__main__":
    main()
