"""The Kafka broker stops and comes back (same data) mid-run: the worker reconnects, nothing is lost.

Uses a PRIVATE broker on free ports (``dev/kafka/broker.sh`` with its own ``KAFKA_RUN_DIR``), never
the shared one, and ``broker.sh restart``, which keeps the data dir.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from streams._support import LocalBroker
from tests.reliability.conftest import LONG, PROFILE
from tests.reliability.workload import planned
from tests.support import wait_for

pytestmark = [pytest.mark.integration, pytest.mark.reliability, pytest.mark.timeout(PROFILE.deliver_timeout * 3)]

DOWNTIME = 60.0 if LONG else 8.0


@pytest.fixture()
def private_broker(tmp_path: Path) -> Iterator[LocalBroker]:
    with LocalBroker(tmp_path / "kafka", KAFKA_HEAP_OPTS="-Xms128m -Xmx512m") as broker:
        yield broker


def test_broker_restart_mid_run_loses_nothing(rig_factory: Any, private_broker: LocalBroker) -> None:
    workload, expected = planned(PROFILE.broker_events, seed=13)
    half = len(workload.lines) // 2
    rig = rig_factory(bootstrap=private_broker.bootstrap)
    worker = rig.start_worker()
    wait_for(lambda: "Worker ready" in worker.log_text() or not worker.alive(), 60, what="the worker ready")
    # On a brand-new broker the first join used to miss the topics just created (faust ignored
    # them until the next rebalance); the worker now creates them and waits before subscribing.
    assert "Ignoring missing topic" not in worker.log_text()
    project = rig.emulator.state.project
    produced = rig.produce(workload.lines[:half])
    wait_for(lambda: len(project.events) > 200, PROFILE.deliver_timeout, what="delivery to start")

    private_broker.run("stop")
    delivered_at_stop = len(project.events)
    time.sleep(DOWNTIME)
    private_broker.run("restart")
    produced += rig.produce(workload.lines[half:])

    rig.wait_delivered(expected)
    letters = rig.wait_dead_letters(sum(expected.dead.values()))
    rig.report("broker-restart", produced, letters, downtime_seconds=DOWNTIME,
               delivered_at_broker_stop=delivered_at_stop)
    assert worker.alive(), "the worker rides out the broker restart without exiting"
    assert delivered_at_stop < len(expected.project.events), "the broker stopped mid-run"
    assert {letter.reason for letter in letters} <= set(expected.dead)
    assert project.counters.events_rejected == 0
