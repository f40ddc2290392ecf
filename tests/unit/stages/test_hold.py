"""The resolve stage holding anonymous events (``FPI_HOLD_ANONYMOUS_SECONDS``), with in-memory tables."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from streams import metrics
from streams.codecs import FrameItem, decode_event_internal, encode_event_internal, encode_frame
from streams.identity import Held, HoldRule
from streams.outbox import Outbox, Partitioner
from streams.stages import (
    AliasTable,
    DeadLetterSink,
    HeldEntry,
    HeldTable,
    ResolveStage,
    held_from_bytes,
    held_to_bytes,
)
from tests.unit.stages.test_stages import PARTITIONS, At, DeadLetterTopic, Record, Topic, _event

RULE = HoldRule(timedelta(minutes=30), per_device=5, total=100)


def _line(kind: str, message_id: str, time: str, device: str = "d-1", **extra: str) -> str:
    fields = "".join(f',"{k}":"{v}"' for k, v in extra.items())
    body = ',"event":"A"' if kind == "track" else ""
    return (f'{{"type":"{kind}","messageId":"{message_id}","anonymousId":"{device}",'
            f'"timestamp":"2026-05-01T{time}Z"{body}{fields}}}')


class Stage:
    def __init__(self, rule: HoldRule = RULE) -> None:
        self.aliases: dict[bytes, bytes] = {}
        self.held: dict[bytes, bytes] = {}
        self.by_person = Topic()
        self.entered: list[Any] = []
        self.stage = ResolveStage(AliasTable(self.aliases), DeadLetterSink(DeadLetterTopic().send),
                                  Outbox(self.by_person, Partitioner(PARTITIONS), 900_000),
                                  enter=self.entered.append, held=HeldTable(self.held), hold=rule)
        self.offset = 0

    async def feed(self, *lines: str, partition: int = 2) -> None:
        items = [FrameItem(b"d", encode_event_internal(_event(line)), ("src", 0, n)) for n, line in enumerate(lines)]
        self.offset += 1
        await self.stage.handle([Record(encode_frame(items), message=At("by-device", partition, self.offset))])

    def sent(self) -> list[tuple[bytes | None, str]]:
        return [(item.key, decode_event_internal(item.value).message_id) for item in self.by_person.items()]


def _count(outcome: str) -> float:
    return metrics.HELD_EVENTS.labels(outcome)._value.get()


async def test_held_page_views_follow_their_identify_as_the_persons_events() -> None:
    stage = Stage()
    before = _count("released")
    await stage.feed(_line("page", "p-1", "09:50:00"), _line("page", "p-2", "09:55:00"))
    assert stage.sent() == []
    assert [h.message_id for h in held_from_bytes(stage.held[b"d-1"]).events] == ["p-1", "p-2"]
    await stage.feed(_line("identify", "i-1", "10:00:00", userId="u-1"))
    assert stage.sent() == [(b"u-1", "i-1"), (b"u-1", "p-1"), (b"u-1", "p-2")]
    assert stage.held == {}, "released events leave the table"
    assert _count("released") - before == 2


async def test_the_held_table_is_written_only_once_the_output_is_in_kafka() -> None:
    stage = Stage()
    await stage.feed(_line("page", "p-1", "09:50:00"))
    table_when_sent: list[dict[bytes, bytes]] = []
    stage.by_person.on_send = lambda: table_when_sent.append(dict(stage.held))
    await stage.feed(_line("identify", "i-1", "10:00:00", userId="u-1"))
    assert list(table_when_sent[0]) == [b"d-1"], "the held events were removed before their output was sent"
    assert stage.held == {}


async def test_a_batch_redelivered_after_a_crash_releases_the_held_events_again() -> None:
    stage = Stage()
    await stage.feed(_line("page", "p-1", "09:50:00"))
    kept = dict(stage.held)
    await stage.feed(_line("identify", "i-1", "10:00:00", userId="u-1"))
    stage.held.update(kept)  # the crash came before the held table's tombstone reached its changelog
    stage.by_person.frames.clear()
    await stage.feed(_line("identify", "i-1", "10:00:00", userId="u-1"))
    assert stage.sent() == [(b"u-1", "i-1"), (b"u-1", "p-1")], "same ids again: Iterable stores them once"


async def test_a_redelivered_held_event_is_held_once() -> None:
    stage = Stage()
    await stage.feed(_line("page", "p-1", "09:50:00"))
    await stage.feed(_line("page", "p-1", "09:50:00"))
    assert len(held_from_bytes(stage.held[b"d-1"]).events) == 1


async def test_an_identify_after_the_window_leaves_them_anonymous() -> None:
    stage = Stage()
    await stage.feed(_line("page", "p-1", "09:00:00"))
    await stage.feed(_line("identify", "i-1", "10:00:00", userId="u-1"))
    assert stage.sent() == [(b"u-1", "i-1")]
    assert stage.held == {}


async def test_overflow_is_dropped_with_its_reason() -> None:
    stage = Stage(HoldRule(timedelta(minutes=30), per_device=2, total=100))
    before = metrics.EVENTS_DROPPED.labels("hold_overflow")._value.get()
    await stage.feed(*(_line("page", f"p-{n}", f"09:5{n}:00") for n in range(3)))
    assert len(held_from_bytes(stage.held[b"d-1"]).events) == 2
    assert metrics.EVENTS_DROPPED.labels("hold_overflow")._value.get() - before == 1


async def test_the_sweep_expires_devices_that_never_come_back_through_their_partition() -> None:
    stage = Stage()
    await stage.feed(_line("page", "p-1", "09:00:00", device="gone"), partition=2)
    await stage.feed(_line("page", "p-2", "09:10:00", device="other"), partition=3)
    assert b"gone" in stage.held, "another partition's event time does not expire it"
    stage.entered.clear()
    await stage.feed(_line("page", "p-3", "09:31:00", device="d-2"), partition=2)
    assert b"gone" not in stage.held and b"d-2" in stage.held and b"other" in stage.held
    assert {record.message.partition for record in stage.entered} == {2}


async def test_the_sweep_index_is_rebuilt_from_the_table_after_a_rebalance() -> None:
    stage = Stage()
    await stage.feed(_line("page", "p-9", "08:00:00", device="d-9"), partition=3)
    stage.held[b"old"] = held_to_bytes(HeldEntry(2, [Held(_event(_line("page", "p-0", "08:00:00")).timestamp,
                                                          "p-0", (b"x", ("src", 0, 0)))]))
    stage.stage.reindex()
    await stage.feed(_line("page", "p-1", "09:00:00"), partition=2)
    assert b"old" not in stage.held


@pytest.mark.parametrize("source", [("src", 3, 7), (None, None, None)])
def test_held_entry_bytes_round_trip(source: tuple[str | None, int | None, int | None]) -> None:
    time = _event(_line("page", "p-0", "08:00:00")).timestamp
    entry = HeldEntry(5, [Held(time, "p-0", (b"\x00\xffbytes", source))])
    assert held_from_bytes(held_to_bytes(entry)) == entry
    with pytest.raises(ValueError):
        held_from_bytes(b"\x09[]")
