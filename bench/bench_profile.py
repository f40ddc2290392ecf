"""Hot-path CPU per event, stage by stage, by calling in process the same functions the agents call.

Stages (what each agent does per event, without Kafka and faust):

* decode: source Avro -> ``Event`` (``EventDecoder.decode``, the route agent)
* hop: ``encode_event_internal`` once (route), ``decode_event_routing`` (resolve: the head only; the bytes go on
  untouched) and ``decode_event_internal`` (apply)
* resolve: ``routing_key`` + ``resolve`` + the aliases table (a dict of bytes here)
* map: ``identity_from_bytes`` + ``apply_event`` + ``identity_to_bytes`` (the apply agent)
* encode: ``encode_request`` per Iterable request (apply) and ``decode_request`` (send agent)
* send-serialize: ``plan`` + ``call_body`` + ``orjson.dumps`` of every call body, per 1,000 requests

Then one cProfile run of the whole in-process loop names the top costs. ``--worker`` also profiles a
real worker process (cProfile) over a pre-loaded topic, which shows faust's and aiokafka's share.

    python -m bench.bench_profile                 # 50,000 events
    python -m bench.bench_profile --worker 10000  # and a worker-process profile over 10,000 events
    python -m bench.bench_profile --smoke
"""

from __future__ import annotations

import argparse
import cProfile
import io
import pstats
import sysconfig
import time
from collections.abc import Callable
from datetime import UTC, datetime

import orjson

from bench import _harness as h
from bench.workload import encoded
from streams.codecs import (
    EventDecoder,
    decode_event_internal,
    decode_event_routing,
    decode_request,
    encode_event_internal,
    encode_request,
)
from streams.identity import resolve, routing_key
from streams.iterable.batcher import call_body, plan
from streams.mapping import MappingConfig, apply_event
from streams.model import Event, IterableRequest
from streams.stages import identity_from_bytes, identity_to_bytes, link_from_bytes, link_to_bytes

STAGES = ("decode", "hop", "resolve", "map", "encode", "send-serialize")


class Pipeline:
    """The per-event work of the four agents, with the stage timers in between."""

    def __init__(self) -> None:
        self.decoder = EventDecoder("confluent")
        self.config = MappingConfig()
        self.aliases: dict[bytes, bytes] = {}
        self.identities: dict[bytes, bytes] = {}
        self.pending: list[bytes] = []
        self.totals = dict.fromkeys(STAGES, 0.0)
        self.requests = 0

    def run(self, values: list[bytes], clock: Callable[[], float] = time.process_time) -> None:
        t = self.totals
        now = datetime.now(UTC)
        for value in values:
            t0 = clock()
            event = self.decoder.decode(value)
            t1 = clock()
            routing_key(event)
            t2 = clock()
            raw = encode_event_internal(event)
            event = decode_event_routing(raw)
            t3 = clock()
            person = self._resolve(event)
            t4 = clock()
            if person is None:
                t["decode"] += t1 - t0
                t["resolve"] += (t2 - t1) + (t4 - t3)
                t["hop"] += t3 - t2
                continue
            event = decode_event_internal(raw)
            t5 = clock()
            key = person.encode()
            stored = self.identities.get(key)
            applied = apply_event(event, person, identity_from_bytes(stored) if stored else None, self.config, now)
            if applied.identity is not None:
                self.identities[key] = identity_to_bytes(applied.identity)
            t6 = clock()
            for request in applied.decision.requests:
                self.pending.append(encode_request(request))
            t7 = clock()
            t["decode"] += t1 - t0
            t["resolve"] += (t2 - t1) + (t4 - t3)
            t["hop"] += (t3 - t2) + (t5 - t4)
            t["map"] += t6 - t5
            t["encode"] += t7 - t6
            if len(self.pending) >= 1000:
                self._flush(clock)
        self._flush(clock)

    def _resolve(self, event: Event) -> str | None:
        device = event.anonymous_id.encode() if event.anonymous_id else None
        known = self.aliases.get(device) if device else None
        resolution = resolve(event, link_from_bytes(known) if known else None)
        if resolution.new_link is not None and device:
            self.aliases[device] = link_to_bytes(resolution.new_link)
        return resolution.person_key

    def _flush(self, clock: Callable[[], float]) -> None:
        if not self.pending:
            return
        t0 = clock()
        requests: list[IterableRequest] = [decode_request(raw) for raw in self.pending]
        t1 = clock()
        for wave in plan(requests):
            for call in wave:
                orjson.dumps(call_body(call.endpoint, [requests[i].body for i in call.indexes]))
        t2 = clock()
        self.totals["encode"] += t1 - t0
        self.totals["send-serialize"] += t2 - t1
        self.requests += len(self.pending)
        self.pending.clear()


def stage_costs(values: list[bytes], rounds: int) -> dict[str, float]:
    """Best-of-``rounds`` CPU µs per source event for each stage."""
    best: dict[str, float] = {}
    for _ in range(rounds):
        pipeline = Pipeline()
        pipeline.run(values)
        for stage, seconds in pipeline.totals.items():
            us = seconds / len(values) * 1e6
            best[stage] = min(best.get(stage, us), us)
    return best


