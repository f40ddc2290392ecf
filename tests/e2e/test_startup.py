"""Start-up at production partition counts, on the real broker.

A worker on fresh topics of 64 partitions (five stream topics never committed) must become ready and
deliver what was produced before it joined, with the never-committed partitions rewound in one step;
before, each of them cost a 1.5 s fetch round and a worker on 12 partitions never became ready. The
start-up times themselves are measured by ``bench/bench_startup.py``, not asserted here.
"""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

import httpx
import pytest
from aiokafka.admin import AIOKafkaAdminClient, NewTopic  # type: ignore[import-untyped]

from streams._support import Sample, scrape_metrics
from streams.commands.produce import produce_lines
from streams.emulator import EmulatorServer
from tests.support import WorkerProcess, wait_for, worker_env

pytestmark = [pytest.mark.integration, pytest.mark.e2e]

PARTITIONS = 64
STREAM_TOPICS = 3  # by-device, by-person, requests; the source and replay topics are the source reader's


def _identify_and_track(n: int) -> list[str]:
    lines = []
    for i in range(n):
        lines.append(f'{{"type":"identify","userId":"u-{i}","messageId":"i-{i}","timestamp":"2026-11-01T10:00:00Z",'
                     f'"traits":{{"email":"p{i}@example.com","plan":"pro"}}}}')
        lines.append(f'{{"type":"track","userId":"u-{i}","messageId":"t-{i}","timestamp":"2026-11-01T10:00:01Z",'
                     f'"event":"Signed Up","properties":{{"email":"p{i}@example.com"}}}}')
    return lines


def _ready(port: str) -> bool:
    try:
        return httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=5).status_code == 200
    except httpx.HTTPError:
        return False


async def test_a_worker_on_64_partitions_starts_delivers_and_reports_no_false_lag(
    kafka_bootstrap: str, emulator: EmulatorServer, tmp_path: Path
) -> None:
    env = worker_env(kafka_bootstrap, emulator.url, tmp_path / "data", FPI_TOPIC_PARTITIONS=str(PARTITIONS))
    admin = AIOKafkaAdminClient(bootstrap_servers=kafka_bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(env["FPI_SOURCE_TOPIC"], PARTITIONS, 1)])
    finally:
        await admin.close()
    people = 40
    report = await produce_lines(_identify_and_track(people), bootstrap=kafka_bootstrap, topic=env["FPI_SOURCE_TOPIC"])
    assert report.sent == 2 * people

    worker = WorkerProcess(env, tmp_path / "worker.log").start()
    try:
        await asyncio.to_thread(wait_for, lambda: _ready(env["FPI_WEB_PORT"]), 90, what="/readyz 200")
        await asyncio.to_thread(wait_for, lambda: len(emulator.state.project.events) >= people, 60,
                                what="the events produced before the worker joined")

        def idle_lag() -> list[Sample] | None:  # sampled every 5 s; 0 once everything is committed
            lag = [s for s in scrape_metrics(env["FPI_WEB_PORT"], timeout=10) if s.name == "fpi_consumer_lag"]
            return lag if lag and all(s.value == 0 for s in lag) else None

        lag = await asyncio.to_thread(wait_for, idle_lag, 60, what="zero consumer lag on an idle worker")
    except BaseException:
        print(worker.log_text()[-6000:])
        raise
    finally:
        worker.stop()
    log = worker.log_text()
    # one step for all of them; faust's one-partition leader topic may be among them
    rewound = re.search(r"Rewound (\d+) stream partitions", log)
    assert rewound and int(rewound.group(1)) in (STREAM_TOPICS * PARTITIONS, STREAM_TOPICS * PARTITIONS + 1), log
    lag_topics = {s.labels["topic"] for s in lag}
    assert env["FPI_SOURCE_TOPIC"] in lag_topics
    assert not [topic for topic in lag_topics if topic.endswith("-changelog")], lag_topics
    errors = [line for line in log.splitlines() if '"level":"error"' in line]
    assert errors == [], "a healthy start-up logs no error line:\n" + "\n".join(errors)
