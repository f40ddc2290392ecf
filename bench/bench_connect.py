"""The peer a platform team would deploy instead: Kafka Connect (standalone) with an HTTP sink, on the same
topic and data as one worker, in the same run, against the same emulator (rate limits off).

Connect is ``org.apache.kafka:connect-runtime`` at the development broker's Kafka version; the HTTP sink is
Camel Kafka Connector's generic ``CamelSinkConnector`` with Camel's HTTP component (``bench/connect/pom.xml``
says why that one). Both are resolved from Maven Central by Maven into ``~/.cache/freshpaint-iterable/``.

What the sink forwards (twice, one POST ``/api/events/track`` per record with the ``Api-Key`` header;
``bench/connect/``): the records of the worker's Avro topic with their value unchanged as the body, which the
emulator refuses as invalid JSON; and the same messages as JSON, renamed by Connect's stock transforms into an
events/track body, which it accepts where a message has a userId and an event name and the user exists. Neither
does the worker's work (decode the Avro, resolve identities, map to users/update, events/track, trackPurchase,
batch into bulk calls): the benchmark counts what the emulator accepted and refused, and compares the cost of
moving the records, not the results.

Throughput is source records per second from the first to the last request the emulator counted (polled every
0.2 s); CPU is the Connect JVM's /proc utime+stime over that window (JIT and GC threads included); peak RSS is
its VmHWM. The worker's figures come from ``bench/_harness.run_workers``, as the other end-to-end benchmarks.

    python -m bench.bench_connect                  # 100,000 events, a few minutes
    python -m bench.bench_connect --events 1000000
    python -m bench.bench_connect --smoke          # 1,000 events; never writes RESULTS.md
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from string import Template
from typing import Any

import orjson

from bench import _harness as h
from bench.workload import encoded, expected, produce_encoded
from bench.workload import events as workload_events
from streams._support import free_port
from streams.commands.produce import event_key
from streams.normalize import normalize

CONNECT = h.REPO / "bench" / "connect"
KAFKA_VERSION = "4.1.1"  # dev/kafka/pom.xml's kafka4 profile
CACHE = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"))
LIBS = CACHE / "freshpaint-iterable" / f"connect-{KAFKA_VERSION}"
TRACK = "/api/events/track"
HEAP = "-Xms256m -Xmx1g"


ATTEMPTS = """HTTP sinks tried, each once, with Maven against the Maven Central this project reaches (2026-12-01):

- `io.aiven:http-connector-for-apache-kafka` 0.9.0: not found (no version of that name is served).
- `org.apache.camel.kafkaconnector:camel-http-sink-kafka-connector` 4.18.0 and 4.14.0: not found;
  `camel-http-kafka-connector` and `camel-https-kafka-connector`: no version served.
- `io.github.clescot:kafka-connect-http-connectors` 0.8.96: not found; 0.8.84 (the newest served): its parent
  POM `io.github.clescot:kafka-connect-http:0.8.84` is not served, so it cannot resolve.
- `io.github.clescot:kafka-connect-http-sink`, `io.lenses.streamreactor:kafka-connect-http`,
  `io.lenses:kafka-connect-http`, `io.confluent:kafka-connect-http`, `com.splunk.kafka.connect:splunk-kafka-connect`,
  `io.axual.connect.plugins:http-sink-connector`: no version served.
- `org.apache.camel.kafkaconnector:camel-kafka-connector` 0.11.0 (2021, the newest of that name served) with
  `org.apache.camel:camel-http` 3.11.1: **resolves and runs** on Connect 4.1.1, as the generic
  `CamelSinkConnector` with `camel.sink.url` (the peer measured above)."""


class SetupError(RuntimeError):
    """An expected failure (no Maven, no Java, nothing resolved): one line, no traceback."""


def fetch() -> tuple[Path, Path]:
    """The Connect runtime's jar folder and the plugin path (one folder per connector), resolved once."""
    runtime, plugins = LIBS / "runtime", LIBS / "plugins"
    # profile: (folder, a jar that must be there: a cache from an older pom lacks it and is resolved again)
    wanted = {"runtime": (runtime, "connect-runtime-*.jar"),
              "camel": (plugins / "camel-http-sink", "camel-jackson-*.jar")}
    mvn = os.environ.get("MVN", "mvn")
    if shutil.which(mvn) is None:
        raise SetupError(f"Maven ('{mvn}') not found: install it (apt-get install maven) or set MVN")
    for profile, (folder, marker) in wanted.items():
        if any(folder.glob(marker)):
            continue
        print(f"resolving the '{profile}' jars from Maven Central into {folder}", file=sys.stderr)
        tmp = folder.with_suffix(".tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        done = subprocess.run(
            [mvn, "-B", "-q", "-f", str(CONNECT / "pom.xml"), f"-P{profile}", "dependency:copy-dependencies",
             "-DincludeScope=runtime", f"-DoutputDirectory={tmp}",
             # a plugin must not bring its own Kafka or Connect classes: the worker's serve every plugin
             *(["-DexcludeGroupIds=org.apache.kafka"] if profile != "runtime" else [])],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, check=False)
        if done.returncode != 0:
            raise SetupError(f"Maven could not resolve the '{profile}' profile of {CONNECT / 'pom.xml'}:\n"
                             + done.stdout[-3000:])
        shutil.rmtree(folder, ignore_errors=True)
        tmp.rename(folder)
    return runtime, plugins


