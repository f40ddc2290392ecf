"""End to end on the real broker: the bundled sample through a worker process into the emulator.

The expectation is computed by the same mapping core through ``explain`` (one process, in order);
the pipeline (four agents over partitioned topics) must reach exactly the same state.
"""

from __future__ import annotations

import asyncio
import re
from collections import Counter
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer

from streams._support import Sample, metric_sum, scrape_metrics
from streams.codecs import decode_dead_letter
from streams.commands.produce import produce_lines
from streams.emulator import EmulatorConfig, EmulatorServer
from streams.explain import explain_lines
from streams.mapping import MappingConfig
from streams.model import ProjectType
from tests.support import EMULATOR_KEY, REPO, WorkerProcess, wait_for, worker_env

pytestmark = [pytest.mark.integration, pytest.mark.e2e]

SAMPLE = REPO / "tests" / "data" / "sample_events.jsonl"
QUIET = {"anonymous", "filtered_by_transformation", "stale_identify", "unchanged"}


def expected_outcome(lines: list[str], config: MappingConfig) -> tuple[set[str], set[str], Counter[str], int]:
    event_ids: set[str] = set()
    purchase_ids: set[str] = set()
    dead: Counter[str] = Counter()
    valid = 0
    for record in explain_lines(lines, config):
        if record["decision"] == "error":
            continue  # not an event at all: `produce` refuses it, so it never reaches Kafka
        valid += 1
        if record["decision"] == "drop" and record["reason"] not in QUIET:
            dead[record["reason"]] += 1
        for request in record["requests"]:
            if request["path"] == "/api/events/track":
                event_ids.add(request["body"]["id"])
            elif request["path"] == "/api/commerce/trackPurchase":
                purchase_ids.add(request["body"]["id"])
    return event_ids, purchase_ids, dead, valid


async def read_dead_letters(bootstrap: str, topic: str, count: int) -> list[bytes]:
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest")
    await consumer.start()
    values: list[bytes] = []
    try:
        while len(values) < count:
            batch = await asyncio.wait_for(consumer.getmany(timeout_ms=1000), timeout=30)
            for messages in batch.values():
                values.extend(m.value for m in messages)
    finally:
        await consumer.stop()
    return values


@pytest.mark.parametrize("project_type", list(ProjectType))
async def test_sample_reaches_the_emulator_exactly_as_explain_predicts(
    project_type: ProjectType, kafka_bootstrap: str, tmp_path: Path
) -> None:
    with EmulatorServer(EmulatorConfig(api_keys=(EMULATOR_KEY,), project_type=project_type)) as emulator:
        await run_sample(project_type, kafka_bootstrap, emulator, tmp_path)


async def run_sample(project_type: ProjectType, kafka_bootstrap: str, emulator: EmulatorServer,
                     tmp_path: Path) -> None:
    lines = SAMPLE.read_text().splitlines()
    event_ids, purchase_ids, dead, valid = expected_outcome(lines, MappingConfig(project_type=project_type))
    assert event_ids and purchase_ids and dead, "the sample must exercise events, purchases and dead letters"
    env = worker_env(kafka_bootstrap, emulator.url, tmp_path / "data", FPI_PROJECT_TYPE=project_type.value)
    worker = WorkerProcess(env, tmp_path / "worker.log").start()
    try:
        report = await produce_lines(lines, bootstrap=kafka_bootstrap, topic=env["FPI_SOURCE_TOPIC"])
        assert report.sent == valid

        def delivered() -> bool:
            project = emulator.state.project
            return set(project.events) >= event_ids and set(project.purchases) >= purchase_ids

        await asyncio.to_thread(wait_for, delivered, 120, what="sample events in the emulator")
        letters = [decode_dead_letter(v) for v in
                   await read_dead_letters(kafka_bootstrap, env["FPI_DEAD_LETTER_TOPIC"], sum(dead.values()))]

        def lag_sampled() -> list[Sample] | None:  # consumer lag is sampled every 5 s
            samples = scrape_metrics(env["FPI_WEB_PORT"], timeout=10)
            return samples if any(s.name == "fpi_consumer_lag" for s in samples) else None

        samples = await asyncio.to_thread(wait_for, lag_sampled, 20, what="the consumer lag series")
    except BaseException:
        print(worker.log_text()[-6000:])
        raise
    finally:
        worker.stop()
    project = emulator.state.project
    assert set(project.events) == event_ids
    assert set(project.purchases) == purchase_ids
    assert project.counters.duplicate_event_ids == 0
    assert Counter(letter.reason for letter in letters) == dead
    assert all(letter.source_topic == env["FPI_SOURCE_TOPIC"] for letter in letters)

    assert_metrics_moved(samples, delivered_events=len(event_ids))
    assert_no_secrets_or_emails(worker.log_text(), lines)


def assert_metrics_moved(samples: list[Sample], *, delivered_events: int) -> None:
    assert metric_sum(samples, "fpi_events_in_total", type="identify") > 0
    assert metric_sum(samples, "fpi_events_dropped_total", reason="anonymous") > 0
    assert metric_sum(samples, "fpi_dead_letters_total") > 0
    bulk = "/api/events/trackBulk"
    assert metric_sum(samples, "fpi_iterable_http_requests_total", endpoint=bulk, status="200") > 0
    assert metric_sum(samples, "fpi_iterable_batch_items_sum", endpoint=bulk) >= delivered_events
    # the lag alert's series, sampled from the consumer
    assert any(s.name == "fpi_consumer_lag" for s in samples)


def assert_no_secrets_or_emails(log: str, lines: list[str]) -> None:
    emails = set(re.findall(r"[\w.+-]+@[\w-]+\.[\w.]+", "\n".join(lines)))
    assert emails, "the sample carries emails"
    assert log, "the worker wrote logs"
    assert EMULATOR_KEY not in log
    leaked = sorted(email for email in emails if email in log)
    assert not leaked, f"emails in worker logs: {leaked}"
