"""Fixtures shared by every tier.

The real Kafka broker is found through ``KAFKA_BOOTSTRAP`` (``.ci/run`` starts one with
``dev/kafka/broker.sh`` and exports it). When the variable is unset, the first test that needs
Kafka starts a private broker on free ports and stops it at the end of the session. ``emulator`` is
a fresh Iterable emulator per test, served over HTTP on a free loopback port.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import hypothesis  # noqa: F401  (imported here, see below)
import pytest

from streams._support import LocalBroker
from streams.emulator import EmulatorConfig, EmulatorServer
from tests.support import EMULATOR_KEY

# hypothesis is imported now, while pytest collects, and not at the end of a session that ran no test of
# it (its plugin imports it for the summary): pytest rewrites it with ast.parse, and after a test that
# built a faust app, CPython 3.11.7 can fail there with "AST constructor recursion depth mismatch"
# (python/cpython#106905), which fails `pytest tests/unit/test_app_buffers.py` run alone.


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
