"""Tables survive a SIGKILL: after a restart the worker still knows who was identified.

Phase 1 identifies people (device -> person in ``aliases``, person in ``identities``); the worker
is killed with SIGKILL. Phase 2 sends events that only the tables can attribute (anonymous-id-only
events of the identified devices, and tracks by user id that require an earlier identify). If a
table came back empty, they would be dropped as anonymous instead of reaching Iterable.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from streams.commands.produce import produce_lines
from streams.emulator import EmulatorServer
from tests.support import WorkerProcess, wait_for, worker_env

pytestmark = [pytest.mark.integration, pytest.mark.e2e]

PEOPLE = 8


def line(**fields: object) -> str:
    return json.dumps(fields)


def identifies() -> list[str]:
    return [line(type="identify", messageId=f"id-{n}", timestamp="2024-03-05T12:00:00Z", anonymousId=f"dev-{n}",
                 userId=f"u-{n}", traits={"email": f"person{n}@example.com", "plan": "pro"}) for n in range(PEOPLE)]


def later_events() -> list[str]:
    out = []
    for n in range(PEOPLE):
        out.append(line(type="track", messageId=f"anon-{n}", timestamp="2024-03-05T12:05:00Z",
                        anonymousId=f"dev-{n}", event="Viewed Pricing", properties={"n": n}))
        out.append(line(type="track", messageId=f"known-{n}", timestamp="2024-03-05T12:06:00Z",
                        userId=f"u-{n}", event="Started Trial", properties={"n": n}))
    return out


@pytest.mark.parametrize("store", ["memory://", "rocksdb://"])
async def test_tables_recover_after_sigkill(
    store: str, kafka_bootstrap: str, emulator: EmulatorServer, tmp_path: Path
) -> None:
    # A stable instance id (as the StatefulSet gives each pod) lets the restarted worker take its
    # partitions back at once instead of waiting for the session of the killed one to time out.
    env = worker_env(kafka_bootstrap, emulator.url, tmp_path / "data", FPI_STORE=store,
                     FPI_TABLE_STANDBY_REPLICAS="0", FPI_CONSUMER_INSTANCE_ID="worker-0")
    log = tmp_path / "worker.log"
    worker = WorkerProcess(env, log).start()
    project = emulator.state.project
    try:
        await produce_lines(identifies(), bootstrap=kafka_bootstrap, topic=env["FPI_SOURCE_TOPIC"])
        await asyncio.to_thread(wait_for, lambda: len(project.users) == PEOPLE, 90, what="identified users")
        # Let faust commit and write the changelog; then die without any chance to flush more.
        await asyncio.sleep(4)
        worker.kill()

        await produce_lines(later_events(), bootstrap=kafka_bootstrap, topic=env["FPI_SOURCE_TOPIC"])
        worker = WorkerProcess(env, log).start()
        expected = {f"anon-{n}" for n in range(PEOPLE)} | {f"known-{n}" for n in range(PEOPLE)}
        await asyncio.to_thread(wait_for, lambda: expected <= set(project.events), 90,
                                what="events attributed through the recovered tables")
    except BaseException:
        print("missing:", sorted(expected - set(project.events)) if "expected" in locals() else "-")
        print(worker.log_text()[-5000:])
        raise
    finally:
        worker.stop()
    assert set(project.events) == expected
    assert len(project.users) == PEOPLE
