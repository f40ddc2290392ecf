"""End to end on the real broker: the right to be forgotten (issue 20 part 2).

A person identifies and has an event; both reach Iterable (the emulator). ``freshpaint-iterable forget
--email`` is run as an operator runs it: Iterable forgets the user, and the worker deletes the person's
identity and their device's link (the latest record of every key of the identities and aliases changelogs that
names their email is a tombstone) and drops their later events (``forgotten``), so no further request for them is
sent and no new link to them is stored, while another person's events still are. Then compaction is forced on the
two changelogs (``segment.ms`` 1 s, ``min.cleanable.dirty.ratio`` 0.001 and ``delete.retention.ms`` 1 s set before
the forget; segments rolled by tombstones of an unused key): no record of either holds the email any more, the
identities tombstone included (its key is the email: Kafka keeps a tombstone ``delete.retention.ms`` after
compaction, a day by default).
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer

from streams.commands.produce import produce_lines
from streams.emulator import EmulatorServer
from tests.e2e.test_sample_pipeline import assert_no_secrets_or_emails
from tests.support import REPO, WorkerProcess, running, wait_for, worker_env

pytestmark = [pytest.mark.integration, pytest.mark.e2e]

EMAIL = "forget.me@example.com"
OTHER = "stays@example.com"


def line(kind: str, message_id: str, email: str, device: str, minute: int, **fields: Any) -> str:
    body = {"type": kind, "messageId": message_id, "timestamp": f"2024-03-05T14:{minute:02d}:00Z",
            "anonymousId": device}
    if kind == "identify":
        body["traits"] = {"email": email, "plan": "pro"}
    return json.dumps({**body, **fields})


BEFORE = [line("identify", "f-1", EMAIL, "dev-f", 0), line("track", "f-2", EMAIL, "dev-f", 1, event="Viewed")]
AFTER = [line("track", "f-3", EMAIL, "dev-f", 2, event="Viewed"), line("identify", "f-4", EMAIL, "dev-f", 3),
         line("identify", "o-1", OTHER, "dev-o", 4), line("track", "o-2", OTHER, "dev-o", 5, event="Viewed")]


def dropped(port: str, reason: str = "forgotten") -> float:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as answer:
        for text in answer.read().decode().splitlines():
            if text.startswith(f'fpi_events_dropped_total{{reason="{reason}"}}'):
                return float(text.rsplit(" ", 1)[1])
    return 0.0


async def latest_changelog_value(bootstrap: str, topic: str, key: bytes) -> tuple[bool, bytes | None]:
    """(whether ``key`` is in ``topic`` at all, the value of its latest record) read from the start."""
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest")
    await consumer.start()
    seen, latest = False, None
    try:
        for _ in range(6):
            batch = await consumer.getmany(timeout_ms=500)
            for messages in batch.values():
                for message in messages:
                    if message.key == key:
                        seen, latest = True, message.value
    finally:
        await consumer.stop()
    return seen, latest


async def wait_tombstoned(bootstrap: str, topic: str, key: bytes, seconds: int = 60) -> None:
    """Wait until the latest record of ``key`` in ``topic`` is a tombstone; fail after ``seconds``."""
    for _ in range(seconds):
        if await latest_changelog_value(bootstrap, topic, key) == (True, None):
            return
        await asyncio.sleep(1)
    raise AssertionError(f"the latest record of the person in {topic} is not a tombstone after {seconds} s")


async def latest_records(bootstrap: str, topic: str) -> dict[bytes, bytes | None]:
    """The latest value of each key of ``topic`` (``None``: a tombstone), read from the start."""
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest")
    await consumer.start()
    latest: dict[bytes, bytes | None] = {}
    try:
        for _ in range(6):
            batch = await consumer.getmany(timeout_ms=500)
            for messages in batch.values():
                for message in messages:
                    latest[message.key] = message.value
    finally:
        await consumer.stop()
    return latest


def naming(latest: dict[bytes, bytes | None], email: str) -> list[bytes]:
    """The keys whose latest record still holds ``email`` (in its key or its value)."""
    return [key for key, value in latest.items()
            if value is not None and (email.encode() in key or email.encode() in value)]


async def compact_soon(bootstrap: str, topics: list[str]) -> None:
    """Let the broker's log cleaner compact ``topics`` within seconds (whole configs: AlterConfigs replaces them)."""
    from aiokafka.admin import AIOKafkaAdminClient
    from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.alter_configs([ConfigResource(ConfigResourceType.TOPIC, topic, configs={
            "cleanup.policy": "compact", "segment.ms": "1000", "min.cleanable.dirty.ratio": "0.001",
            "delete.retention.ms": "1000"})
            for topic in topics])
    finally:
        await admin.close()


