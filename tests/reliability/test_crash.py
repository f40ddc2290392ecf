"""SIGKILL the worker at random points of a run and restart it: Iterable ends up exactly as expected.

The restarted worker has the same app id and topics and a memory store, so its tables come back
from their changelogs. At-least-once from Kafka means a crash may resend requests (Iterable
dedups by id: ``resent_*`` in the report) and may write a dead letter twice (acceptable, the
dead-letter topic is at-least-once too); it must never lose an event or a dead letter.
"""

from __future__ import annotations

import random
import time
from typing import Any

import pytest

from tests.reliability.conftest import PROFILE, message_ids
from tests.reliability.workload import expect, generate

pytestmark = [pytest.mark.integration, pytest.mark.reliability, pytest.mark.timeout(PROFILE.deliver_timeout * 3)]


def test_sigkill_at_random_points_loses_nothing(rig_factory: Any) -> None:
    seed = random.randrange(1 << 30)
    print(f"seed={seed}")
    rng = random.Random(seed)
    workload = generate(PROFILE.crash_people, PROFILE.crash_events, seed)
    expected = expect(workload.lines)
    total = len(expected.project.events)
    # Static group membership (the StatefulSet pod name in k8s): the restarted worker takes its
    # partitions back at once instead of waiting out the killed member's session timeout.
    rig = rig_factory(FPI_CONSUMER_INSTANCE_ID="worker-0")
    worker = rig.start_worker()
    produced = rig.produce(workload.lines)
    assert produced == expected.produced
    project = rig.emulator.state.project
    started = time.monotonic()
    kills: list[int] = []
    resent: list[int] = []
    # Kill points spread over the delivery: each after a random share of the events arrived.
    targets = sorted(rng.uniform(0.05, 0.85) for _ in range(PROFILE.crash_kills))
    for target in targets:
        deadline = time.monotonic() + PROFILE.deliver_timeout
        while len(project.events) < target * total and time.monotonic() < deadline:
            assert worker.alive(), worker.log_text()[-3000:]
            time.sleep(0.05)
        time.sleep(rng.uniform(0, 0.5))
        kills.append(len(project.events))
        resent.append(project.counters.duplicate_event_ids)
        print(f"kill at {time.monotonic() - started:.1f}s with {kills[-1]}/{total} events delivered, "
              f"{resent[-1]} resent so far")
        worker.kill()
        worker = rig.start_worker(FPI_WEB_PORT=rig.env["FPI_WEB_PORT"], FPI_DATA_DIR=rig.env["FPI_DATA_DIR"])

    rig.wait_delivered(expected)
    print(f"delivered after {time.monotonic() - started:.1f}s")
    letters = rig.wait_dead_letters(sum(expected.dead.values()))
    seen = message_ids(letters)
    rig.report("crash", produced, letters, kills_at_delivered=kills, expected_events=total,
               expected_dead=dict(expected.dead), duplicate_dead_letters=sum(seen.values()) - len(seen))

    # Every expected dead letter is there (a crash may repeat one), and nothing else is.
    assert set(seen) == set(expected.dead_ids)
    assert all(letter.reason == expected.dead_ids[letter.event.message_id]
               for letter in letters if letter.event is not None)
    assert len(letters) == sum(seen.values()), "every dead letter names its event"
    # Per person, the identify reached Iterable before the events: no event was ever refused for
    # an unknown user (the emulator refuses events of users it does not know yet).
    assert project.counters.events_rejected == 0
    assert len(kills) == PROFILE.crash_kills and kills[-1] < total, "the kills happened mid-run"
