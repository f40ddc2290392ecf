"""The peer a platform team would deploy instead: Kafka Connect (standalone) with an HTTP sink, on the same
topic and data as one worker, in the same run, against the same emulator (rate limits off).

Connect is ``org.apache.kafka:connect-runtime`` at the development broker's Kafka version; the HTTP sink is
Camel Kafka Connector's generic ``CamelSinkConnector`` with Camel's HTTP component (``bench/connect/pom.xml``
says why that one). Both are resolved from Maven Central by Maven into ``~/.cache/freshpaint-iterable/``.

What the sink forwards: each record's value, unchanged, as the body of one ``POST /api/events/track`` with the
``Api-Key`` header (``bench/connect/http-sink.properties``). It cannot do the worker's work (decode the Avro,
resolve identities, map to users/update, events/track, trackPurchase, batch into bulk calls), so the emulator
refuses every body as invalid JSON; the benchmark counts what the emulator accepted and refused, and compares
the cost of moving the records, not the results.

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
from pathlib import Path
from string import Template
from typing import Any

from bench import _harness as h
from bench.workload import encoded, expected, produce_encoded
from streams._support import free_port

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
    wanted = {"runtime": runtime, "camel": plugins / "camel-http-sink"}
    mvn = os.environ.get("MVN", "mvn")
    if shutil.which(mvn) is None:
        raise SetupError(f"Maven ('{mvn}') not found: install it (apt-get install maven) or set MVN")
    for profile, folder in wanted.items():
        if folder.is_dir() and any(folder.glob("*.jar")):
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


def write_configs(workdir: Path, bootstrap: str, plugins: Path, topic: str, url: str, tasks: int) -> list[Path]:
    values = {"bootstrap": bootstrap, "workdir": str(workdir), "plugin_path": str(plugins),
              "rest_port": str(free_port()), "name": h.unique("bench-http-sink"), "tasks": str(tasks),
              "topic": topic, "url": url, "api_key": h.EMULATOR_KEY}
    paths = []
    for name in ("worker.properties", "http-sink.properties"):
        path = workdir / name
        path.write_text(Template((CONNECT / name).read_text()).substitute(values))
        paths.append(path)
    return paths


def run_connect(runtime: Path, plugins: Path, workdir: Path, bootstrap: str, topic: str,
                emulator: h.Emulator, records: int, tasks: int, timeout: float) -> dict[str, Any]:
    """Start Connect standalone with the HTTP sink and wait until the emulator counted ``records`` requests."""
    java = os.environ.get("JAVA") or (f"{os.environ['JAVA_HOME']}/bin/java" if os.environ.get("JAVA_HOME") else "java")
    if shutil.which(java) is None:
        raise SetupError(f"java ('{java}') not found: Java 17+ is needed; set JAVA_HOME")
    worker_props, sink_props = write_configs(workdir, bootstrap, plugins, topic, emulator.url, tasks)
    connect = h.Process([java, *HEAP.split(), "-XX:+UseG1GC", "-Djava.awt.headless=true",
                         f"-Dlog4j2.configurationFile={CONNECT / 'log4j2.properties'}", "-cp", f"{runtime}/*",
                         "org.apache.kafka.connect.cli.ConnectStandalone", str(worker_props), str(sink_props)],
                        {}, workdir / "connect.log")
    sampler = h.Sampler(connect)
    emulator_sampler = h.Sampler(emulator.process)
    emulator_cpu0 = emulator_sampler.cpu()
    started = time.monotonic()
    first: tuple[float, float] | None = None  # (time, CPU) when the first request was counted
    try:
        while True:
            seen = emulator.counters()["requests"].get(TRACK, 0)
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
    responses = {k.split()[-1]: v for k, v in counters["responses"].items() if k.startswith(TRACK + " ")}
    seconds = h.window_seconds(first[0], last[0])
    return {"seconds": seconds, "records_per_s": records / seconds,
            "cpu_us_per_event": (last[1] - first[1]) / records * 1e6, "cpu_total_s": last[1],
            "startup_s": first[0] - started, "peak_rss_mb": sampler.peak_rss_mb(),
            "emulator_cpu_s": emulator_sampler.cpu() - emulator_cpu0, "requests": counters["requests"].get(TRACK, 0),
            "responses": responses, "accepted": counters["unique_event_ids"]}


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
        emulator = h.Emulator(workdir, rate_limits=False)
        try:
            w = h.run_workers(bootstrap, workdir, topic, emulator, len(want.event_ids), len(want.purchase_ids),
                              timeout=timeout, FPI_ITERABLE_RATE_LIMITS_OFF="true")
            worker = {"seconds": w["seconds"], "events_per_s": produced / w["seconds"],
                      "cpu_us_per_event": w["cpu"] / produced * 1e6, "peak_rss_mb": w["peak_rss_mb"],
                      "emulator_cpu_s": w["emulator_cpu"], "calls": sum(w["counters"]["requests"].values()),
                      "accepted": w["counters"]["unique_event_ids"] + w["counters"]["unique_purchase_ids"]}
            emulator.reset()
            connect = run_connect(runtime, plugins, workdir, bootstrap, topic, emulator, produced, tasks, timeout)
        finally:
            emulator.stop()
    return {"events": produced, "tasks": tasks, "worker": worker, "connect": connect,
            "load_before": load_before, "load_after": h.load_average()}


def report(result: dict[str, Any], smoke: bool) -> None:
    w, c = result["worker"], result["connect"]
    speed = w["events_per_s"] / c["records_per_s"]
    cost = (f"{w['cpu_us_per_event'] / c['cpu_us_per_event']:.2f}x" if c["cpu_us_per_event"]
            else "n/a (Connect's CPU reads 0 at /proc's 10 ms resolution)")
    answers = ", ".join(f"{n:,} x {status}" for status, n in sorted(c["responses"].items()))
    lines = [
        f"events : {result['events']:,} on a 4-partition topic (Confluent-framed Avro, ~960 B)",
        f"worker : {w['events_per_s']:,.0f} events/s over {w['seconds']:.1f} s; "
        f"CPU {w['cpu_us_per_event']:.0f} us/event; peak RSS {w['peak_rss_mb']:.0f} MB; "
        f"{w['calls']:,} Iterable calls, {w['accepted']:,} events+purchases accepted",
        f"connect: {c['records_per_s']:,.0f} records/s over {c['seconds']:.1f} s (tasks.max={result['tasks']}); "
        f"CPU {c['cpu_us_per_event']:.0f} us/record; peak RSS {c['peak_rss_mb']:.0f} MB; "
        f"start-up {c['startup_s']:.1f} s; "
        f"{c['requests']:,} POSTs {TRACK} ({answers}); {c['accepted']:,} events accepted",
        f"ratio  : worker/connect events/s {speed:.2f}x; worker/connect CPU per event {cost}",
        f"load average before / after: {result['load_before']} -> {result['load_after']}",
    ]
    print("\n".join(lines))
    body = f"""
