"""The container image, built from the Dockerfile and run as Compose and Kubernetes run it.

The emulator, the worker and ``produce`` each run in a container of the image (host network, the test
broker on 127.0.0.1, no ``FPI_AVRO_DIR``: the schemas come with the package); the bundled sample must
reach the emulator exactly as ``tests/data/sample_events.expected.jsonl`` says, the same oracle as the
end-to-end test (``tests/e2e/test_sample_pipeline.py``). As shipped on 2026-12-01 the worker exited
at start with a ConfigError (schemas not found) and every ``produce`` line was refused.
"""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from pathlib import Path

import httpx
import pytest

from streams.codecs import decode_dead_letter
from streams.mapping import MappingConfig
from tests.e2e.test_sample_pipeline import (
    SAMPLE,
    assert_no_secrets_or_emails,
    expected_outcome,
    read_dead_letters,
)
from tests.image.podman import Container, run_once
from tests.support import EMULATOR_KEY, free_port, wait_for, worker_env

pytestmark = [pytest.mark.integration, pytest.mark.image, pytest.mark.timeout(900)]

EXPECTED = SAMPLE.with_name("sample_events.expected.jsonl")
DATA_DIR = "/var/lib/freshpaint-iterable"
HEALTHCHECK = "/usr/local/lib/freshpaint-iterable/healthcheck.py"


def expected_requests() -> Counter[str]:
    """Requests per Iterable path that sample_events.expected.jsonl says an email project gets."""
    return Counter(request["path"] for line in EXPECTED.read_text().splitlines()
                   for request in json.loads(line)["requests"])


def test_image_is_built_as_compose_and_kubernetes_expect(image: str) -> None:
    from tests.image.podman import podman

    (info,) = json.loads(podman("image", "inspect", image).stdout)
    assert info["Config"]["User"] == "10001:10001"
    assert info["Config"]["Entrypoint"] == ["freshpaint-iterable"]
    assert info["Config"]["Cmd"] == ["worker"]
    assert DATA_DIR in info["Config"]["Volumes"]
    assert info["Healthcheck"]["Test"][0] == "CMD", "HEALTHCHECK kept (podman build --format docker)"
    assert not any(name.startswith("FPI_AVRO_DIR=") for name in info["Config"]["Env"])


def test_a_one_shot_command_is_healthy_while_it_runs(image: str, containers: list[Container]) -> None:
    waiting = Container(image, ["explain", "-"], {}, extra=["--interactive"])  # waits for its stdin
    containers.append(waiting)
    result = waiting.healthcheck()
    assert result.returncode == 0, result.stdout + result.stderr
    check = waiting.exec("python", HEALTHCHECK)
    assert check.stdout.startswith("healthy: explain is a one-shot command"), check


def test_explain_in_the_image_prints_the_expected_decisions(image: str) -> None:
    result = run_once(image, ["explain", "-"], {}, stdin=SAMPLE.read_text())
    assert result.returncode == 1, result.stderr  # 1: the sample has lines that are not events
    assert [json.loads(line) for line in result.stdout.splitlines()] == [
        json.loads(line) for line in EXPECTED.read_text().splitlines()]


