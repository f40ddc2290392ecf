"""End to end on a real broker: one worker process against the emulator with rate limits off, then
the naive forwarder (one HTTP request per event) on the same topic and data.

The workload (``bench/workload.py``) is pre-loaded on a 4-partition topic before the worker starts.
Throughput is source events per second from the first to the last record the emulator received;
worker CPU is /proc utime+stime over the same window; peak RSS is the worker's VmHWM. The emulator
runs in its own process (``python -m streams emulator --no-rate-limits``). The same CPU is also cut into slices
of about 100,000 delivered events (a tenth of a shorter run) with a verdict for issue 19 goal 5 (``bench/_slices.py``).

    python -m bench.bench_e2e                      # 1,000,000 events (needs ~2 GB free for the emulator)
    python -m bench.bench_e2e --events 200000
    python -m bench.bench_e2e --smoke              # 1,000 events, seconds; never writes RESULTS.md
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

import orjson

from bench import _harness as h
from bench._budget import PARTS, budget, samples_by_part, samples_by_thread
from bench._slices import PIPELINE, slice_size, slices, slices_line, verdict, verdict_line
from bench.workload import encoded, expected, produce_encoded


def run(events: int, naive_seconds: float, timeout: float, smoke: bool,
        worker_overrides: dict[str, str] | None = None, spy: str = "nonblocking") -> dict[str, Any]:
    load_before = h.load_average()
    with h.broker() as bootstrap, tempfile.TemporaryDirectory(prefix="bench-e2e-") as tmp:
        workdir = Path(tmp)
        topic = h.unique("bench-e2e") + ".events"
        tag = h.unique("e2e")
        asyncio.run(h.create_topic(bootstrap, topic, 4))
        started = time.monotonic()
        produced = asyncio.run(produce_encoded(encoded(events, tag), bootstrap=bootstrap, topic=topic))
        produce_seconds = time.monotonic() - started
        print(f"pre-loaded {produced} events on {topic} (4 partitions) in {produce_seconds:.1f} s", flush=True)
        want = expected(produced, tag)

        emulator = h.Emulator(workdir, rate_limits=False)
        try:
            env = h.worker_env(bootstrap, emulator.url, workdir / "data", topic,
                               FPI_ITERABLE_RATE_LIMITS_OFF="true", **(worker_overrides or {}))
            gc_file = workdir / "worker-gc.json"
            worker = h.Process([sys.executable, "-m", "bench._gc_worker"], {**env, "BENCH_GC_FILE": str(gc_file)},
                               workdir / "worker.log")
            spy = Profiler(worker.pid, workdir, spy)
            sampler = h.Sampler(worker)
            emulator_sampler = h.Sampler(emulator.process)
            emulator_cpu0 = emulator_sampler.cpu()
            log = DeliveryLog(emulator, sampler)
            try:
                cpu = h.wait_delivered(log, len(want.event_ids), len(want.purchase_ids), timeout, sampler,  # type: ignore[arg-type]
                                       (worker,), on_first=spy.start)
                sampler.sample()
                samples = spy.stop()
            finally:
                spy.stop()
                worker.stop()
            emulator_cpu = emulator_sampler.cpu() - emulator_cpu0
            counters = emulator.counters()
            arrivals = emulator.arrivals()
            seconds = h.window_seconds(*h.span(arrivals))
            worker_result = {
                "seconds": seconds,
                "events_per_s": produced / seconds,
                "iterable_records_per_s": (len(arrivals) + counters["users_created"]) / seconds,
                "cpu_ms_per_1000": (cpu["cpu_last"] - cpu["cpu_first"]) / produced * 1e6,
                "cpu_total_s": cpu["cpu_last"],
                "peak_rss_mb": sampler.peak_rss_mb(),
                "emulator_cpu_s": emulator_cpu,
                "duplicates": counters["duplicate_event_ids"],
                "calls": counters["requests"],
            }
            records_per_event = (len(want.event_ids) + len(want.purchase_ids)) / produced
            worker_result["slice_size"] = slice_size(produced)
            worker_result["slices"] = slices([(records / records_per_event, cpu_s) for records, cpu_s in log.points],
                                             worker_result["slice_size"])
            worker_result["gc"] = orjson.loads(gc_file.read_text()) if gc_file.exists() else None
            worker_result["budget"] = cpu_budget(samples, worker_result["cpu_ms_per_1000"], gc_file)
            if worker_result["budget"] is not None:
                worker_result["budget"]["thread_share"] = (spy.threads["thread"] / sum(spy.threads.values())
                                                           if spy.threads else 0.0)
                worker_result["budget"]["inside"] = inside(spy.frames, samples or Counter(),
                                                           worker_result["budget"]["parts"])
            missing = (want.event_ids | want.purchase_ids) - arrivals.keys()
            assert not missing, f"{len(missing)} expected records never arrived"

            emulator.reset()
            naive = h.Process([sys.executable, "-m", "bench.naive_forwarder", "--bootstrap", bootstrap,
                               "--topic", topic, "--url", emulator.url, "--group", h.unique("naive"),
                               "--events", str(produced), "--seconds", str(naive_seconds)],
                              {"FPI_ITERABLE_API_KEY": h.EMULATOR_KEY}, workdir / "naive.log")
            naive_sampler = h.Sampler(naive)
            cpu_naive = 0.0
            while naive.alive():
                cpu_naive = naive_sampler.cpu()
                time.sleep(0.2)
            if naive.proc.returncode != 0:
                raise RuntimeError(f"naive forwarder failed:\n{naive.log_tail()}")
            counts = orjson.loads(naive.log_path.read_text().strip().splitlines()[-1])
            naive_arrivals = emulator.arrivals()
            naive_window = h.window_seconds(*h.span(naive_arrivals))
            naive_result = {
                "consumed": counts["consumed"],
                "requests": counts["requests"],
                "failed": counts["failed"],
                "seconds": naive_window,
                "events_per_s": counts["consumed"] / naive_window,
                "cpu_ms_per_1000": cpu_naive / counts["consumed"] * 1e6,  # includes start-up
            }
        finally:
            emulator.stop()
        bare = aiokafka_floor(bootstrap, topic, produced, workdir, timeout)
        floor = faust_floor(bootstrap, topic, produced, workdir, timeout, inline_delivery=False)
        floor_inline = faust_floor(bootstrap, topic, produced, workdir, timeout, inline_delivery=True)
    return {"events": produced, "produce_seconds": produce_seconds, "worker": worker_result,
            "naive": naive_result, "ratio": worker_result["events_per_s"] / naive_result["events_per_s"],
            "floor": floor, "floor_inline": floor_inline, "bare": bare,
            "load_before": load_before, "load_after": h.load_average()}


class DeliveryLog:
    """The emulator as ``wait_delivered`` polls it (every 0.5 s once records flow), noting at each poll from the
    first delivery on the records delivered so far and the worker's CPU seconds, read together: the series
    ``bench/_slices.py`` cuts into slices."""

    def __init__(self, emulator: h.Emulator, sampler: h.Sampler) -> None:
        self.emulator, self.sampler = emulator, sampler
        self.points: list[tuple[int, float]] = []

    def counters(self) -> dict[str, Any]:
        counters = self.emulator.counters()
        delivered = counters["unique_event_ids"] + counters["unique_purchase_ids"]
        if delivered:
            self.points.append((delivered, self.sampler.cpu()))
        return counters


class Profiler:
    """py-spy sampling the worker process from outside (``--nonblocking``: the worker is never paused, so its
    CPU figures stay as they are; py-spy's own CPU is its own process's). Without py-spy, nothing."""

    def __init__(self, pid: int, workdir: Path, mode: str = "nonblocking") -> None:
        self.pid, self.workdir, self.mode = pid, workdir, mode
        self.out = workdir / "worker.spy"
        self.process: h.Process | None = None
        self.samples: Counter[str] | None = None
        self.frames: Counter[tuple[str, str]] = Counter()
        self.threads: Counter[str] = Counter()

    def start(self) -> None:
        """From the first delivery on, as the measured CPU: start-up (imports, topic set-up) is not the budget."""
        found = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
        if Path(found).exists() and self.process is None:
            how = {"nonblocking": ["--nonblocking"], "blocking": [], "native": ["--native"]}[self.mode]
            self.process = h.Process([found, "record", "--pid", str(self.pid), "--rate", "100", "--format", "raw",
                                      *how, "--output", str(self.out)], {}, self.workdir / "py-spy.log")

    def stop(self) -> Counter[str] | None:
        """Stop sampling (SIGINT makes py-spy write its file) and count the samples of each part."""
        if self.process is None or self.samples is not None:
            return self.samples
        if self.process.alive():
            self.process.proc.send_signal(signal.SIGINT)
            try:
                self.process.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.process.stop()
        if self.out.exists():
            lines = self.out.read_text().splitlines()
            self.samples, self.frames = samples_by_part(lines)
            self.threads = samples_by_thread(lines)
            if os.environ.get("BENCH_KEEP_SPY"):
                shutil.copy(self.out, os.environ["BENCH_KEEP_SPY"])
        else:
            self.samples = Counter()
        return self.samples


def cpu_budget(samples: Counter[str] | None, total_us: float, gc_file: Path) -> dict[str, Any] | None:
    """The worker's µs per event by part (``bench/_budget.py``), adding up to ``total_us``; None without py-spy."""
    if not samples:
        return None
    gc = orjson.loads(gc_file.read_text()) if gc_file.exists() else {"gc_seconds": 0.0, "cpu_seconds": 1.0}
    gc_share = min(1.0, gc["gc_seconds"] / gc["cpu_seconds"]) if gc["cpu_seconds"] else 0.0
    return {"parts": budget(samples, total_us, gc_share), "samples": sum(samples.values()), "gc_share": gc_share}


