"""End to end on the real broker: deletion requests on the deletion topic (``FPI_DELETION_TOPIC``, issue 20 part 2).

A person identifies and has an event; both reach Iterable (the emulator). The platform's privacy tooling produces a
malformed request (both identifiers) and then ``{"email": ...}`` to the deletion topic: the worker forgets the
person in Iterable (``users/forgotten`` lists them), deletes their identity (a tombstone in the identities changelog)
and drops their later events (``forgotten``) while another person's still reach Iterable; the malformed request is a
dead letter ``invalid_deletion_request`` naming what was wrong, counted, holding no email. No email in the logs.
"""

from __future__ import annotations

import asyncio
import json
import urllib.request
from pathlib import Path

import pytest
from aiokafka import AIOKafkaProducer

from streams._support import metric_sum, scrape_metrics
from streams.codecs import decode_dead_letter
from streams.commands.produce import produce_lines
from streams.emulator import EmulatorServer
from tests.e2e.test_forget import AFTER, BEFORE, EMAIL, dropped, wait_tombstoned
from tests.e2e.test_sample_pipeline import assert_no_secrets_or_emails, read_dead_letters
from tests.support import EMULATOR_KEY, WorkerProcess, running, wait_for, worker_env

pytestmark = [pytest.mark.integration, pytest.mark.e2e]

MALFORMED = json.dumps({"email": EMAIL, "userId": "u-f"}).encode()
REQUEST = json.dumps({"email": EMAIL, "requestId": "dsr-1"}).encode()


def forgotten_emails(url: str) -> list[str]:
    """The emulator's ``users/forgotten`` answer, over HTTP as a client reads it."""
    request = urllib.request.Request(f"{url}/api/users/forgotten", headers={"Api-Key": EMULATOR_KEY})
    with urllib.request.urlopen(request, timeout=5) as answer:
        emails: list[str] = json.loads(answer.read())["forgottenEmails"]
    return emails


async def test_a_deletion_request_forgets_the_person_and_a_malformed_one_is_dead_lettered(
    kafka_bootstrap: str, emulator: EmulatorServer, tmp_path: Path
) -> None:
    project = emulator.state.project
    env = worker_env(kafka_bootstrap, emulator.url, tmp_path / "data")
    deletions = f"{env['FPI_APP_ID']}.deletions"
    env["FPI_DELETION_TOPIC"] = deletions
    changelog = f"{env['FPI_APP_ID']}-identities-changelog"
    worker = WorkerProcess(env, tmp_path / "worker.log")
    with running(worker):
        await produce_lines(BEFORE, bootstrap=kafka_bootstrap, topic=env["FPI_SOURCE_TOPIC"])
        await asyncio.to_thread(wait_for, lambda: EMAIL in project.by_email and "f-2" in project.events, 120,
                                what="the person's identify and event in Iterable")
        assert forgotten_emails(emulator.url) == []

        producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap, acks="all")
        await producer.start()
        try:
            # One partition for both, as a platform keys a person's requests: the malformed one comes first.
            for value in (MALFORMED, REQUEST):
                await producer.send_and_wait(deletions, value, key=EMAIL.encode(), partition=0)
        finally:
            await producer.stop()

        await asyncio.to_thread(wait_for, lambda: forgotten_emails(emulator.url) == [EMAIL], 120,
                                what="users/forgotten listing the person")
        assert EMAIL not in project.by_email and "f-2" not in project.events

        await wait_tombstoned(kafka_bootstrap, changelog, EMAIL.encode())

        await produce_lines(AFTER, bootstrap=kafka_bootstrap, topic=env["FPI_SOURCE_TOPIC"])
        await asyncio.to_thread(wait_for, lambda: "o-2" in project.events and dropped(env["FPI_WEB_PORT"]) >= 1,
                                120, what="the other person's event and the forgotten person's drop")
        assert metric_sum(scrape_metrics(env["FPI_WEB_PORT"]), "fpi_dead_letters_total",
                          reason="invalid_deletion_request") == 1

    [raw] = await read_dead_letters(kafka_bootstrap, env["FPI_DEAD_LETTER_TOPIC"], 1)
    letter = decode_dead_letter(raw)
    assert (letter.reason, letter.source_topic, letter.source_partition, letter.source_offset) == (
        "invalid_deletion_request", deletions, 0, 0)
    assert 'both "email" and "userId"' in letter.detail and EMAIL.encode() not in raw
    assert "f-3" not in project.events and EMAIL not in project.by_email
    forgotten_answers = {k: n for k, n in project.counters.responses.items() if k.endswith(" 409")}
    assert forgotten_answers == {}, "a request for the forgotten person was sent after the deletion request"
    assert_no_secrets_or_emails(worker.log_text(), BEFORE + AFTER)