def test_sample_through_the_image_reaches_iterable_exactly(
    image: str, kafka_bootstrap: str, containers: list[Container], tmp_path: Path
) -> None:
    lines = SAMPLE.read_text().splitlines()
    event_ids, purchase_ids, dead, valid = expected_outcome(lines, MappingConfig())
    # The same oracle as the e2e test, and the one the repository records.
    recorded = [json.loads(line) for line in EXPECTED.read_text().splitlines()]
    assert event_ids == {r["body"]["id"] for rec in recorded for r in rec["requests"]
                         if r["path"] == "/api/events/track"}
    assert purchase_ids == {r["body"]["id"] for rec in recorded for r in rec["requests"]
                            if r["path"] == "/api/commerce/trackPurchase"}

    emulator_port = free_port()
    emulator_url = f"http://127.0.0.1:{emulator_port}"
    emulator = Container(image, ["emulator", "--port", str(emulator_port)],
                         {"FPI_ITERABLE_API_KEY": EMULATOR_KEY, "FPI_PROJECT_TYPE": "email"})
    containers.append(emulator)

    env = worker_env(kafka_bootstrap, emulator_url, Path(DATA_DIR))
    del env["FPI_DATA_DIR"]  # the image's own, a volume
    worker = Container(image, ["worker"], env)
    containers.append(worker)

    emulator.wait_healthy(30)
    produced = run_once(image, ["produce", "/data/sample_events.jsonl"],
                        {"FPI_KAFKA_BOOTSTRAP": kafka_bootstrap, "FPI_SOURCE_TOPIC": env["FPI_SOURCE_TOPIC"]},
                        extra=["--volume", f"{SAMPLE.parent}:/data:ro"])
    # Exit status 1: the sample has lines that are not events, which produce refuses and names.
    assert produced.returncode == 1, produced.stdout + produced.stderr
    assert f"produced {valid} events to {env['FPI_SOURCE_TOPIC']}" in produced.stdout + produced.stderr

    try:
        def delivered() -> bool:
            assert worker.running(), "the worker exited"
            arrivals = httpx.get(f"{emulator_url}/_emulator/arrivals", timeout=10).json()["arrivals"]
            return set(arrivals) >= event_ids | purchase_ids

        wait_for(delivered, 240, interval=1, what="the sample in the emulator")
        letters = [decode_dead_letter(value) for value in asyncio.run(
            read_dead_letters(kafka_bootstrap, env["FPI_DEAD_LETTER_TOPIC"], sum(dead.values())))]
        worker.wait_healthy(30)
        # ... and the same check fails when nothing answers on the port it probes.
        unhealthy = worker.exec("env", "FPI_WEB_PORT=1", "python", HEALTHCHECK)
        assert unhealthy.returncode == 1 and "unhealthy: worker" in unhealthy.stdout, unhealthy
        ready = httpx.get(f"http://127.0.0.1:{env['FPI_WEB_PORT']}/readyz", timeout=10)
        assert ready.status_code == 200, ready.text

        # The processes run as the image's user, without capabilities, on a read-only root.
        identity = worker.exec("python", "-c", "import os; print(os.getuid(), os.getgid()); "
                               "print([l for l in open('/proc/self/status') if l.startswith('CapEff')][0])")
        assert identity.stdout.split()[:2] == ["10001", "10001"], identity.stdout + identity.stderr
        assert identity.stdout.split()[-1] == "0000000000000000"
        writable = worker.exec("touch", "/opt/venv/probe")
        assert writable.returncode != 0 and "Read-only file system" in writable.stderr
    except BaseException:
        print(worker.logs()[-6000:])
        raise

    counters = httpx.get(f"{emulator_url}/_emulator/counters", timeout=10).json()
    arrivals = httpx.get(f"{emulator_url}/_emulator/arrivals", timeout=10).json()["arrivals"]
    exit_code = worker.stop()
    log = worker.logs()
    assert set(arrivals) == event_ids | purchase_ids
    assert counters["unique_event_ids"] == len(event_ids)
    assert counters["unique_purchase_ids"] == len(purchase_ids)
    assert counters["duplicate_event_ids"] == counters["duplicate_purchase_ids"] == 0
    wanted = expected_requests()
    assert counters["items"] == {
        "/api/users/bulkUpdate": wanted["/api/users/update"],
        "/api/events/trackBulk": wanted["/api/events/track"],
        "/api/commerce/trackPurchase": wanted["/api/commerce/trackPurchase"],
        "/api/users/updateEmail": wanted["/api/users/updateEmail"],
    }, counters
    assert Counter(letter.reason for letter in letters) == dead
    assert exit_code == 0, f"the worker's exit code on SIGTERM:\n{log[-4000:]}"
    assert_no_secrets_or_emails(log, lines)


def test_dev_runs_in_the_image_pointed_at_a_kafka(image: str, kafka_bootstrap: str) -> None:
    """``dev`` as the Dockerfile's header shows it: the image has no broker, so FPI_KAFKA_BOOTSTRAP
    names one; the emulator and the worker run inside the container, the sample is the package's."""
    event_ids, purchase_ids, _, _ = expected_outcome(SAMPLE.read_text().splitlines(), MappingConfig())
    result = run_once(image, ["dev"], {"FPI_KAFKA_BOOTSTRAP": kafka_bootstrap}, timeout=300)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-6000:]
    assert (f"events stored: {len(event_ids)} (duplicate ids received: 0), "
            f"purchases stored: {len(purchase_ids)}") in " ".join(output.split())


def test_dev_in_the_image_without_a_kafka_says_what_to_set(image: str) -> None:
    result = run_once(image, ["dev"], {}, timeout=60)
    assert result.returncode != 0
    assert "FPI_KAFKA_BOOTSTRAP" in result.stdout + result.stderr
    assert "Traceback" not in result.stdout + result.stderr
