"""A second worker joins mid-run and later leaves (SIGTERM): nothing lost, nothing stored twice."""

from __future__ import annotations

import time
from typing import Any

import pytest

from tests.reliability.conftest import PROFILE, message_ids
from tests.reliability.workload import planned
from tests.support import wait_for

pytestmark = [pytest.mark.integration, pytest.mark.reliability, pytest.mark.timeout(PROFILE.deliver_timeout * 3)]


def test_second_worker_joins_and_leaves_without_loss(rig_factory: Any) -> None:
    workload, expected = planned(PROFILE.rebalance_events, seed=31)
    third = len(workload.lines) // 3
    rig = rig_factory()
    first, produced = rig.start_delivering(workload.lines[:third])
    project = rig.emulator.state.project
    second = rig.start_worker()
    produced += rig.produce(workload.lines[third:2 * third])
    # The second worker took partitions and delivered some of them before it leaves.
    wait_for(lambda: "Setting newly assigned partitions" in second.log_text(), 60, what="the second worker's join")
    time.sleep(8)
    second.stop()
    produced += rig.produce(workload.lines[2 * third:])

    rig.wait_delivered(expected)
    letters = rig.wait_dead_letters(sum(expected.dead.values()))
    seen = message_ids(letters)
    rig.report("rebalance", produced, letters, duplicate_dead_letters=sum(seen.values()) - len(seen))
    assert first.alive()
    assert second.proc is not None and second.proc.returncode is not None
    # Exactly the expected ids, each stored once (Iterable dedups resends by id: see resent_*).
    assert len(project.events) == len(expected.project.events)
    assert set(seen) == set(expected.dead_ids)
    assert project.counters.events_rejected == 0