- Command: `{h.command_line()}` (from the repository root; `--smoke` for a quick check)
- Date: {h.now_text()}
- Machine: {h.machine()}; load average (1/5/15 min) before {result['load_before']}, after {result['load_after']}
- Setup: the same {result['events']:,} workload events (`bench/workload.py`) on one 4-partition topic, read first by
  one worker (`FPI_ITERABLE_RATE_LIMITS_OFF=true`), then by Kafka Connect {KAFKA_VERSION} standalone
  (`-Xmx1g`, `tasks.max={result['tasks']}`) with Camel Kafka Connector 0.11.0's generic sink and Camel 3.11.1's
  HTTP component (`bench/connect/`); one emulator with rate limits off, reset between the two.

| | worker | Kafka Connect + HTTP sink |
|---|---:|---:|
| source records/s, first to last record seen at the emulator | {w['events_per_s']:,.0f} | {c['records_per_s']:,.0f} |
| CPU µs per source record (/proc, that window) | {w['cpu_us_per_event']:.0f} | {c['cpu_us_per_event']:.0f} |
| peak RSS (VmHWM) | {w['peak_rss_mb']:.0f} MB | {c['peak_rss_mb']:.0f} MB |
| HTTP calls | {w['calls']:,} | {c['requests']:,} |
| events and purchases Iterable accepted | {w['accepted']:,} | {c['accepted']:,} ({answers}) |

Ratios: the worker moves **{speed:.2f}x** Connect's records/s at **{cost}** its CPU per record.

What Connect forwards is not what the worker sends: each record's value, unchanged (Confluent-framed Avro), as
the body of one `POST {TRACK}` with the `Api-Key` header. The sink decodes nothing (Confluent's Avro converter,
`io.confluent:kafka-connect-avro-converter`, does not resolve here, and the records carry the project's bundled
schema id with no registry in this run), resolves no identities, maps nothing to `users/update`, `events/track`
or `commerce/trackPurchase` and batches nothing into bulk calls, so Iterable refuses every body (400, invalid
JSON). The comparison is the cost of moving a record from the topic to an HTTP endpoint (Connect) against the
cost of turning it into the right Iterable calls (worker).

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