def write_configs(workdir: Path, bootstrap: str, plugins: Path, topic: str, url: str, tasks: int,
                  sink: str = "http-sink.properties") -> list[Path]:
    """The worker's and the connector's properties from their templates in ``bench/connect/``."""
    values = {"bootstrap": bootstrap, "workdir": str(workdir), "plugin_path": str(plugins),
              "rest_port": str(free_port()), "name": h.unique("bench-http-sink"), "tasks": str(tasks),
              "topic": topic, "url": url, "api_key": h.EMULATOR_KEY}
    paths = []
    for name in ("worker.properties", sink):
        path = workdir / name
        path.write_text(Template((CONNECT / name).read_text()).substitute(values))
        paths.append(path)
    return paths


def run_connect(runtime: Path, plugins: Path, workdir: Path, bootstrap: str, topic: str, emulator: h.Emulator,
                records: int, tasks: int, timeout: float, sink: str) -> dict[str, Any]:
    """Start Connect standalone with the HTTP sink and wait until the emulator counted ``records`` requests."""
    java = os.environ.get("JAVA") or (f"{os.environ['JAVA_HOME']}/bin/java" if os.environ.get("JAVA_HOME") else "java")
    if shutil.which(java) is None:
        raise SetupError(f"java ('{java}') not found: Java 17+ is needed; set JAVA_HOME")
    workdir = workdir / Path(sink).stem
    workdir.mkdir()
    worker_props, sink_props = write_configs(workdir, bootstrap, plugins, topic, emulator.url, tasks, sink)
    connect = h.Process([java, *HEAP.split(), "-XX:+UseG1GC", "-Djava.awt.headless=true",
                         f"-Dlog4j2.configurationFile={CONNECT / 'log4j2.properties'}", "-cp", f"{runtime}/*",
                         "org.apache.kafka.connect.cli.ConnectStandalone", str(worker_props), str(sink_props)],
                        {}, workdir / "connect.log")
    before = emulator.counters()
    sent0 = before["requests"].get(TRACK, 0)
    sampler = h.Sampler(connect)
    emulator_sampler = h.Sampler(emulator.process)
    emulator_cpu0 = emulator_sampler.cpu()
    started = time.monotonic()
    first: tuple[float, float] | None = None  # (time, CPU) when the first request was counted
    try:
        while True:
            seen = emulator.counters()["requests"].get(TRACK, 0) - sent0
            sampler.sample()
            now = time.monotonic()
            if first is None and seen:
                first = (now, sampler.cpu())
            if seen >= records and first is not None:
                last = (now, sampler.cpu())
                break
            if not connect.alive() or now - started > timeout:
                what = "Connect exited" if not connect.alive() else f"timed out after {timeout:.0f}s"
                raise RuntimeError(f"{what}: the emulator counted {seen}/{records} requests\n{connect.log_tail()}")
            time.sleep(0.2)
    finally:
        connect.stop()
    counters = emulator.counters()
    responses = {k.split()[-1]: v - before["responses"].get(k, 0) for k, v in counters["responses"].items()
                 if k.startswith(TRACK + " ") and v > before["responses"].get(k, 0)}
    seconds = h.window_seconds(first[0], last[0])
    return {"seconds": seconds, "records_per_s": records / seconds,
            "cpu_us_per_event": (last[1] - first[1]) / records * 1e6, "cpu_total_s": last[1],
            "startup_s": first[0] - started, "peak_rss_mb": sampler.peak_rss_mb(),
            "emulator_cpu_s": emulator_sampler.cpu() - emulator_cpu0,
            "requests": counters["requests"].get(TRACK, 0) - sent0,
            "responses": responses, "accepted": responses.get("200", 0)}


def as_json(n: int, tag: str) -> Iterator[tuple[bytes | None, bytes]]:
    """The same workload messages as JSON (Freshpaint's own shape), keyed as ``encoded`` keys them."""
    for message in workload_events(n, tag):
        yield event_key(normalize(message)), orjson.dumps(message)