def inside(frames: Counter[tuple[str, str]], samples: Counter[str], parts: dict[str, float],
           per_part: int = 4) -> dict[str, list[tuple[str, float]]]:
    """The frames that decided the most samples of each part, in µs per event."""
    out: dict[str, list[tuple[str, float]]] = {}
    for part, us in parts.items():
        ranked = sorted(((n, frame) for (p, frame), n in frames.items() if p == part), reverse=True)[:per_part]
        if ranked and samples.get(part):
            out[part] = [(frame, us * n / samples[part]) for n, frame in ranked]
    return out


def _floor(module: str, name: str, args: list[str], workdir: Path, timeout: float) -> dict[str, float]:
    """Run a floor process to the end and read the JSON line it prints."""
    floor = h.Process([sys.executable, "-m", module, *args, "--group", h.unique(name)], {}, workdir / f"{name}.log")
    deadline = time.monotonic() + timeout
    while floor.alive() and time.monotonic() < deadline:
        time.sleep(0.2)
    if floor.alive():
        floor.stop()
        raise RuntimeError(f"{name} did not finish in {timeout:.0f}s:\n{floor.log_tail()}")
    # faust routes stdout through its logging, so the JSON line may come with a log prefix
    lines = [line[line.index('{"records"'):] for line in floor.log_path.read_text().splitlines()
             if '{"records"' in line]
    if not lines:
        raise RuntimeError(f"{name} printed no result:\n{floor.log_tail()}")
    result = orjson.loads(lines[-1].strip())
    seconds = h.window_seconds(0.0, result["seconds"])
    return {"records": result["records"], "events_per_s": result["records"] / seconds,
            "cpu_us_per_event": result["cpu_seconds"] / result["records"] * 1e6}


