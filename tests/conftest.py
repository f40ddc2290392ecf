"""Fixtures shared by every tier.

The real Kafka broker is found through ``KAFKA_BOOTSTRAP`` (``.ci/run`` starts one with
``dev/kafka/broker.sh`` and exports it). When the variable is unset, the first test that needs
Kafka starts a private broker on free ports and stops it at the end of the session. ``emulator`` is
a fresh Iterable emulator per test, served over HTTP on a free loopback port.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from streams._support import LocalBroker
from streams.emulator import EmulatorConfig, EmulatorServer
from tests.support import EMULATOR_KEY


@pytest.fixture(scope="session")
def kafka_bootstrap(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    configured = os.environ.get("KAFKA_BOOTSTRAP")
    if configured:
        yield configured
        return
    with LocalBroker(tmp_path_factory.mktemp("kafka-run")) as broker:
        yield broker.bootstrap


@pytest.fixture()
def emulator() -> Iterator[EmulatorServer]:
    with EmulatorServer(EmulatorConfig(api_keys=(EMULATOR_KEY,))) as server:
        yield server
