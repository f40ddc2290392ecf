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
                        dead_letter_topic=f"{app_id}.dead", replay_topic=f"{app_id}.replay",
                        iterable_base_url=emulator.url,
                        iterable_api_key=EMULATOR_KEY)
    results = by_name(await run_checks(settings))
    assert results["kafka"].status == "pass"
    assert results["schemas"].status == "pass"
    # a fresh cluster, where the worker creates its topics: nothing fails
    assert {name: result.status for name, result in results.items() if name.startswith("topic ")} == {
        f"topic {name}": "warn" for name in (f"{app_id}.events", f"{app_id}.replay", f"{app_id}-by-device",
                                             f"{app_id}.by-person", f"{app_id}.requests", f"{app_id}.dead",
                                             f"{app_id}-aliases-changelog", f"{app_id}-identities-changelog")
    }
    assert results["iterable"].status == "pass"
    assert all(result.status != "fail" for result in results.values())

    not_created = by_name(await run_checks(settings.model_copy(update={"create_topics": False})))
    assert not_created[f"topic {app_id}.replay"].status == "fail"
    assert not_created[f"topic {app_id}.replay"].detail == "missing, and FPI_CREATE_TOPICS=false"

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
           "FPI_ITERABLE_API_KEY": "wrong-key", "COLUMNS": "250", "FPI_CREATE_TOPICS": "false"}
    result = subprocess.run([sys.executable, "-m", "streams", "check"], env=env, capture_output=True, text=True,
                            timeout=120, cwd=REPO)
    assert result.returncode == 1
    assert "rejected the API key" in result.stdout
    assert "missing, and FPI_CREATE_TOPICS=false" in result.stdout
    assert "wrong-key" not in result.stdout + result.stderr


def test_check_reports_schemas_store_and_urls(kafka_bootstrap: str, emulator: EmulatorServer) -> None:
    env = {**os.environ, "FPI_KAFKA_BOOTSTRAP": kafka_bootstrap, "FPI_APP_ID": unique("check"),
           "FPI_ITERABLE_BASE_URL": emulator.url, "FPI_ITERABLE_API_KEY": EMULATOR_KEY, "COLUMNS": "250",
           "FPI_AVRO_DIR": "/nonexistent", "FPI_STORE": "redis://cache",
           "FPI_SCHEMA_REGISTRY_URL": "registry.internal:8081"}
    result = subprocess.run([sys.executable, "-m", "streams", "check"], env=env, capture_output=True, text=True,
                            timeout=120, cwd=REPO)
    assert result.returncode == 1, result.stdout + result.stderr
    out = result.stdout  # a table: long details wrap inside their cells
    assert "Avro schema 'freshpaint_event' not found at" in out and "/nonexistent/freshpaint_event.avsc" in out
    assert "FPI_STORE='redis://cache' is not supported" in out
    assert "FPI_SCHEMA_REGISTRY_URL='registry.internal:8081' is not a valid URL" in out
    assert result.stderr == ""


def test_check_exits_2_for_an_invalid_value() -> None:
    env = {**os.environ, "FPI_TOPIC_PARTITIONS": "-1"}
    result = subprocess.run([sys.executable, "-m", "streams", "check"], env=env, capture_output=True, text=True,
                            timeout=60, cwd=REPO)
    assert (result.returncode, result.stdout) == (2, "")
    assert result.stderr == ("error [config_invalid]: invalid FPI_TOPIC_PARTITIONS='-1': Input should be greater "
                             "than or equal to 1; correct it, or unset it for the default\n")