def aiokafka_floor(bootstrap: str, topic: str, events: int, workdir: Path, timeout: float) -> dict[str, float]:
    """``bench/aiokafka_floor.py`` over the same topic: a bare aiokafka consumer's CPU per record (``getmany``
    in batches, ``commit`` after each, no work): the limit beside faust."""
    return _floor("bench.aiokafka_floor", "aiokafka-floor",
                  ["--bootstrap", bootstrap, "--topic", topic, "--events", str(events)], workdir, timeout)


def faust_floor(bootstrap: str, topic: str, events: int, workdir: Path, timeout: float,
                *, inline_delivery: bool) -> dict[str, float]:
    """``bench/faust_floor.py`` over the same topic: faust's own CPU per record (consume + ack only),
    as shipped or with the worker's inline delivery (``streams.faust_patches``)."""
    name = "floor-inline" if inline_delivery else "floor"
    return _floor("bench.faust_floor", name,
                  ["--bootstrap", bootstrap, "--topic", topic, "--events", str(events), "--datadir",
                   str(workdir / name), *(["--inline-delivery"] if inline_delivery else [])], workdir, timeout)


def report(result: dict[str, Any], smoke: bool, variant: str = "") -> None:
    w, n, f, fi, b = result["worker"], result["naive"], result["floor"], result["floor_inline"], result["bare"]
    # /proc counts CPU in 10 ms ticks, so a smoke run's worker can read 0 between its first and last delivery
    floor_share = (f"{fi['cpu_us_per_event'] / w['cpu_ms_per_1000']:.0%}" if w["cpu_ms_per_1000"]
                   else "n/a: the worker's CPU reads 0 at /proc's 10 ms resolution")
    lines = [
        f"events: {result['events']:,} pre-loaded in {result['produce_seconds']:.1f} s",
        f"worker : {w['events_per_s']:,.0f} source events/s over {w['seconds']:.1f} s "
        f"({w['iterable_records_per_s']:,.0f} Iterable records/s); CPU {w['cpu_ms_per_1000']:.0f} ms per 1,000 "
        f"events ({w['cpu_ms_per_1000']:.0f} us/event); peak RSS {w['peak_rss_mb']:.0f} MB; "
        f"emulator CPU {w['emulator_cpu_s']:.1f} s; duplicates {w['duplicates']}",
        f"naive  : {n['events_per_s']:,.0f} source events/s over {n['seconds']:.1f} s "
        f"({n['consumed']:,} events, {n['requests']:,} requests, {n['failed']} failed); "
        f"CPU {n['cpu_ms_per_1000']:.0f} ms per 1,000 events",
        f"ratio  : {result['ratio']:.1f}x the naive forwarder",
        f"floor  : faust consume + ack only, same topic: {f['events_per_s']:,.0f} records/s, "
        f"CPU {f['cpu_us_per_event']:.0f} us/record as shipped; with the worker's inline delivery "
        f"{fi['events_per_s']:,.0f} records/s, {fi['cpu_us_per_event']:.0f} us/record "
        f"({floor_share} of the worker's)",
        f"bare   : aiokafka getmany + commit per batch, no work, same topic: {b['events_per_s']:,.0f} records/s, "
        f"CPU {b['cpu_us_per_event']:.1f} us/record",
        f"slices : worker CPU us per source event, slices of ~{w['slice_size']:,} events delivered: "
        f"{slices_line(w['slices'], w['slice_size'])}",
        f"goal 5 : {verdict_line(verdict(w['slices']))}",
        *budget_lines(w),
        *gc_lines(w, result["events"]),
        f"load average before / after: {result['load_before']} -> {result['load_after']}",
    ]
    print("\n".join(lines))
    body = f"""
- Command: `{h.command_line()}` (from the repository root; `--smoke` for a quick check)
- Date: {h.now_text()}
- Machine: {h.machine()}; load average (1/5/15 min) before {result['load_before']}, after {result['load_after']}
- Setup: one worker process (`FPI_ITERABLE_RATE_LIMITS_OFF=true`, memory:// tables, default stage batches
  and windows, frames on the internal topics), emulator in its own process with rate limits off, broker on
  the same machine; workload `bench/workload.py` (10% identify, 80% track/page, 5% Order Completed,
  5% anonymous; ~1 KB JSON, ~960 B Avro) pre-loaded on a 4-partition topic; CPU and peak RSS from /proc.

| | worker | naive forwarder |
|---|---:|---:|
| source events | {result['events']:,} | {n['consumed']:,} |
| events/s, first to last delivered record | {w['events_per_s']:,.0f} | {n['events_per_s']:,.0f} |
| Iterable records/s (events + purchases + users) | {w['iterable_records_per_s']:,.0f} | |
| CPU ms per 1,000 events (= µs per event) | {w['cpu_ms_per_1000']:.0f} | {n['cpu_ms_per_1000']:.0f} |
| peak RSS (VmHWM) | {w['peak_rss_mb']:.0f} MB | |
| measured window | {w['seconds']:.1f} s | {n['seconds']:.1f} s |

Ratio: the worker delivers **{result['ratio']:.1f}x** the naive forwarder's events/s.

The worker's CPU per source event (µs) in slices of about {w['slice_size']:,} events, in order:
{slices_line(w['slices'], w['slice_size'])}.
(`bench/_slices.py`: its /proc CPU and the emulator's count of delivered records, read together at each 0.5 s poll,
records scaled to source events; *fill*, the first slice, is charged with the records still in the pipeline when it
ends, *drain*, the last, gets them back, and so are the slices holding any of the first or last {PIPELINE:,} events.)
Issue 19 goal 5 within this run, the steady slices (neither fill nor drain) late against early:
**{verdict_line(verdict(w['slices']))}**.

Framework floor, same topic and data (`bench/faust_floor.py`: a faust agent that only takes and acks the
records, as the worker's first agent does):

| faust consume + ack only | CPU per record | records/s |
|---|---:|---:|
| faust-streaming as shipped | {f['cpu_us_per_event']:.0f} µs | {f['events_per_s']:,.0f} |
| with the worker's inline delivery (`faust_patches`) | {fi['cpu_us_per_event']:.0f} µs | {fi['events_per_s']:,.0f} |

The second is {floor_share} of the worker's CPU per event, spent before any of our code runs.

The limit beside faust, same topic and data (`bench/aiokafka_floor.py`: a bare aiokafka consumer, `getmany` in
batches of 2,000 and `commit` after each batch, no work): **{b['cpu_us_per_event']:.1f} µs** CPU per record,
{b['events_per_s']:,.0f} records/s.

{budget_table(w)}

The emulator used
{w['emulator_cpu_s']:.1f} CPU s during the worker run (on a 2-core machine it competes with the worker and the
broker). Duplicates at the emulator: {w['duplicates']}.
"""
    title = "End to end, one worker, limits off (`bench/bench_e2e.py`)"
    h.record(f"{title}, variant {variant}" if variant else title, body, smoke=smoke)