async def holding(bootstrap: str, topic: str, email: str) -> int:
    """How many records of ``topic`` (all of them, not only the latest per key) hold ``email``."""
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest")
    await consumer.start()
    found = 0
    try:
        for _ in range(4):
            for messages in (await consumer.getmany(timeout_ms=400)).values():
                found += sum(email.encode() in (m.key or b"") + (m.value or b"") for m in messages)
    finally:
        await consumer.stop()
    return found


async def test_forget_deletes_the_identity_and_stops_the_persons_events(
    kafka_bootstrap: str, emulator: EmulatorServer, tmp_path: Path
) -> None:
    project = emulator.state.project
    env = worker_env(kafka_bootstrap, emulator.url, tmp_path / "data")
    changelog = f"{env['FPI_APP_ID']}-identities-changelog"
    aliases = f"{env['FPI_APP_ID']}-aliases-changelog"
    worker = WorkerProcess(env, tmp_path / "worker.log")
    with running(worker):
        await produce_lines(BEFORE, bootstrap=kafka_bootstrap, topic=env["FPI_SOURCE_TOPIC"])
        await asyncio.to_thread(wait_for, lambda: EMAIL in project.by_email and "f-2" in project.events, 120,
                                what="the person's identify and event in Iterable")
        seen, value = await latest_changelog_value(kafka_bootstrap, changelog, EMAIL.encode())
        assert seen and value, "the identity is in the changelog before forget"
        assert naming(await latest_records(kafka_bootstrap, aliases), EMAIL) == [b"dev-f"]
        await compact_soon(kafka_bootstrap, [changelog, aliases])

        forgot = await asyncio.to_thread(
            subprocess.run, [sys.executable, "-m", "streams", "forget", "--email", EMAIL], env=env, cwd=REPO,
            capture_output=True, text=True, timeout=120)
        assert forgot.returncode == 0, forgot.stderr
        assert EMAIL not in project.by_email and EMAIL in project.forgotten_emails

        await wait_tombstoned(kafka_bootstrap, changelog, EMAIL.encode())

        await produce_lines(AFTER, bootstrap=kafka_bootstrap, topic=env["FPI_SOURCE_TOPIC"])
        # f-4 names the person: dropped forgotten (and no link stored); f-3 has only the device, whose link is
        # gone: anonymous.
        await asyncio.to_thread(wait_for, lambda: "o-2" in project.events and
                                dropped(env["FPI_WEB_PORT"]) >= 1 and dropped(env["FPI_WEB_PORT"], "anonymous") >= 1,
                                120, what="the other person's event and the forgotten person's two drops")
        await asyncio.sleep(1)
        for topic in (changelog, aliases):
            latest = await latest_records(kafka_bootstrap, topic)
            assert naming(latest, EMAIL) == [], f"{topic} still holds the forgotten person's email"
        assert b"dev-f" in latest and latest[b"dev-f"] is None, "the device's link is not a tombstone"
        assert naming(latest, OTHER) == [b"dev-o"], "the other person's link is missing"
    assert "f-3" not in project.events and EMAIL not in project.by_email

    # Compaction: roll the segments (a tombstone of an unused key per partition, more than segment.ms apart) until
    # the cleaner has dropped every record holding the email.
    from aiokafka import AIOKafkaProducer

    producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap)
    await producer.start()
    try:
        for _ in range(30):
            if not (await holding(kafka_bootstrap, changelog, EMAIL) + await holding(kafka_bootstrap, aliases, EMAIL)):
                break
            for topic in (changelog, aliases):
                for partition in await producer.partitions_for(topic):
                    await producer.send_and_wait(topic, None, key=b"test-segment-roll", partition=partition)
            await asyncio.sleep(2)
    finally:
        await producer.stop()
    for topic in (changelog, aliases):
        assert await holding(kafka_bootstrap, topic, EMAIL) == 0, f"compaction left the email in {topic}"
    assert await holding(kafka_bootstrap, aliases, OTHER) == 1, "compaction removed the other person's link"
    forgotten_answers = {k: n for k, n in project.counters.responses.items() if k.endswith(" 409")}
    assert forgotten_answers == {}, "a request for the forgotten person was sent after forget"
    assert_no_secrets_or_emails(worker.log_text(), BEFORE + AFTER)


