"""Poison and hostile input: each record ends as a clear dead letter or a correct request, and the
worker keeps going (valid events produced after the poison are delivered)."""

from __future__ import annotations

import json
import os
import random
from typing import Any

import pytest

from streams.codecs import FrameItem, encode_event, encode_frame
from streams.normalize import normalize_json_line
from tests.reliability.conftest import PROFILE
from tests.reliability.workload import expect, generate
from tests.support import wait_for

pytestmark = [pytest.mark.integration, pytest.mark.reliability, pytest.mark.timeout(PROFILE.deliver_timeout * 2)]


def _line(message_id: str, **fields: Any) -> str:
    body = {"type": "track", "messageId": message_id, "timestamp": "2024-03-05T14:00:00Z"}
    body.update(fields)
    return json.dumps(body)


def _avro(line: str) -> bytes:
    return encode_event(normalize_json_line(line))


def poison_records() -> dict[str, bytes | None]:
    """Records ``produce`` would refuse, by name -> raw Kafka value."""
    valid = _avro(_line("poison-base", userId="u-poison", event="Base", properties={"pad": "A" * 64}))
    bad_utf8 = valid.replace(b"A" * 8, b"\xff\xfe\xfd\xfc\xff\xfe\xfd\xfc", 1)
    assert bad_utf8 != valid
    return {
        "random bytes": bytes(random.Random(5).randrange(256) for _ in range(300)),
        "random bytes with the magic byte": b"\x00" + os.urandom(200),
        "empty": b"",
        "tombstone": None,
        "truncated avro": valid[: len(valid) // 2],
        "unknown schema id": b"\x00" + (987654).to_bytes(4, "big") + valid[5:],
        "invalid utf-8 in a string": bad_utf8,
    }


def hostile_lines(run: str) -> list[str]:
    """Valid but hostile events: they must become correct requests (or mapping dead letters)."""
    lines = [
        json.dumps({"type": "identify", "messageId": f"h-{run}-id", "timestamp": "2024-03-05T14:00:00Z",
                    "anonymousId": f"dev-h-{run}", "userId": f"u-h-{run}",
                    "traits": {"email": f"jöhn.dœ.{run}@exämple.com", "name": "Zoë 🚀"}}),
    ]
    names = ["'; DROP TABLE users; --", "<script>alert(1)</script>", "../../etc/passwd", "${jndi:ldap://x/a}",
             "{{7*7}}", "name\nwith\nnewlines", "\u202eevil"]
    for i, name in enumerate(names):
        lines.append(_line(f"h-{run}-n{i}", anonymousId=f"dev-h-{run}", userId=f"u-h-{run}", event=name,
                           properties={"q": name}))
    nested: Any = {"leaf": 1}
    for _ in range(200):
        nested = {"n": nested}
    lines.append(_line(f"h-{run}-deep", anonymousId=f"dev-h-{run}", userId=f"u-h-{run}", event="Deep",
                       properties={"deep": nested}))
    # A huge batch of one person: more than one bulk call's worth.
    big = [json.dumps({"type": "identify", "messageId": f"b-{run}-id", "timestamp": "2024-03-05T14:00:00Z",
                       "anonymousId": f"dev-b-{run}", "userId": f"u-b-{run}",
                       "traits": {"email": f"big.{run}@example.com"}})]
    big += [_line(f"b-{run}-{i}", anonymousId=f"dev-b-{run}", userId=f"u-b-{run}", event="Tick",
                  properties={"i": i}) for i in range(1500)]
    return lines + big


def test_poison_and_hostile_input_end_in_dead_letters_or_requests(rig_factory: Any) -> None:
    before = generate(20, 300, seed=21, run="pa")
    after = generate(20, 300, seed=22, run="pb")
    hostile = hostile_lines("x")
    poison = poison_records()
    expected = expect(before.lines + hostile + after.lines)
    rig = rig_factory()
    worker = rig.start_worker()
    produced = rig.produce(before.lines)
    rig.produce_raw([(b"poison", value) for value in poison.values()])
    produced += rig.produce(hostile)
    produced += rig.produce(after.lines)

    rig.wait_delivered(expected)
    letters = rig.wait_dead_letters(sum(expected.dead.values()) + len(poison))
    rig.report("poison", produced + len(poison), letters, poison_records=len(poison))
    assert worker.alive(), worker.log_text()[-3000:]
    undecodable = [letter for letter in letters if letter.event is None and letter.request is None]
    assert sorted((letter.original_bytes or b"") for letter in undecodable) == sorted(
        (value or b"") for value in poison.values())
    for letter in undecodable:
        assert letter.reason and letter.detail, "each poison record says why"
        assert letter.source_topic == rig.env["FPI_SOURCE_TOPIC"] and letter.source_offset is not None
    mapped = [letter for letter in letters if letter.event is not None]
    assert sorted(letter.event.message_id for letter in mapped) == sorted(expected.dead_ids)
    assert rig.emulator.state.project.counters.events_rejected == 0


def test_five_megabyte_properties_become_a_dead_letter(rig_factory: Any) -> None:
    huge = _line("huge-1", anonymousId="dev-huge", userId="u-huge", event="Huge",
                 properties={"blob": "x" * (5 * 1024 * 1024)})
    after = generate(5, 60, seed=23, run="pc")
    expected = expect(after.lines)
    rig = rig_factory()
    rig.create_source_topic(max_message_bytes=16 * 1024 * 1024)
    worker = rig.start_worker()
    rig.produce_raw([(b"dev-huge", _avro(huge))])
    produced = rig.produce(after.lines)
    project = rig.emulator.state.project
    # Fails fast when the worker exits on the oversized record instead of waiting out a timeout.
    wait_for(lambda: not worker.alive() or len(project.events) >= len(expected.project.events), 90,
             what="the worker to exit or deliver")
    assert worker.alive(), "the worker exited on the oversized record"
    rig.wait_delivered(expected, timeout=60)
    letters = rig.wait_dead_letters(sum(expected.dead.values()) + 1)
    rig.report("poison-5mb", produced + 1, letters)
    assert worker.alive()
    assert any(letter.reason == "too_large" and letter.event is None and letter.request is None
               for letter in letters)


def test_foreign_records_on_the_internal_topics_become_dead_letters(rig_factory: Any) -> None:
    """Another version's or another producer's records on an internal topic do not stop the worker."""
    before = generate(5, 60, seed=24, run="pd")
    after = generate(5, 60, seed=25, run="pe")
    expected = expect(before.lines + after.lines)
    rig = rig_factory()
    worker = rig.start_worker()
    produced = rig.produce(before.lines)
    project = rig.emulator.state.project
    # the worker has created its topics once it delivers (a produce before that would auto-create them)
    wait_for(lambda: len(project.events) > 0, PROFILE.deliver_timeout, what="delivery to start")
    foreign_item = FrameItem(b"u-foreign", b"\x09 not an event", ("some.topic", 3, 77))
    rig.produce_raw([(None, b"not a frame"), (b"u-foreign", encode_frame([foreign_item]))],
                    topic=rig.env["FPI_BY_PERSON_TOPIC"])
    rig.produce_raw([(None, b"\x00\x01")], topic=rig.env["FPI_REQUESTS_TOPIC"])
    produced += rig.produce(after.lines)

    rig.wait_delivered(expected)
    letters = rig.wait_dead_letters(sum(expected.dead.values()) + 3)
    rig.report("poison-internal", produced + 3, letters)
    assert worker.alive(), worker.log_text()[-3000:]
    foreign = {letter.original_bytes: letter for letter in letters if letter.event is None and letter.request is None}
    assert set(foreign) == {b"not a frame", b"\x09 not an event", b"\x00\x01"}
    assert all(letter.reason == "undecodable" for letter in foreign.values())
    item_letter = foreign[b"\x09 not an event"]
    assert (item_letter.source_topic, item_letter.source_partition, item_letter.source_offset) == ("some.topic", 3, 77)
    assert foreign[b"not a frame"].source_topic == rig.env["FPI_BY_PERSON_TOPIC"]
