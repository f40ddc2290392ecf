"""The apply stage obeys forget / unforget control records (broker-free: dicts and in-memory topics)."""

from __future__ import annotations

from streams.codecs import FrameItem, decode_dead_letter, encode_event_internal, encode_frame
from streams.errors import Reason
from streams.identity import forgotten_key
from streams.iterable import Outcome
from streams.model import IterableRequest
from streams.stages import (
    AliasTable,
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


def _by_device(device: str, email: str, message_id: str) -> FrameItem:
    text = (f'{{"type":"identify","anonymousId":"{device}","messageId":"{message_id}",'
            f'"traits":{{"email":"{email}"}}}}')
    return FrameItem(device.encode(), encode_event_internal(_event(text)), ("src", 0, 0))


def _device_frame(items: list[FrameItem], partition: int, offset: int) -> Record:
    return Record(encode_frame(items), message=At("by-device", partition, offset))


def _naming(aliases: dict[bytes, bytes], email: str) -> list[bytes]:
    return [key for key, value in aliases.items() if email.encode() in key or email.encode() in value]


class TestResolveForgets:
    """The resolve stage deletes the person's aliases links (tombstones) on each partition a control reaches."""

    async def _linked(self) -> Pipeline:
        pipeline = Pipeline()
        await pipeline.resolve.handle([
            _device_frame([_by_device("d-1", EMAIL, "i-1"), _by_device("d-o", "o@example.com", "o-1")], 0, 0),
            _device_frame([_by_device("d-2", EMAIL, "i-2")], 1, 0)])
        assert {b"d-1", b"d-2", b"d-o"} <= set(pipeline.aliases)
        return pipeline

    async def test_forget_deletes_the_links_on_every_partition_and_stores_no_new_one(self) -> None:
        pipeline = await self._linked()
        forwarded = len(pipeline.by_person.items())
        await pipeline.resolve.handle([_device_frame([_control(Control.FORGET)], 0, 1),
                                       _device_frame([_control(Control.FORGET)], 1, 1)])
        assert b"d-1" not in pipeline.aliases and b"d-2" not in pipeline.aliases
        assert _naming(pipeline.aliases, EMAIL) == [], "an aliases record still names the forgotten person"
        assert AliasTable(pipeline.aliases).get("d-o") is not None, "another person's link was deleted"

        await pipeline.resolve.handle([_device_frame([_by_device("d-3", EMAIL, "i-3")], 0, 2)])
        assert _naming(pipeline.aliases, EMAIL) == [] and b"d-3" not in pipeline.aliases
        assert len(pipeline.by_person.items()) == forwarded + 1, "the event still goes on (apply drops it forgotten)"
        assert pipeline.dead.letters() == []

    async def test_a_control_only_deletes_the_links_of_its_own_partition(self) -> None:
        pipeline = await self._linked()
        await pipeline.resolve.handle([_device_frame([_control(Control.FORGET)], 0, 1)])
        assert b"d-1" not in pipeline.aliases and b"d-2" in pipeline.aliases

    async def test_a_redelivered_forget_changes_nothing_more(self) -> None:
        pipeline = await self._linked()
        forget = _device_frame([_control(Control.FORGET)], 0, 1)
        await pipeline.resolve.handle([forget])
        once = dict(pipeline.aliases)
        await pipeline.resolve.handle([forget])
        assert pipeline.aliases == once

    async def test_a_device_linked_to_someone_else_since_is_kept(self) -> None:
        pipeline = await self._linked()
        await pipeline.resolve.handle([_device_frame([_by_device("d-1", "new@example.com", "n-1")], 0, 1),
                                       _device_frame([_control(Control.FORGET)], 0, 2)])
        link = AliasTable(pipeline.aliases).get("d-1")
        assert link is not None and link.person_key == "new@example.com"

    async def test_unforget_stores_links_again(self) -> None:
        pipeline = await self._linked()
        await pipeline.resolve.handle([_device_frame([_control(Control.FORGET)], 0, 1),
                                       _device_frame([_control(Control.UNFORGET)], 0, 2),
                                       _device_frame([_by_device("d-3", EMAIL, "i-3")], 0, 3)])
        link = AliasTable(pipeline.aliases).get("d-3")
        assert link is not None and link.person_key == EMAIL


def test_the_person_index_is_bounded() -> None:
    from streams.identity import Link
    from streams.stages._tables import INDEX_MAX_DEVICES

    table: dict[bytes, bytes] = {}
    aliases = AliasTable(table)
    for n in range(INDEX_MAX_DEVICES + 5):
        aliases[f"d-{n}"] = Link(EMAIL)
    assert aliases.get(f"d-{INDEX_MAX_DEVICES + 4}") is not None, "a link beyond the bound is still stored"
    assert aliases.forget(EMAIL) == INDEX_MAX_DEVICES
    assert aliases.get(f"d-{INDEX_MAX_DEVICES + 4}") is not None and aliases.get("d-0") is None