async def test_dead_letters_purge_copies_all_but_the_persons_records(kafka_bootstrap: str, tmp_path: Path) -> None:
    """``dead-letters purge`` on the real broker: the new topic holds every other record, in its partition, and
    none that names the person (by email, in any case, also in a record that does not decode); the old topic is
    left as it was."""
    from datetime import UTC, datetime

    from aiokafka import AIOKafkaProducer
    from aiokafka.admin import AIOKafkaAdminClient, NewTopic

    from streams.codecs import decode_dead_letter, encode_dead_letter
    from streams.model import DeadLetter, Event, EventType

    env = worker_env(kafka_bootstrap, "http://127.0.0.1:9", tmp_path / "data")
    old, new = f"{env['FPI_APP_ID']}.dead-letters", f"{env['FPI_APP_ID']}.dead-letters-purged"
    env["FPI_DEAD_LETTER_TOPIC"] = old
    admin = AIOKafkaAdminClient(bootstrap_servers=kafka_bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(old, 2, 1)])
    finally:
        await admin.close()

    def dead(message_id: str, email: str) -> bytes:
        event = Event(type=EventType.TRACK, message_id=message_id, timestamp=datetime(2024, 3, 5, tzinfo=UTC),
                      event_name="Viewed", email=email)
        return encode_dead_letter(DeadLetter(reason="purchase_incomplete", detail="no items",
                                             failed_at=datetime(2024, 3, 5, tzinfo=UTC), source_topic="src",
                                             source_partition=0, source_offset=1, event=event))

    records = [(0, b"k-1", dead("f-1", EMAIL)), (1, b"k-2", dead("o-1", OTHER)), (1, None, b"junk " + EMAIL.encode()),
               (0, None, b"junk"), (0, b"k-3", dead("o-2", OTHER))]
    producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap, acks="all")
    await producer.start()
    try:
        for partition, key, value in records:
            await producer.send_and_wait(old, value, key=key, partition=partition)
    finally:
        await producer.stop()

    purged = await asyncio.to_thread(
        subprocess.run, [sys.executable, "-m", "streams", "dead-letters", "purge", "--email", EMAIL.upper(),
                         "--to", new], env=env, cwd=REPO, capture_output=True, text=True, timeout=120)
    assert purged.returncode == 0, purged.stderr
    assert f"copied 3 records from {old} to {new} (created); left out 2 naming the person" in purged.stdout
    assert EMAIL not in purged.stdout

    consumer = AIOKafkaConsumer(new, bootstrap_servers=kafka_bootstrap, auto_offset_reset="earliest")
    await consumer.start()
    copied: list[tuple[int, bytes | None, bytes]] = []
    try:
        for _ in range(6):
            for messages in (await consumer.getmany(timeout_ms=500)).values():
                copied += [(m.partition, m.key, m.value) for m in messages]
    finally:
        await consumer.stop()
    assert sorted(copied, key=repr) == sorted([r for r in records if EMAIL.encode() not in r[2]], key=repr)
    assert decode_dead_letter(next(v for _, k, v in copied if k == b"k-3")).event is not None
    assert set(await latest_records(kafka_bootstrap, old)) == {b"k-1", b"k-2", b"k-3", None}, "the old topic is kept"
