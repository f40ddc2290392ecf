"""Fixtures shared by every tier.

The real Kafka broker is found through ``KAFKA_BOOTSTRAP`` (``.ci/run`` starts one with
``dev/kafka/broker.sh`` and exports it). When the variable is unset, the first test that needs
Kafka starts a private broker on free ports and stops it at the end of the session. ``emulator`` is
a fresh Iterable emulator per test, served over HTTP on a free loopback port.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator

import pytest

from streams.emulator import EmulatorConfig, EmulatorServer
from tests.support import EMULATOR_KEY, REPO, free_port


@pytest.fixture(scope="session")
def kafka_bootstrap(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    configured = os.environ.get("KAFKA_BOOTSTRAP")
    if configured:
        yield configured
        return
    port = free_port()
    env = {
        **os.environ,
        "KAFKA_PORT": str(port),
        "KAFKA_CONTROLLER_PORT": str(free_port()),
        "KAFKA_RUN_DIR": str(tmp_path_factory.mktemp("kafka-run")),
    }
    script = str(REPO / "dev" / "kafka" / "broker.sh")
    subprocess.run(["bash", script, "start"], env=env, check=True)
    try:
        yield f"127.0.0.1:{port}"
    finally:
        subprocess.run(["bash", script, "stop"], env=env, check=False)


@pytest.fixture()
def emulator() -> Iterator[EmulatorServer]:
    with EmulatorServer(EmulatorConfig(api_keys=(EMULATOR_KEY,))) as server:
        yield server
