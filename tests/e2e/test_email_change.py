"""End to end on the real broker: a known person identifies with a new email (issue 22).

Email-based project (the default). Each person is identified under an old address, has events, then
identifies with a new address (Segment dialect ``identify`` and the raw ``$identify``), and has more
events. Iterable must end with one profile per person, under the new address, holding the fields
and every event from before and after the change, and nothing under the old address. Producing the
whole input again (at-least-once) must change nothing. A person whose new address already has a
profile of its own is a dead letter ``email_already_exists``.
"""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer

from streams.codecs import decode_dead_letter
from streams.commands.produce import produce_lines
from streams.emulator import EmulatorServer
from streams.errors import Reason
from streams.model import DeadLetter
from tests.e2e.test_sample_pipeline import assert_no_secrets_or_emails, read_dead_letters
from tests.support import WorkerProcess, wait_for, worker_env

pytestmark = [pytest.mark.integration, pytest.mark.e2e]

BEFORE, AFTER = 1709647200, 1709650800  # 2024-03-05 14:00 and 15:00 UTC


def segment(kind: str, person: str, n: int, at: int, **fields: Any) -> str:
    stamp = datetime.fromtimestamp(at, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    body = {"type": kind, "messageId": f"{person}-{n}", "timestamp": stamp, "userId": person,
            "anonymousId": f"anon-{person}"}  # one device per person: one route through the stages
    return json.dumps({**body, **fields})


def raw(event: str, n: int, at: int, **props: Any) -> str:
    base = {"distinct_id": "u-46", "$device_id": "dev-46", "$user_id": "u-46", "time": at, "$insert_id": f"raw-{n}"}
    return json.dumps({"event": event, "properties": {**base, **props}})


LINES = [
    segment("identify", "u-45", 1, BEFORE,
            traits={"email": "person45@example.com", "first_name": "Ann", "plan": "free"}),
    segment("track", "u-45", 2, BEFORE + 60, event="Viewed Pricing", properties={"tier": "pro"}),
    segment("page", "u-45", 3, BEFORE + 120, name="Pricing"),
    segment("identify", "u-45", 4, AFTER, traits={"email": "person45.new@example.com", "plan": "pro"}),
    segment("track", "u-45", 5, AFTER + 60, event="Upgraded", properties={"tier": "pro"}),
    raw("$identify", 1, BEFORE, **{"$anon_distinct_id": "dev-46",
                                   "$user_props": {"email": "person46@example.com", "city": "Oslo"}}),
    raw("Viewed Pricing", 2, BEFORE + 60),
    raw("mp_page_view", 3, BEFORE + 120, mp_page="https://shop.example.com/pricing"),
    raw("$identify", 4, AFTER, **{"$anon_distinct_id": "dev-46",
                                  "$user_props": {"email": "person46.new@example.com", "plan": "team"}}),
    raw("Started Checkout", 5, AFTER + 60),
    segment("identify", "u-47", 1, BEFORE, traits={"email": "person47@example.com", "plan": "free"}),
    segment("track", "u-47", 2, BEFORE + 60, event="Viewed Pricing"),
    segment("identify", "u-47", 3, AFTER, traits={"email": "taken@example.com"}),
]
MOVED = {"u-45": ("person45@example.com", "person45.new@example.com"),
         "u-46": ("person46@example.com", "person46.new@example.com")}
EVENTS = {
    "u-45": {"u-45-2", "u-45-3", "u-45-5"},
    "u-46": {"raw-2", "raw-3", "raw-5"},
}


async def test_an_identify_with_a_new_email_moves_the_profile_and_its_events(
    kafka_bootstrap: str, emulator: EmulatorServer, tmp_path: Path
) -> None:
    project = emulator.state.project
    project.users_update({"email": "taken@example.com", "dataFields": {"owner": "someone else"}})
    env = worker_env(kafka_bootstrap, emulator.url, tmp_path / "data", FPI_PAGE_EVENT_NAME="Loaded a Page")
    worker = WorkerProcess(env, tmp_path / "worker.log").start()
    all_events = set().union(*EVENTS.values()) | {"u-47-2"}
    try:
        await produce_lines(LINES, bootstrap=kafka_bootstrap, topic=env["FPI_SOURCE_TOPIC"])

        def settled() -> bool:
            moved = all(email in project.by_email for _, email in MOVED.values())
            conflict_seen = project.by_email["taken@example.com"].user_id == "u-47"
            return moved and conflict_seen and set(project.events) >= all_events and _plan_of_u45(project) == "pro"

        await asyncio.to_thread(wait_for, settled, 120, what="the moved profiles and their events")
        letters = [decode_dead_letter(v) for v in
                   await read_dead_letters(kafka_bootstrap, env["FPI_DEAD_LETTER_TOPIC"], 1)]
        assert_moved(project)

        # At-least-once: the same input again changes nothing. The older identifies are stale, the
        # newest three are sent again as plain updates (the table follows the new email), event
        # ids are idempotent.
        events, updates = project.counters.events_received, project.counters.user_updates
        await produce_lines(LINES, bootstrap=kafka_bootstrap, topic=env["FPI_SOURCE_TOPIC"])

        def replayed() -> bool:
            counters = project.counters
            return counters.events_received >= events + len(all_events) and counters.user_updates >= updates + 3

        await asyncio.to_thread(wait_for, replayed, 120, what="the replayed input")
        await asyncio.sleep(1)  # a dead letter of the replay, were there one, is produced with its round
        letters_after_replay = await read_all(kafka_bootstrap, env["FPI_DEAD_LETTER_TOPIC"])
    except BaseException:
        print(worker.log_text()[-6000:])
        raise
    finally:
        worker.stop()
    assert_moved(project)
    assert project.counters.unique_event_ids == len(all_events)
    assert_conflict_dead_lettered(letters)
    assert len(letters_after_replay) == 1, "a replay adds no dead letter"
    assert_no_secrets_or_emails(worker.log_text(), LINES)


def _plan_of_u45(project: Any) -> Any:
    user = project.by_email.get(MOVED["u-45"][1])
    return None if user is None else user.data_fields.get("plan")


async def read_all(bootstrap: str, topic: str, seconds: float = 5.0) -> list[bytes]:
    """Every record of ``topic`` seen within ``seconds`` of reading from its start."""
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest")
    await consumer.start()
    values: list[bytes] = []
    try:
        deadline = asyncio.get_running_loop().time() + seconds
        while asyncio.get_running_loop().time() < deadline:
            batch = await consumer.getmany(timeout_ms=500)
            values.extend(m.value for messages in batch.values() for m in messages)
    finally:
        await consumer.stop()
    return values


def assert_moved(project: Any) -> None:
    for user_id, (old, new) in MOVED.items():
        assert old not in project.by_email, f"a profile is left under the old address of {user_id}"
        _, answer = project.get_user(email=new)
        assert answer["user"]["userId"] == user_id
        stored = {e["id"]: e["email"] for e in project.user_events(email=new, limit=100)[1]["events"]}
        assert stored == {event_id: new for event_id in EVENTS[user_id]}
        assert project.user_events(email=old)[1] == {"events": []}
    ann = project.get_user(email="person45.new@example.com")[1]["user"]["dataFields"]
    assert (ann["first_name"], ann["plan"]) == ("Ann", "pro")  # a field from before, one from after
    assert project.get_user(email="person46.new@example.com")[1]["user"]["dataFields"] == {
        "city": "Oslo", "plan": "team"
    }
    pages = [project.events["u-45-3"], project.events["raw-3"]]
    assert [p["eventName"] for p in pages] == ["Loaded a Page", "Loaded a Page"]
    assert project.events["raw-3"]["dataFields"]["url"] == "https://shop.example.com/pricing"
    # one profile per person: the two moved, u-47's old one, and the other owner of taken@
    assert len({id(u) for u in project.users}) == 4


def assert_conflict_dead_lettered(letters: list[DeadLetter]) -> None:
    (letter,) = letters
    assert letter.reason == Reason.EMAIL_ALREADY_EXISTS
    assert letter.iterable_code == "EmailAlreadyExists" and "/api/users/merge" in letter.detail
    assert letter.request is not None
    assert dict(letter.request.body) == {"currentEmail": "person47@example.com", "newEmail": "taken@example.com"}
