"""`check` against the real broker and the emulator: what it passes, what it fails, and its exit code."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator

import pytest
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from streams.commands.check import Check, run_checks
from streams.emulator import EmulatorConfig, EmulatorServer
from streams.settings import Settings
from tests.support import EMULATOR_KEY, REPO, unique

pytestmark = pytest.mark.integration


@pytest.fixture()
def emulator() -> Iterator[EmulatorServer]:
    with EmulatorServer(EmulatorConfig(api_keys=(EMULATOR_KEY,))) as server:
        yield server


def by_name(results: list[Check]) -> dict[str, Check]:
    return {result.name: result for result in results}


async def create_topics(bootstrap: str, partitions: dict[str, int]) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(name, count, 1) for name, count in partitions.items()])
    finally:
        await admin.close()


async def test_check_reports_topics_and_key(kafka_bootstrap: str, emulator: EmulatorServer) -> None:
    app_id = unique("check")
    settings = Settings(app_id=app_id, kafka_bootstrap=kafka_bootstrap, source_topic=f"{app_id}.events",
                        by_person_topic=f"{app_id}.by-person", requests_topic=f"{app_id}.requests",
                        dead_letter_topic=f"{app_id}.dead", iterable_base_url=emulator.url,
                        iterable_api_key=EMULATOR_KEY)
    results = by_name(await run_checks(settings))
    assert results["kafka"].status == "pass"
    assert results[f"topic {app_id}.events"].status == "fail"
    assert results[f"topic {app_id}.by-person"].status == "warn"
    assert results["iterable"].status == "pass"

    await create_topics(kafka_bootstrap, {f"{app_id}.events": 3, f"{app_id}.by-person": 4,
                                          f"{app_id}.requests": 2})
    results = by_name(await run_checks(settings))
    assert results[f"topic {app_id}.events"].status == "pass"
    assert results[f"topic {app_id}.by-person"].status == "pass"
    assert results[f"topic {app_id}.requests"].status == "fail"
    assert "expected 4" in results[f"topic {app_id}.requests"].detail

    wrong_key = settings.model_copy(update={"iterable_api_key": "not-the-key"})
    assert by_name(await run_checks(wrong_key))["iterable"].status == "fail"


def test_check_command_exits_non_zero_and_names_the_fix(kafka_bootstrap: str, emulator: EmulatorServer) -> None:
    env = {**os.environ, "FPI_KAFKA_BOOTSTRAP": kafka_bootstrap, "FPI_APP_ID": unique("check"),
           "FPI_SOURCE_TOPIC": unique("missing"), "FPI_ITERABLE_BASE_URL": emulator.url,
           "FPI_ITERABLE_API_KEY": "wrong-key", "COLUMNS": "250"}
    result = subprocess.run([sys.executable, "-m", "streams", "check"], env=env, capture_output=True, text=True,
                            timeout=120, cwd=REPO)
    assert result.returncode == 1
    assert "rejected the API key" in result.stdout
    assert "source topic does not exist" in result.stdout
    assert "wrong-key" not in result.stdout + result.stderr
