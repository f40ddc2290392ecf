"""`check` against the real broker and the emulator: what it passes, what it fails, and its exit code."""

from __future__ import annotations

import asyncio
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from streams.commands.check import Check, run_checks
from streams.emulator import EmulatorServer
from streams.settings import Settings
from streams.topics import worker_topics
from tests.support import EMULATOR_KEY, REPO, WorkerProcess, free_port, settings_of, unique, wait_for

pytestmark = pytest.mark.integration


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


def topic_env(kafka_bootstrap: str, **extra: str) -> dict[str, str]:
    app_id = unique("prov")
    return {**os.environ, "FPI_KAFKA_BOOTSTRAP": kafka_bootstrap, "FPI_APP_ID": app_id,
            "FPI_SOURCE_TOPIC": f"{app_id}.events", "FPI_REPLAY_TOPIC": f"{app_id}.replay",
            "FPI_BY_PERSON_TOPIC": f"{app_id}.by-person", "FPI_REQUESTS_TOPIC": f"{app_id}.requests",
            "FPI_DEAD_LETTER_TOPIC": f"{app_id}.dead", "FPI_TOPIC_PARTITIONS": "3", "COLUMNS": "250", **extra}


def run_cli(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "streams", *args], env=env, capture_output=True, text=True,
                          timeout=120, cwd=REPO)


def topic_rows(stdout: str) -> dict[str, str]:
    return dict(re.findall(r"│ topic (\S+) +│ (\w+) ", stdout))


def test_topics_create_provisions_what_the_worker_needs(kafka_bootstrap: str, emulator: EmulatorServer,
                                                        tmp_path: Path) -> None:
    """The topics Job's way (`topics create`), then a worker that may not create topics starts."""
    env = topic_env(kafka_bootstrap, FPI_CREATE_TOPICS="false", FPI_ITERABLE_BASE_URL=emulator.url,
                    FPI_ITERABLE_API_KEY=EMULATOR_KEY)
    settings = settings_of({name: value for name, value in env.items() if name.startswith("FPI_")})
    names = [spec.name for spec in worker_topics(settings)]
    created = run_cli(["topics", "create"], env)
    assert created.returncode == 0, created.stdout + created.stderr
    assert created.stdout == f"created {len(names)} topics: {', '.join(names)}\n"
    assert run_cli(["topics", "create"], env).stdout == "created 0 topics (all existed)\n"

    checked = run_cli(["check"], env)
    assert checked.returncode == 0, checked.stdout
    assert topic_rows(checked.stdout) == dict.fromkeys(names, "pass")
    assert "3 partitions, cleanup.policy=compact" in checked.stdout

    worker_settings = {"FPI_WEB_PORT": str(free_port()), "FPI_WEB_BIND": "127.0.0.1",
                       "FPI_DATA_DIR": str(tmp_path / "data")}
    worker = WorkerProcess({**env, **worker_settings}, tmp_path / "worker.log").start()
    try:
        ready = f"http://127.0.0.1:{worker_settings['FPI_WEB_PORT']}/readyz"

        def is_ready() -> bool:
            assert worker.alive(), worker.log_text()[-3000:]
            try:
                return httpx.get(ready, timeout=2).status_code == 200
            except httpx.HTTPError:
                return False

        wait_for(is_ready, 90, 0.5, what="the worker's readiness")
    finally:
        worker.stop()


def test_topics_commands_are_the_same_list(kafka_bootstrap: str) -> None:
    env = topic_env(kafka_bootstrap, FPI_TOPIC_REPLICATION_FACTOR="3")
    result = run_cli(["topics", "commands", "--kafka-topics", "/opt/kafka/bin/kafka-topics.sh",
                      "--command-config", "/etc/kafka-client/client.properties"], env)
    assert result.returncode == 0, result.stderr
    app_id = env["FPI_APP_ID"]
    lines = result.stdout.splitlines()
    assert [shlex.split(line)[shlex.split(line).index("--topic") + 1] for line in lines] == [
        f"{app_id}.events", f"{app_id}.replay", f"{app_id}-by-device", f"{app_id}.by-person", f"{app_id}.requests",
        f"{app_id}.dead", f"{app_id}-aliases-changelog", f"{app_id}-identities-changelog"]
    assert lines[-1] == (f"/opt/kafka/bin/kafka-topics.sh --bootstrap-server {kafka_bootstrap} --command-config "
                         "/etc/kafka-client/client.properties --create --if-not-exists --topic "
                         f"{app_id}-identities-changelog --partitions 3 --replication-factor 3 --config "
                         "cleanup.policy=compact")
    assert "--config retention.ms=2592000000" in lines[5]


async def test_topics_as_the_old_job_made_them_fail_check_and_the_worker(kafka_bootstrap: str) -> None:
    """Issue 16: the Job created every topic but the replay topic, so a worker with FPI_CREATE_TOPICS=false
    died with "missing topics" while `check` passed."""
    env = topic_env(kafka_bootstrap, FPI_CREATE_TOPICS="false")
    app_id = env["FPI_APP_ID"]
    admin = AIOKafkaAdminClient(bootstrap_servers=kafka_bootstrap)
    await admin.start()
    try:
        plain = [env["FPI_SOURCE_TOPIC"], f"{app_id}-by-device", env["FPI_BY_PERSON_TOPIC"],
                 env["FPI_REQUESTS_TOPIC"], env["FPI_DEAD_LETTER_TOPIC"]]
        await admin.create_topics(
            [NewTopic(name, 3, 1) for name in plain]
            + [NewTopic(f"{app_id}-{table}-changelog", 3, 1, topic_configs={"cleanup.policy": "compact"})
               for table in ("aliases", "identities")])
    finally:
        await admin.close()
    checked = await asyncio.to_thread(run_cli, ["check"], env)
    assert checked.returncode == 1, checked.stdout
    rows = topic_rows(checked.stdout)
    assert rows.pop(env["FPI_REPLAY_TOPIC"]) == "fail"
    assert set(rows.values()) == {"pass"}, checked.stdout

    worker = await asyncio.to_thread(run_cli, ["worker"], {**env, "FPI_LOG_FORMAT": "text"})
    assert worker.returncode == 2
    assert f"missing topics and FPI_CREATE_TOPICS=false: {env['FPI_REPLAY_TOPIC']};" in worker.stderr


async def test_check_fails_a_changelog_that_is_not_compacted(kafka_bootstrap: str) -> None:
    env = topic_env(kafka_bootstrap)
    changelog = f"{env['FPI_APP_ID']}-identities-changelog"
    await create_topics(kafka_bootstrap, {changelog: 3})  # the broker's default policy: delete
    results = by_name(await run_checks(settings_of({k: v for k, v in env.items() if k.startswith("FPI_")})))
    assert (results[f"topic {changelog}"].status, results[f"topic {changelog}"].detail) == (
        "fail", "cleanup.policy=delete, expected compact (a changelog deleted by time loses table state on recovery)")
    created = await asyncio.to_thread(run_cli, ["topics", "create"], env)
    assert created.returncode == 1
    assert f"topic {changelog}: cleanup.policy=delete, expected compact" in created.stderr