def run(events: int, tasks: int, timeout: float) -> dict[str, Any]:
    load_before = h.load_average()
    runtime, plugins = fetch()
    with h.broker() as bootstrap, tempfile.TemporaryDirectory(prefix="bench-connect-") as tmp:
        workdir = Path(tmp)
        topic = h.unique("bench-connect") + ".events"
        tag = h.unique("connect")
        asyncio.run(h.create_topic(bootstrap, topic, 4))
        produced = asyncio.run(produce_encoded(encoded(events, tag), bootstrap=bootstrap, topic=topic))
        print(f"pre-loaded {produced} events on {topic} (4 partitions)", flush=True)
        want = expected(produced, tag)
        json_topic = topic.removesuffix(".events") + ".json"
        asyncio.run(h.create_topic(bootstrap, json_topic, 4))
        asyncio.run(produce_encoded(as_json(events, tag), bootstrap=bootstrap, topic=json_topic))
        shaped_acceptable = sum(1 for m in workload_events(events, tag) if "userId" in m and "event" in m)
        emulator = h.Emulator(workdir, rate_limits=False)
        try:
            raw = run_connect(runtime, plugins, workdir, bootstrap, topic, emulator, produced, tasks, timeout,
                              "http-sink.properties")
            emulator.reset()
            w = h.run_workers(bootstrap, workdir, topic, emulator, len(want.event_ids), len(want.purchase_ids),
                              timeout=timeout, FPI_ITERABLE_RATE_LIMITS_OFF="true")
            worker = {"seconds": w["seconds"], "events_per_s": produced / w["seconds"],
                      "cpu_us_per_event": w["cpu"] / produced * 1e6, "peak_rss_mb": w["peak_rss_mb"],
                      "emulator_cpu_s": w["emulator_cpu"], "calls": sum(w["counters"]["requests"].values()),
                      "accepted": w["counters"]["unique_event_ids"] + w["counters"]["unique_purchase_ids"]}
            # No reset: the shaped sink forwards no identify, and an email-based project refuses events for a
            # userId it does not know; the users the worker created stand in for that.
            shaped = run_connect(runtime, plugins, workdir, bootstrap, json_topic, emulator, produced, tasks,
                                 timeout, "http-sink-json.properties")
        finally:
            emulator.stop()
    return {"events": produced, "tasks": tasks, "worker": worker, "raw": raw, "shaped": shaped,
            "shaped_acceptable": shaped_acceptable,
            "load_before": load_before, "load_after": h.load_average()}


def _answers(c: dict[str, Any]) -> str:
    return ", ".join(f"{n:,} x {status}" for status, n in sorted(c["responses"].items()))


def _connect_line(label: str, c: dict[str, Any]) -> str:
    return (f"{label}: {c['records_per_s']:,.0f} records/s over {c['seconds']:.1f} s; "
            f"CPU {c['cpu_us_per_event']:.0f} us/record; peak RSS {c['peak_rss_mb']:.0f} MB; "
            f"start-up {c['startup_s']:.1f} s; {c['requests']:,} POSTs {TRACK} ({_answers(c)}); "
            f"{c['accepted']:,} accepted (200)")


def _ratios(w: dict[str, Any], c: dict[str, Any]) -> tuple[str, str]:
    speed = f"{w['events_per_s'] / c['records_per_s']:.2f}x"
    cost = (f"{w['cpu_us_per_event'] / c['cpu_us_per_event']:.2f}x" if c["cpu_us_per_event"]
            else "n/a (Connect's CPU reads 0 at /proc's 10 ms resolution)")
    return speed, cost


