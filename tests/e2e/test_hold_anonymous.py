"""Held anonymous events reach Iterable under their person once the device is identified in the window.

A worker with ``FPI_HOLD_ANONYMOUS_SECONDS=600`` on the real broker and the emulator: visitors read pages
before signing up. The worker is killed (SIGKILL) while it holds them and restarted, so the held events
come back from the ``held`` changelog. Then some visitors identify within the window and their page views
reach Iterable as theirs, after their profile; others identify after the window and their page views do
not. ``explain`` with the same rule predicts the same.
"""

from __future__ import annotations

import asyncio
import json
import re
import urllib.request
from datetime import timedelta
from pathlib import Path

import pytest

from streams.commands.produce import produce_lines
from streams.emulator import EmulatorServer
from streams.explain import explain_lines
from streams.identity import HoldRule
from streams.mapping import MappingConfig
from tests.support import WorkerProcess, wait_for, worker_env

pytestmark = [pytest.mark.integration, pytest.mark.e2e]

VISITORS = 6
WINDOW = 600


def line(**fields: object) -> str:
    return json.dumps(fields)


def page_views() -> list[str]:
    return [line(type="page", messageId=f"pv-{n}-{k}", timestamp=f"2024-03-05T12:0{k}:00Z", anonymousId=f"dev-{n}",
                 name=f"Page {k}", properties={"url": f"https://example.com/{k}"})
            for n in range(VISITORS) for k in range(2)]


def identify(n: int, time: str) -> str:
    return line(type="identify", messageId=f"id-{n}", timestamp=time, anonymousId=f"dev-{n}", userId=f"u-{n}",
                traits={"email": f"visitor{n}@example.com"})


IN_TIME = range(VISITORS // 2)
"""Identify at 12:05, within 600 s of the page views (12:00, 12:01)."""
TOO_LATE = range(VISITORS // 2, VISITORS)
"""Identify at 12:30: their page views are older than the window."""


def held_now(port: str) -> float:
    """``fpi_anonymous_held_now`` of the worker; -1 while it does not answer."""
    no_proxy = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        text = no_proxy.open(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    except OSError:
        return -1
    found = re.search(r"^fpi_anonymous_held_now (\S+)$", text, re.MULTILINE)
    return float(found.group(1)) if found else 0.0


async def test_page_views_before_signup_reach_iterable_under_the_profile(
    kafka_bootstrap: str, emulator: EmulatorServer, tmp_path: Path
) -> None:
    env = worker_env(kafka_bootstrap, emulator.url, tmp_path / "data", FPI_HOLD_ANONYMOUS_SECONDS=str(WINDOW),
                     FPI_TABLE_STANDBY_REPLICAS="0", FPI_CONSUMER_INSTANCE_ID="worker-0")
    log = tmp_path / "worker.log"
    project = emulator.state.project
    worker = WorkerProcess(env, log).start()
    released = {f"pv-{n}-{k}" for n in IN_TIME for k in range(2)}
    try:
        await produce_lines(page_views(), bootstrap=kafka_bootstrap, topic=env["FPI_SOURCE_TOPIC"])
        await asyncio.to_thread(wait_for, lambda: held_now(env["FPI_WEB_PORT"]) == 2 * VISITORS, 90,
                                what="the page views held")
        # Let faust write the changelog and commit, then die holding them.
        await asyncio.sleep(4)
        worker.kill()
        worker = WorkerProcess(env, log).start()

        await produce_lines([identify(n, "2024-03-05T12:05:00Z") for n in IN_TIME], bootstrap=kafka_bootstrap,
                            topic=env["FPI_SOURCE_TOPIC"])
        await asyncio.to_thread(wait_for, lambda: released <= set(project.events), 90,
                                what="the held page views of the visitors who signed up in time")
        await produce_lines([identify(n, "2024-03-05T12:30:00Z") for n in TOO_LATE], bootstrap=kafka_bootstrap,
                            topic=env["FPI_SOURCE_TOPIC"])
        await asyncio.to_thread(wait_for, lambda: len(project.users) == VISITORS, 90, what="every visitor's profile")
        await asyncio.to_thread(wait_for, lambda: held_now(env["FPI_WEB_PORT"]) == 0, 30,
                                what="nothing held any more")
    except BaseException:
        print(worker.log_text()[-5000:])
        raise
    finally:
        worker.stop()

    assert set(project.events) == released, "late visitors' page views stay anonymous"
    for n in IN_TIME:
        views = [event for event in project.events.values() if event["userId"] == f"u-{n}"]
        assert sorted(event["eventName"] for event in views) == ["Page Viewed", "Page Viewed"]
        assert {event["email"] for event in views} == {f"visitor{n}@example.com"}

    lines = [*page_views(), *(identify(n, "2024-03-05T12:05:00Z") for n in IN_TIME),
             *(identify(n, "2024-03-05T12:30:00Z") for n in TOO_LATE)]
    rule = HoldRule(timedelta(seconds=WINDOW), per_device=200, total=1000)
    predicted = {request["body"]["id"] for record in explain_lines(lines, MappingConfig(), hold=rule)
                 for request in record["requests"] if request["path"] == "/api/events/track"}
    assert predicted == released
