"""End to end on the real broker: push device tokens (issue 21 part 2).

A person identifies from a phone, then sends 1,000 events that all carry the same push token: Iterable (the
emulator) gets exactly one ``users/registerDeviceToken`` call, and the device is on the profile.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from streams.commands.produce import produce_lines
from streams.emulator import EmulatorServer
from tests.support import WorkerProcess, running, wait_for, worker_env

pytestmark = [pytest.mark.integration, pytest.mark.e2e]

EMAIL = "push.person@example.com"
CONTEXT = {"traits": {"email": EMAIL}, "device": {"token": "fcm-token-1", "type": "android"}}
EVENTS = 1000


def line(message_id: str, **fields: object) -> str:
    return json.dumps({"messageId": message_id, "anonymousId": "phone-1", "timestamp": "2024-03-05T14:00:00Z",
                       "context": CONTEXT, **fields})


async def test_a_token_on_a_thousand_events_is_registered_once(
    kafka_bootstrap: str, emulator: EmulatorServer, tmp_path: Path
) -> None:
    project = emulator.state.project
    env = worker_env(kafka_bootstrap, emulator.url, tmp_path / "data", FPI_PUSH_APP_NAME="com.example.shop")
    path = "/api/users/registerDeviceToken"
    with running(WorkerProcess(env, tmp_path / "worker.log")):
        await produce_lines([line("p-0", type="identify", traits={"email": EMAIL})],
                            bootstrap=kafka_bootstrap, topic=env["FPI_SOURCE_TOPIC"])
        await asyncio.to_thread(wait_for, lambda: EMAIL in project.by_email, 120, what="the identified user")
        lines = [line(f"p-{n}", type="track", event="Opened App") for n in range(1, EVENTS + 1)]
        await produce_lines(lines, bootstrap=kafka_bootstrap, topic=env["FPI_SOURCE_TOPIC"])
        await asyncio.to_thread(wait_for, lambda: f"p-{EVENTS}" in project.events and
                                sum(f"p-{n}" in project.events for n in range(1, EVENTS + 1)) == EVENTS, 180,
                                what="the 1,000 events")
        await asyncio.sleep(1)
    calls = {key: n for key, n in project.counters.responses.items() if key.startswith(path)}
    assert calls == {f"{path} 200": 1}
    devices = project.by_email[EMAIL].data_fields["devices"]
    assert [(d["token"], d["platform"], d["applicationName"]) for d in devices] == [
        ("fcm-token-1", "GCM", "com.example.shop")]