def top_costs(values: list[bytes], limit: int) -> str:
    profiler = cProfile.Profile(time.process_time)
    pipeline = Pipeline()
    profiler.runcall(pipeline.run, values, lambda: 0.0)
    out = io.StringIO()
    stats = pstats.Stats(profiler, stream=out)
    stats.sort_stats("tottime").print_stats(limit)
    return _table(out.getvalue())


def _table(text: str) -> str:
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.strip().startswith("ncalls"))
    rows = [line for line in lines[start + 1:] if line.strip()]
    out = ["| tottime s | cumtime s | calls | function |", "|---:|---:|---:|---|"]
    for row in rows:
        parts = row.split(None, 5)
        if len(parts) == 6:
            name = parts[5].replace(sysconfig.get_paths()["purelib"] + "/", "").replace(str(h.REPO) + "/", "")
            out.append(f"| {parts[1]} | {parts[3]} | {parts[0]} | `{name[:110]}` |")
    return "\n".join(out)


def worker_profile(events: int, limit: int) -> tuple[str, float, float]:
    """cProfile of a real worker process over ``events`` pre-loaded events: (table, CPU µs/event, seconds)."""
    import asyncio
    import signal
    import sys
    import tempfile
    from pathlib import Path

    from bench.workload import expected, produce_encoded

    with h.broker() as bootstrap, tempfile.TemporaryDirectory(prefix="bench-prof-") as tmp:
        workdir = Path(tmp)
        topic = h.unique("bench-prof") + ".events"
        tag = h.unique("prof")
        asyncio.run(h.create_topic(bootstrap, topic, 4))
        asyncio.run(produce_encoded(encoded(events, tag), bootstrap=bootstrap, topic=topic))
        want = expected(events, tag)
        emulator = h.Emulator(workdir, rate_limits=False)
        out = workdir / "worker.prof"
        try:
            env = h.worker_env(bootstrap, emulator.url, workdir / "data", topic, FPI_ITERABLE_RATE_LIMITS_OFF="true")
            worker = h.Process([sys.executable, "-m", "cProfile", "-o", str(out), "-m", "streams", "worker"], env,
                               workdir / "worker.log")
            sampler = h.Sampler(worker)
            started = time.monotonic()
            try:
                h.wait_delivered(emulator, len(want.event_ids), len(want.purchase_ids), 900, sampler, (worker,))
                seconds = time.monotonic() - started
                cpu = sampler.cpu()
            finally:
                worker.proc.send_signal(signal.SIGINT)  # cProfile writes its file on a clean exit
                try:
                    worker.proc.wait(60)
                except Exception:
                    worker.stop()
        finally:
            emulator.stop()
        text = io.StringIO()
        pstats.Stats(str(out), stream=text).sort_stats("tottime").print_stats(limit)
        return _table(text.getvalue()), cpu / events * 1e6, seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=50_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--top", type=int, default=15)
    parser.add_argument("--worker", type=int, default=0, metavar="N",
                        help="also profile a worker process over N events (starts broker and emulator)")
    parser.add_argument("--smoke", action="store_true")
    args = parser.parse_args()
    if args.smoke:
        args.events, args.rounds, args.top = 1000, 1, 5
    load_before = h.load_average()
    values = [value for _key, value in encoded(args.events, h.unique("prof"))]
    costs = stage_costs(values, args.rounds)
    total = sum(costs.values())
    for stage in STAGES:
        print(f"{stage:>15}: {costs[stage]:7.1f} µs/event")
    print(f"{'total':>15}: {total:7.1f} µs/event (target ≤ 100 µs of worker CPU per event)")
    top = top_costs(values, args.top)
    print(top)
    worker_part = ""
    if args.worker:
        table, us, seconds = worker_profile(args.worker, args.top + 10)
        print(f"worker process: {us:.0f} µs CPU per event (with start-up), {seconds:.1f} s for {args.worker} events")
        print(table)
        worker_part = f"""
Worker process under cProfile (`--worker {args.worker}`): {us:,.0f} µs of CPU per event including start-up and
cProfile's own overhead, {seconds:.1f} s wall for {args.worker:,} events. Top costs by own time:

{table}
"""
    rows = "\n".join(f"| {stage} | {costs[stage]:.1f} |" for stage in STAGES)
    body = f"""
- Command: `{h.command_line()}` (from the repository root; `--smoke` for a quick check)
- Date: {h.now_text()}
- Machine: {h.machine()}; load average {load_before} -> {h.load_average()}
- {args.events:,} workload events (`bench/workload.py`), in process, CPU time (`time.process_time`), best of
  {args.rounds} rounds. Stages are the functions the agents call, without Kafka and faust.

| stage | CPU µs per source event |
|---|---:|
{rows}
| **total** | **{total:.1f}** |

Top costs of the in-process loop (cProfile, own time, {args.events:,} events):

{top}
{worker_part}"""
    h.record("Hot path profile (`bench/bench_profile.py`)", body, smoke=args.smoke)


if __name__ == "__main__":
    main()