def budget_lines(w: dict[str, Any]) -> list[str]:
    b = w.get("budget")
    if b is None:
        return ["budget : n/a (py-spy not found, or no sample: a run shorter than py-spy's start; pip install py-spy)"]
    parts = b["parts"]
    return ["budget : " + ", ".join(f"{part} {parts[part]:.1f}" for part in PARTS)
            + f" = {sum(parts.values()):.1f} us/event of {w['cpu_ms_per_1000']:.1f} measured "
            f"({b['samples']:,} py-spy samples, {b.get('thread_share', 0.0):.0%} of them in faust's consumer thread; "
            f"GC measured: {b['gc_share']:.1%})"]


def gc_lines(w: dict[str, Any], events: int) -> list[str]:
    """The worker's collections by generation (``bench/_gc_worker.py``): what grows with the run's length."""
    g = w.get("gc")
    if not g or "collections" not in g:
        return []
    per_gen = " / ".join(f"{n:,} in {s:.2f} s" for n, s in zip(g["collections"], g["seconds"], strict=True))
    types = ", ".join(f"{name} {count:,}" for name, count in g.get("gen2_types", {}).items())
    per_event = g["gc_seconds"] / events * 1e6
    return [f"gc     : generations 0 / 1 / 2: {per_gen}; {per_event:.1f} us per source event, start-up included; "
            f"the last full collection walked {g['gen2_objects']:,} tracked objects" + (f" ({types})" if types else "")]


