"""End to end on the real broker: subscription preferences (issue 21 part 3).

A person identifies with ``email_opt_out: true`` (FPI_OPT_OUT_TRAITS maps it to channel 12) and email lists: the
emulator's subscription state for that channel and those lists changes, and no profile field carries the traits.
The same identify again (a replay) makes no subscription call; ``email_opt_out: false`` and one list fewer
subscribe the channel again and take the person off that list.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest

from streams.commands.produce import produce_lines
from streams.emulator import EmulatorServer
from tests.support import WorkerProcess, running, wait_for, worker_env

pytestmark = [pytest.mark.integration, pytest.mark.e2e]

EMAIL = "subscriber@example.com"
CHANNEL = 12


def identify(message_id: str, minute: int, **traits: Any) -> str:
    return json.dumps({"messageId": message_id, "type": "identify", "userId": "sub-1",
                       "timestamp": f"2024-03-05T14:{minute:02d}:00Z", "traits": {"email": EMAIL, **traits}})


def subscription_calls(emulator: EmulatorServer) -> int:
    responses = emulator.state.project.counters.responses
    return sum(n for key, n in responses.items() if key.startswith("/api/subscriptions/"))


async def test_an_opt_out_trait_changes_the_channels_subscription(
    kafka_bootstrap: str, emulator: EmulatorServer, tmp_path: Path
) -> None:
    project = emulator.state.project
    env = worker_env(kafka_bootstrap, emulator.url, tmp_path / "data",
                     FPI_OPT_OUT_TRAITS=json.dumps({"email_opt_out": CHANNEL}), FPI_EMAIL_LISTS_TRAIT="lists")

    def fields() -> dict[str, Any]:
        user = project.by_email.get(EMAIL)
        return dict(user.data_fields) if user is not None else {}

    with running(WorkerProcess(env, tmp_path / "worker.log")):
        await produce_lines([identify("s-1", 0, email_opt_out=True, lists=[101, 102], plan="pro")],
                            bootstrap=kafka_bootstrap, topic=env["FPI_SOURCE_TOPIC"])
        await asyncio.to_thread(wait_for, lambda: fields().get("unsubscribedChannelIds") == [CHANNEL]
                                and fields().get("emailListIds") == [101, 102], 120, what="the opt-out")
        assert fields()["plan"] == "pro" and "email_opt_out" not in fields() and "lists" not in fields()
        assert subscription_calls(emulator) == 3

        # A replay of the same identify, then a newer one: the replay costs no call.
        await produce_lines([identify("s-1", 0, email_opt_out=True, lists=[101, 102], plan="pro"),
                             identify("s-2", 1, email_opt_out=False, lists=[102], plan="team")],
                            bootstrap=kafka_bootstrap, topic=env["FPI_SOURCE_TOPIC"])
        await asyncio.to_thread(wait_for, lambda: fields().get("plan") == "team"
                                and fields().get("unsubscribedChannelIds") == []
                                and fields().get("emailListIds") == [102], 120, what="the opt-in")
        await asyncio.sleep(1)
    assert subscription_calls(emulator) == 5
    assert all(key.endswith(" 200") for key in project.counters.responses if key.startswith("/api/subscriptions/"))
