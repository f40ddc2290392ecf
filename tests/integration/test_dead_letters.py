"""Dead-letter inspection and re-drive on the real broker, with a worker process and the emulator.

Acceptance (issue 7): a re-driven dead letter that now passes lands in the emulator, and the rest
stay dead letters. The emulator first disallows an event name (Iterable's ``disallowedEventNames``),
so that event is dead-lettered by the sender; a purchase without a total is dead-lettered at
mapping. The fault is cleared and only the sender's dead letters are re-driven, by reason.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import subprocess
import sys
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from streams.commands.dead_letters import StoredLetter, read_dead_letters
from streams.commands.produce import produce_lines
from streams.emulator import EmulatorConfig, EmulatorServer
from streams.errors import TopicMissing
from streams.settings import Settings
from tests.support import EMULATOR_KEY, REPO, WorkerProcess, settings_of, unique, wait_for, worker_env

pytestmark = [pytest.mark.integration]


def _cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "streams", "dead-letters", *args], env={**os.environ, **env},
                          cwd=REPO, capture_output=True, text=True, timeout=60, check=False)


async def _letters(settings: Settings) -> list[StoredLetter]:
    return [stored async for stored in read_dead_letters(settings)]


async def test_a_redriven_dead_letter_that_now_passes_lands_and_the_rest_stay(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    user = unique("dl")
    email = f"{user}@example.com"
    t0 = datetime.now(UTC) - timedelta(hours=1)

    def line(kind: str, message_id: str, minutes: int, **fields: object) -> str:
        return json.dumps({"type": kind, "messageId": message_id, "timestamp": (t0 + timedelta(minutes=minutes))
                           .isoformat(), "anonymousId": f"dev-{user}", "userId": user, **fields})

    lines = [
        line("identify", f"{user}-id", 0, traits={"email": email}),
        line("track", f"{user}-blocked", 1, event="Promo Shown", properties={"n": 1}),
        line("track", f"{user}-order", 2, event="Order Completed", properties={"total": "lots"}),
        line("track", f"{user}-fine", 3, event="Clicked"),
    ]
    with EmulatorServer(EmulatorConfig(api_keys=(EMULATOR_KEY,))) as emulator:
        emulator.set_faults(blocked_event_names=["Promo Shown"])
        env = worker_env(kafka_bootstrap, emulator.url, tmp_path / "data", FPI_TOPIC_PARTITIONS="2")
        settings = settings_of(env)
        worker = WorkerProcess(env, tmp_path / "worker.log").start()
        project = emulator.state.project
        try:
            report = await produce_lines(lines, bootstrap=kafka_bootstrap, topic=settings.source_topic)
            assert report.sent == 4

            async def two_letters() -> list[StoredLetter]:
                while True:
                    try:
                        found = await _letters(settings)
                    except TopicMissing:  # the worker has not created the topic yet
                        found = []
                    if len(found) >= 2:
                        return found
                    await asyncio.sleep(0.5)

            letters = await asyncio.wait_for(two_letters(), 40)
            reasons = Counter(s.letter.reason for s in letters if s.letter)
            assert reasons == {"iterable_rejected": 1, "purchase_incomplete": 1}
            await asyncio.to_thread(wait_for, lambda: f"{user}-fine" in project.events, 20, what="fine event")
            assert f"{user}-blocked" not in project.events

            listed = _cli(env, "list")
            assert listed.returncode == 0, listed.stderr
            assert "iterable_rejected: 1" in listed.stdout and "purchase_incomplete: 1" in listed.stdout
            assert f"{user}-blocked" in listed.stdout
            assert email not in listed.stdout and not re.search(r"[\w.+-]+@[\w-]+\.\w+", listed.stdout)
            rejected = next(s for s in letters if s.letter and s.letter.reason == "iterable_rejected")
            shown = json.loads(_cli(env, "show", rejected.position).stdout)
            assert shown["request"]["body"]["eventName"] == "Promo Shown"
            assert shown["key"].startswith("<") and user not in shown["key"]

            # The cause is fixed; re-drive only the sender's dead letters, twice (harmless).
            emulator.set_faults(blocked_event_names=[])
            for _ in range(2):
                done = _cli(env, "redrive", "--reason", "iterable_rejected")
                assert done.returncode == 0, done.stderr
                assert "re-drove 1 of 1" in done.stdout, done.stdout
                assert settings.requests_topic in done.stdout
            await asyncio.to_thread(wait_for, lambda: f"{user}-blocked" in project.events, 20,
                                    what="the re-driven event in the emulator")
            await asyncio.to_thread(wait_for, lambda: project.counters.duplicate_event_ids >= 1, 20,
                                    what="the second re-drive delivered")
            after = Counter(s.letter.reason for s in await _letters(settings) if s.letter)
        except BaseException:
            print(worker.log_text()[-6000:])
            raise
        finally:
            worker.stop()
    # Landed once (the second re-drive updated it), the purchase stays a dead letter and was not sent,
    # and the re-driven request did not fail again.
    assert [e for e in project.events if e.startswith(f"{user}-")].count(f"{user}-blocked") == 1
    assert not project.purchases
    assert after == {"iterable_rejected": 1, "purchase_incomplete": 1}