def budget_table(w: dict[str, Any]) -> str:
    b = w.get("budget")
    if b is None:
        return "CPU budget: not measured (py-spy not found, or the run was over before its first sample)."
    parts = b["parts"]
    rows = "\n".join(f"| {part} | {parts[part]:.1f} | {parts[part] / w['cpu_ms_per_1000']:.0%} |" for part in PARTS
                     if w["cpu_ms_per_1000"])
    return f"""The worker's CPU budget: the measured µs per event split by where py-spy (100 Hz, `--nonblocking`, the
real worker process of this run; `bench/_budget.py` names each sample's part from the leaf up) found the
worker's samples; GC is measured in the worker (`gc.callbacks`, `bench/_gc_worker.py`) and set apart first.
{b['samples']:,} samples from the first delivery to the last, as the measured CPU; {b.get('thread_share', 0.0):.0%} of
them in faust's consumer thread (aiokafka's fetcher in a thread and event loop of its own; mostly framework),
the rest in the event loop thread of the agents and the sender.

| part | µs per event | share |
|---|---:|---:|
{rows}
| **total (measured)** | **{w['cpu_ms_per_1000']:.1f}** | |

What is inside the parts (the frame that named each sample, µs per event):

{inside_table(b)}

Parts: decode = source Avro to Event; hop = internal event frames (encode + decode, both hops); resolve =
identity/aliases; map = mapping to requests; encode = request records (encode + decode); tables = table
reads/writes; send = sender, batching and request bodies; HTTP = aiohttp and the Iterable client; our glue =
the rest of `streams/` (stages, steps, app); framework = faust, mode, aiokafka, asyncio; other = stdlib and
libraries outside these (logging, metrics); a sample in the event loop's own code (asyncio, selectors) belongs
to its first caller above that names a part (a socket write under aiohttp is HTTP), else to framework (the
loop waking up and dispatching); unattributed = samples with nothing but the worker's entry point above the
leaf. The parts share the measured CPU by samples: py-spy also samples a thread that is runnable but waiting
for a core, so on a loaded machine the loop's wake-ups (framework) weigh more than the CPU they use."""


