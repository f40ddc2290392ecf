"""The pure parts of ``dead-letters`` (``streams/commands/dead_letters.py``): rows without personal
data, masked keys, selection, and where each kind of dead letter is re-driven to."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest

from streams.codecs import EventDecoder, decode_frame, decode_request
from streams.commands.dead_letters import (
    StoredLetter,
    letter_json,
    letter_row,
    mask_key,
    redrive_target,
    selected,
)
from streams.model import DeadLetter, Endpoint, EventType, IterableRequest
from streams.settings import Settings
from tests.unit.builders import event

T = datetime(2026, 5, 1, 12, tzinfo=UTC)
EMAIL = "jane@example.com"
SETTINGS = Settings(replay_topic="r.replay", requests_topic="r.requests", avro_format="confluent")

REQUEST = IterableRequest(
    endpoint=Endpoint.EVENTS_TRACK,
    body={"email": EMAIL, "eventName": "Promo", "id": "m-9"},
    person_key=EMAIL,
    source_event_id="m-9",
)


def stored(letter: DeadLetter | None, position: tuple[int, int] = (0, 7), key: bytes | None = b"k") -> StoredLetter:
    return StoredLetter(position[0], position[1], key, letter, None if letter else "DecodeError: bad")


def letter(reason: str = "iterable_rejected", at: datetime = T, **fields: object) -> DeadLetter:
    return DeadLetter(reason=reason, detail=f"detail about {EMAIL}", failed_at=at, source_topic="src",
                      source_partition=1, source_offset=42, **fields)  # type: ignore[arg-type]


class TestLetterRow:
    @pytest.mark.parametrize(
        ("fields", "kind", "message_id"),
        [
            ({"request": REQUEST}, "/api/events/track", "m-9"),
            ({"event": event(message_id="m-3", email=EMAIL, user_id=EMAIL)}, "track", "m-3"),
            ({"original_bytes": EMAIL.encode()}, "undecoded", ""),
        ],
    )
    def test_rows_hold_no_personal_data(self, fields: dict[str, object], kind: str, message_id: str) -> None:
        row = letter_row(stored(letter(**fields), key=EMAIL.encode()))
        assert row == {"position": "0:7", "reason": "iterable_rejected", "failed_at": "2026-05-01T12:00:00Z",
                       "source": "src[1]@42", "kind": kind, "message_id": message_id}
        assert "@example" not in json.dumps(row)

    def test_unreadable_record(self) -> None:
        assert letter_row(stored(None))["reason"] == "(unreadable)"


class TestShow:
    def test_key_and_person_key_masked_bodies_in_full(self) -> None:
        shown = letter_json(stored(letter(request=REQUEST, iterable_response='{"code": "x"}'),
                                   key=EMAIL.encode()))
        assert EMAIL not in shown["key"] and EMAIL not in shown["request"]["person_key"]
        assert shown["key"] == shown["request"]["person_key"]  # same person, same mask
        assert shown["request"]["body"]["email"] == EMAIL  # asked for: shown
        assert shown["iterable"]["response"] == {"code": "x"}
        assert shown["source"] == {"topic": "src", "partition": 1, "offset": 42}

    def test_mask_key(self) -> None:
        assert mask_key(None) == "null"
        assert mask_key(b"abc") != mask_key(b"abd")
        assert mask_key(b"abc").startswith("<3 bytes sha256:")


class TestSelected:
    LETTERS = (
        stored(letter("iterable_rejected", T), (0, 1)),
        stored(letter("purchase_incomplete", T + timedelta(hours=1)), (0, 2)),
        stored(letter("user_not_found", T + timedelta(hours=2)), (1, 1)),
        stored(None, (1, 2)),
    )

    @pytest.mark.parametrize(
        ("criteria", "positions"),
        [
            ({}, ["0:1", "0:2", "1:1", "1:2"]),  # unreadable records too: `list` must not hide them
            ({"reasons": frozenset({"iterable_rejected", "user_not_found"})}, ["0:1", "1:1"]),
            ({"since": T + timedelta(minutes=30)}, ["0:2", "1:1"]),
            ({"positions": frozenset({"1:1", "1:2"})}, ["1:1", "1:2"]),
            ({"positions": frozenset({"0:2"}), "reasons": frozenset({"user_not_found"})}, []),
        ],
    )
    def test_criteria_all_apply(self, criteria: dict[str, object], positions: list[str]) -> None:
        assert [s.position for s in selected(self.LETTERS, **criteria)] == positions  # type: ignore[arg-type]


class TestRedriveTarget:
    def test_failed_request_goes_back_to_the_sender_keyed_by_person(self) -> None:
        topic, key, value = redrive_target(stored(letter(request=REQUEST)), SETTINGS) or ("", None, b"")
        assert (topic, key) == ("r.requests", EMAIL.encode())
        [item] = decode_frame(value)  # the requests topic carries frames
        assert (item.key, item.source) == (key, ("src", 1, 42))
        assert decode_request(item.value) == REQUEST

    def test_mapping_failure_goes_through_the_whole_pipeline_in_the_source_format(self) -> None:
        ev = event(EventType.TRACK, message_id="m-5", anonymous_id="dev-1", user_id="u-1")
        topic, key, value = redrive_target(stored(letter(event=ev)), SETTINGS) or ("", None, b"")
        assert (topic, key) == ("r.replay", b"dev-1")
        assert EventDecoder("confluent").decode(value) == ev

    def test_undecoded_bytes_go_to_the_replay_topic_unchanged_with_their_key(self) -> None:
        target = redrive_target(stored(letter(original_bytes=b"\x07junk"), key=b"dev-9"), SETTINGS)
        assert target == ("r.replay", b"dev-9", b"\x07junk")

    def test_nothing_to_send(self) -> None:
        assert redrive_target(stored(letter()), SETTINGS) is None
        assert redrive_target(stored(None), SETTINGS) is None


class TestNamesPerson:
    """Which dead-letter records ``dead-letters purge`` leaves out for a person."""

    def test_email_anywhere_in_the_record_any_case(self) -> None:
        from streams.commands.dead_letters import names_person

        assert names_person(None, b"...JANE@Example.com...", None, EMAIL, None)
        assert names_person(EMAIL.encode(), b"", None, EMAIL, None)
        assert not names_person(b"k", b"other@example.com", None, EMAIL, None)

    def test_user_id_in_the_event_or_request_of_a_decoded_letter(self) -> None:
        from streams.commands.dead_letters import names_person

        by_event = letter(event=event(user_id="u-1"))
        assert names_person(None, b"", by_event, None, "u-1")
        assert not names_person(None, b"", by_event, None, "u-12"), "a user id is matched whole"
        by_request = letter(request=IterableRequest(endpoint=Endpoint.EVENTS_TRACK, body={"userId": "u-1"},
                                                    person_key="u-1", source_event_id="m-1"))
        assert names_person(None, b"", by_request, None, "u-1")
        assert not names_person(None, b"", letter(event=event(user_id="u-2")), None, "u-1")

    def test_user_id_anywhere_in_a_record_that_does_not_decode(self) -> None:
        from streams.commands.dead_letters import names_person

        assert names_person(None, b'{"userId":"u-1"}', None, None, "u-1")
