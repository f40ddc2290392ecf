"""The apply stage obeys forget / unforget control records (broker-free: dicts and in-memory topics)."""

from __future__ import annotations

from streams.codecs import FrameItem, decode_dead_letter, encode_event_internal, encode_frame
from streams.errors import Reason
from streams.identity import forgotten_key
from streams.iterable import Outcome
from streams.model import IterableRequest
from streams.stages import (
    Control,
    DeadLetterSink,
    IdentityTable,
    SendStage,
    control_from_bytes,
    control_to_bytes,
)
from tests.unit.stages.test_stages import At, DeadLetterTopic, Pipeline, Record, _event, _request_frame

EMAIL = "jane@example.com"


def _events(*items: tuple[str, str]) -> list[FrameItem]:
    return [FrameItem(EMAIL.encode(), encode_event_internal(_event(text)), ("src", 0, n))
            for n, (_, text) in enumerate(items)]


def _identify(message_id: str) -> tuple[str, str]:
    return ("identify", f'{{"type":"identify","anonymousId":"d-1","messageId":"{message_id}",'
                        f'"traits":{{"email":"{EMAIL}"}}}}')


def _track(message_id: str) -> tuple[str, str]:
    return ("track", f'{{"type":"track","event":"Clicked","anonymousId":"d-1","messageId":"{message_id}",'
                     f'"context":{{"traits":{{"email":"{EMAIL}"}}}}}}')


def _control(control: Control) -> FrameItem:
    return FrameItem(EMAIL.encode(), control_to_bytes(control), ("forget", None, None))


def _frame(items: list[FrameItem], offset: int) -> Record:
    return Record(encode_frame(items), message=At("by-person", 0, offset))


class TestControlRecords:
    def test_round_trip_and_distinct_from_events(self) -> None:
        for control in Control:
            assert control_from_bytes(control_to_bytes(control)) is control
        assert not control_to_bytes(Control.FORGET).startswith(encode_event_internal(_event(_identify("i")[1]))[:2])


class TestApplyForgets:
    async def test_forget_tombstones_the_identity_marks_by_hash_and_drops_later_events(self) -> None:
        pipeline = Pipeline()
        await pipeline.apply.handle([_frame(_events(_identify("i-1")), 0)])
        table = IdentityTable(pipeline.identities)
        assert table.get(EMAIL) is not None
        sent_before = len(pipeline.requests.items())

        await pipeline.apply.handle([_frame([_control(Control.FORGET)], 1)])
        assert table.get(EMAIL) is None
        assert EMAIL.encode() not in pipeline.identities, "the identity must be deleted (a tombstone)"
        marker = forgotten_key(EMAIL)
        assert marker in table
        assert all(EMAIL.encode() not in key and EMAIL.encode() not in value
                   for key, value in pipeline.identities.items()), "the marker must not keep the email"

        await pipeline.apply.handle([_frame(_events(_identify("i-2"), _track("t-1")), 2)])
        assert len(pipeline.requests.items()) == sent_before, "a forgotten person's events were sent"
        assert table.get(EMAIL) is None, "an identify brought the forgotten person back"
        assert pipeline.dead.letters() == [], "a forgotten person's events must not be dead-lettered"

    async def test_unforget_sends_new_events_again(self) -> None:
        pipeline = Pipeline()
        await pipeline.apply.handle([_frame([_control(Control.FORGET)], 0), _frame([_control(Control.UNFORGET)], 1)])
        assert forgotten_key(EMAIL) not in IdentityTable(pipeline.identities)
        assert pipeline.identities == {}
        await pipeline.apply.handle([_frame(_events(_identify("i-1")), 2)])
        assert [item.key for item in pipeline.requests.items()] == [EMAIL.encode()]

    async def test_events_before_the_control_in_the_same_batch_are_still_sent(self) -> None:
        pipeline = Pipeline()
        await pipeline.apply.handle([_frame([*_events(_identify("i-1")), _control(Control.FORGET),
                                             *_events(_track("t-1"))], 0)])
        assert len(pipeline.requests.items()) == 1
        assert IdentityTable(pipeline.identities).get(EMAIL) is None
        assert forgotten_key(EMAIL) in IdentityTable(pipeline.identities)

    async def test_the_table_is_written_only_after_the_batch_output_is_in_kafka(self) -> None:
        pipeline = Pipeline()
        await pipeline.apply.handle([_frame(_events(_identify("i-1")), 0)])
        seen: list[bool] = []
        pipeline.requests.on_send = lambda: seen.append(EMAIL.encode() in pipeline.identities)
        other = _event('{"type":"identify","anonymousId":"d-2","messageId":"o-1","traits":{"email":"o@example.com"}}')
        await pipeline.apply.handle([_frame([_control(Control.FORGET),
                                             FrameItem(b"o@example.com", encode_event_internal(other), ("src", 0, 9))],
                                            1)])
        assert seen == [True], "the tombstone was written before the batch's requests were in Kafka"
        assert EMAIL.encode() not in pipeline.identities


class Forgotten:
    async def deliver(self, requests: list[IterableRequest]) -> list[Outcome]:
        return [Outcome(r, delivered=False, reason=Reason.FORGOTTEN.value, detail="/api/events/track answered 409",
                        status=409, code="ForgottenUserError", response='{"email": "jane@example.com"}')
                for r in requests]


async def test_send_dead_letters_a_forgotten_answer_without_personal_data() -> None:
    dead = DeadLetterTopic()
    stage = SendStage(Forgotten(), DeadLetterSink(dead.send), round_items=10)  # type: ignore[arg-type]
    await stage.handle([_request_frame(["e-1"])])
    [(key, value)] = dead.sent
    letter = decode_dead_letter(value)
    assert (letter.reason, key, letter.request, letter.iterable_response) == (Reason.FORGOTTEN.value, None, None, None)
    assert letter.iterable_status == 409 and letter.source_offset == 0
    assert EMAIL.encode() not in value and b"u-1" not in value