def inside_table(b: dict[str, Any]) -> str:
    rows = ["| part | frame | µs per event |", "|---|---|---:|"]
    for part in PARTS:
        for frame, us in b.get("inside", {}).get(part, []):
            rows.append(f"| {part} | `{frame[:100]}` | {us:.1f} |")
    return "\n".join(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--naive-seconds", type=float, default=60.0, help="how long the naive forwarder runs")
    parser.add_argument("--timeout", type=float, default=900.0, help="give up on the worker after this long")
    parser.add_argument("--worker-env", action="append", default=[], metavar="NAME=VALUE",
                        help="extra worker environment (a tuning variant; recorded in its own section)")
    parser.add_argument("--smoke", action="store_true", help="1,000 events, no RESULTS.md update")
    parser.add_argument("--spy", choices=("nonblocking", "blocking", "native"), default="nonblocking",
                        help="py-spy's mode for the budget; blocking and native pause the worker at each sample, "
                             "so such a run is never recorded (BENCH_KEEP_SPY=path keeps the raw samples)")
    args = parser.parse_args()
    if args.smoke:
        args.events, args.naive_seconds, args.timeout = 1000, 2.0, 90.0
    overrides = dict(item.split("=", 1) for item in args.worker_env)
    result = run(args.events, args.naive_seconds, args.timeout, args.smoke, overrides, args.spy)
    report(result, args.smoke or args.spy != "nonblocking", " ".join(f"`{item}`" for item in args.worker_env))


if __name__ == "__main__":
    main()
