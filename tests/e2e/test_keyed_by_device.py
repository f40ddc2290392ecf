"""FPI_SOURCE_KEYED_BY_DEVICE=true: the first hop is skipped, and the sample still reaches the emulator
exactly as explain predicts (the source topic is keyed by device, as `produce` keys it)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from streams.commands.produce import produce_lines
from streams.emulator import EmulatorServer
from streams.mapping import MappingConfig
from tests.e2e.test_sample_pipeline import SAMPLE, expected_outcome
from tests.support import WorkerProcess, wait_for, worker_env

pytestmark = [pytest.mark.integration, pytest.mark.e2e]


async def test_sample_without_the_first_hop(kafka_bootstrap: str, emulator: EmulatorServer, tmp_path: Path) -> None:
    lines = SAMPLE.read_text().splitlines()
    event_ids, purchase_ids, _, _ = expected_outcome(lines, MappingConfig())
    env = worker_env(kafka_bootstrap, emulator.url, tmp_path / "data", FPI_SOURCE_KEYED_BY_DEVICE="true")
    admin = AIOKafkaAdminClient(bootstrap_servers=kafka_bootstrap)
    await admin.start()
    try:  # the aliases table is co-partitioned with the source topic here
        await admin.create_topics([NewTopic(env["FPI_SOURCE_TOPIC"], int(env["FPI_TOPIC_PARTITIONS"]), 1)])
    finally:
        await admin.close()
    worker = WorkerProcess(env, tmp_path / "worker.log").start()
    try:
        await produce_lines(lines, bootstrap=kafka_bootstrap, topic=env["FPI_SOURCE_TOPIC"])
        project = emulator.state.project
        await asyncio.to_thread(wait_for, lambda: set(project.events) >= event_ids
                                and set(project.purchases) >= purchase_ids, 120, what="the sample delivered")
    except BaseException:
        print(worker.log_text()[-5000:])
        raise
    finally:
        worker.stop()
    assert set(project.events) == event_ids
    assert set(project.purchases) == purchase_ids
    log = worker.log_text()
    assert "resolve_source]: Starting" in log  # the agent that reads the source topic directly
    assert "route]: Starting" not in log