def report(result: dict[str, Any], smoke: bool) -> None:
    w, raw, shaped = result["worker"], result["raw"], result["shaped"]
    (raw_speed, raw_cost), (shaped_speed, shaped_cost) = _ratios(w, raw), _ratios(w, shaped)
    lines = [
        f"events : {result['events']:,} on two 4-partition topics: Confluent-framed Avro (~960 B) and the same "
        f"messages as JSON; Connect tasks.max={result['tasks']}",
        f"worker : {w['events_per_s']:,.0f} events/s over {w['seconds']:.1f} s; "
        f"CPU {w['cpu_us_per_event']:.0f} us/event; peak RSS {w['peak_rss_mb']:.0f} MB; "
        f"{w['calls']:,} Iterable calls, {w['accepted']:,} events+purchases accepted",
        _connect_line("connect, Avro bytes as they are", raw),
        _connect_line("connect, JSON shaped by transforms", shaped),
        f"ratio  : worker/connect events/s {raw_speed} (bytes), {shaped_speed} (shaped); "
        f"worker/connect CPU per event {raw_cost} (bytes), {shaped_cost} (shaped)",
        f"load average before / after: {result['load_before']} -> {result['load_after']}",
    ]
    print("\n".join(lines))
    rows = "\n".join(f"| {name} | {' | '.join(cells)} |" for name, cells in (
        ("source records/s, first to last record seen at the emulator",
         [f"{x['events_per_s' if x is w else 'records_per_s']:,.0f}" for x in (w, raw, shaped)]),
        ("CPU µs per source record (/proc, that window)", [f"{x['cpu_us_per_event']:.0f}" for x in (w, raw, shaped)]),
        ("peak RSS (VmHWM)", [f"{x['peak_rss_mb']:.0f} MB" for x in (w, raw, shaped)]),
        ("HTTP calls", [f"{x['calls' if x is w else 'requests']:,}" for x in (w, raw, shaped)]),
        ("accepted: worker's unique events + purchases; Connect's 200 answers",
         [f"{x['accepted']:,}" for x in (w, raw, shaped)]),
    ))
    body = f"""
- Command: `{h.command_line()}` (from the repository root; `--smoke` for a quick check)
- Date: {h.now_text()}
- Machine: {h.machine()}; load average (1/5/15 min) before {result['load_before']}, after {result['load_after']}
- Setup: the same {result['events']:,} workload events (`bench/workload.py`) on a 4-partition Avro topic and, as
  JSON, on a second 4-partition topic. Kafka Connect {KAFKA_VERSION} standalone (`-Xmx1g`,
  `tasks.max={result['tasks']}`) with Camel Kafka Connector 0.11.0's generic sink and Camel 3.11.1's HTTP
  component (`bench/connect/`) reads the Avro topic; the emulator (rate limits off) is reset; one worker
  (`FPI_ITERABLE_RATE_LIMITS_OFF=true`) reads the Avro topic; then Connect reads the JSON topic, without a reset
  (see below). Each Connect run is a fresh JVM; its figures are the emulator's counts during that run.

| | worker | Connect, Avro bytes as they are | Connect, JSON shaped by transforms |
|---|---:|---:|---:|
{rows}
| Iterable's answers | | {_answers(raw)} | {_answers(shaped)} |

Ratios: the worker's events/s are **{raw_speed}** Connect's with the bytes as they are and **{shaped_speed}** with
the shaped JSON; its CPU per record **{raw_cost}** and **{shaped_cost}** of Connect's.

What Connect forwards is not what the worker sends. Both sinks make one `POST {TRACK}` per record with the
`Api-Key` header; neither resolves identities (no `users/update`), knows purchases (no `commerce/trackPurchase`)
or batches into bulk calls.

- Bytes as they are (`http-sink.properties`): each record's value, unchanged (Confluent-framed Avro), is the
  body. Confluent's Avro converter (`io.confluent:kafka-connect-avro-converter`) does not resolve here, and the
  records carry the project's bundled schema id with no registry in this run, so nothing decodes them: Iterable
  refuses every body (400, invalid JSON).
- JSON shaped by transforms (`http-sink-json.properties`): the same messages as JSON, `JsonConverter` without
  schemas, Connect's stock `ReplaceField` keeping `userId`, `event`, `messageId`, `properties` renamed to
  `userId`, `eventName`, `id`, `dataFields`, and Camel's Jackson data format writing the body. Only the
  {result['shaped_acceptable']:,} messages with a `userId` and an `event` can become a valid body (tracks, and
  `Order Completed` as a plain event, not a purchase); identifies, pages and anonymous events are refused. Even
  those address people by `userId` only, and an email-based project (the emulator's default, as ours) refuses
  events for a userId it does not know: against a fresh emulator (a 1,000-event `--smoke` on 2026-12-01) all
  1,000 were refused. So this run follows the worker's without a reset and finds the users the worker created;
  the events it sends again carry the worker's ids (duplicates at Iterable), answered 200.

{ATTEMPTS}
"""
    h.record("Kafka Connect with an HTTP sink beside one worker (`bench/bench_connect.py`)", body, smoke=smoke)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--tasks", type=int, default=4, help="the sink's tasks.max (the topic has 4 partitions)")
    parser.add_argument("--timeout", type=float, default=900.0, help="give up on either side after this long")
    parser.add_argument("--smoke", action="store_true", help="1,000 events, no RESULTS.md update")
    args = parser.parse_args()
    if args.smoke:
        args.events, args.timeout = 1000, 180.0
    try:
        result = run(args.events, args.tasks, args.timeout)
    except SetupError as exc:
        sys.exit(f"bench_connect: {exc}")
    report(result, args.smoke)


if __name__ == "__main__":
    main()
