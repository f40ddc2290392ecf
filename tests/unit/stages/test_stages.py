"""Each stage driven with in-memory tables, outboxes and a dead-letter sink: no broker, no faust.

The chain route -> resolve -> apply is run frame by frame, as the agents do, and checked against
``explain`` over the same lines: the stages and the event tester share their steps.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import orjson
import pytest

from streams.codecs import (
    EventDecoder,
    FrameItem,
    decode_dead_letter,
    decode_event_internal,
    decode_frame,
    decode_request,
    encode_event,
    encode_event_internal,
    encode_frame,
    encode_request,
)
from streams.codecs._source import SourceCodec
from streams.explain import explain_lines
from streams.identity import Link
from streams.iterable import Abandoned, Outcome
from streams.mapping import MappingConfig
from streams.model import DeadLetter, Endpoint, Event, IterableRequest, ProjectType
from streams.normalize import normalize, normalize_json_line
from streams.outbox import Outbox, Partitioner
from streams.replay import REPLAY_SOURCE_HEADER
from streams.stages import (
    AliasTable,
    ApplyStage,
    DeadLetterSink,
    IdentityTable,
    ResolveStage,
    RouteStage,
    SendStage,
    link_to_bytes,
)
from tests.support import REPO

PARTITIONS = 4
SAMPLE = REPO / "tests" / "data" / "sample_events.jsonl"


@dataclass(frozen=True)
class At:
    topic: str
    partition: int
    offset: int


@dataclass(frozen=True)
class Record:
    """A consumed record as faust hands it to an agent."""

    value: bytes | None
    key: bytes | None = None
    headers: dict[str, bytes] | None = None
    message: At = At("src", 0, 0)


@dataclass
class Topic:
    """Where an outbox sends its frames: kept per partition, as Kafka would."""

    frames: dict[int, list[bytes]] = field(default_factory=dict)
    on_send: Callable[[], None] | None = None

    def send_soon(self, *, key: bytes | None, value: bytes, partition: int) -> Any:
        if self.on_send is not None:
            self.on_send()
        self.frames.setdefault(partition, []).append(value)
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        done.set_result(None)
        return done

    def records(self, topic: str) -> list[Record]:
        """The frames as the next stage consumes them."""
        return [Record(value, message=At(topic, partition, offset)) for partition, frames in self.frames.items()
                for offset, value in enumerate(frames)]

    def items(self) -> list[FrameItem]:
        return [item for frames in self.frames.values() for frame in frames for item in decode_frame(frame)]


@dataclass
class DeadLetterTopic:
    sent: list[tuple[bytes | None, bytes]] = field(default_factory=list)

    async def send(self, key: bytes | None, value: bytes) -> None:
        self.sent.append((key, value))

    def letters(self) -> list[DeadLetter]:
        return [decode_dead_letter(value) for _, value in self.sent]


class Decoder:
    """``DecoderService`` without a registry: the bundled schemas."""

    def __init__(self) -> None:
        self.codec = SourceCodec(EventDecoder("confluent"))

    async def decode(self, raw: bytes | None, *, topic: str, partition: int, offset: int,
                     now: datetime) -> Event | DeadLetter:
        return await self.codec.decode_or_dead_letter(raw, topic=topic, partition=partition, offset=offset, now=now)


@dataclass
class Pipeline:
    config: MappingConfig = field(default_factory=MappingConfig)
    aliases: dict[bytes, bytes] = field(default_factory=dict)
    identities: dict[bytes, bytes] = field(default_factory=dict)
    by_device: Topic = field(default_factory=Topic)
    by_person: Topic = field(default_factory=Topic)
    requests: Topic = field(default_factory=Topic)
    dead: DeadLetterTopic = field(default_factory=DeadLetterTopic)
    max_record_bytes: int = 900_000

    def __post_init__(self) -> None:
        partition_of = Partitioner(PARTITIONS)
        sink = DeadLetterSink(self.dead.send)
        self.route = RouteStage(Decoder(), sink, Outbox(self.by_device, partition_of, self.max_record_bytes),
                                self.max_record_bytes)
        self.resolve = ResolveStage(AliasTable(self.aliases), sink,
                                    Outbox(self.by_person, partition_of, self.max_record_bytes))
        self.apply = ApplyStage(IdentityTable(self.identities), self.config, sink,
                                Outbox(self.requests, partition_of, self.max_record_bytes))

    async def run(self, source: Sequence[Record]) -> None:
        await self.route.handle(source)
        await self.resolve.handle(self.by_device.records("by-device"))
        await self.apply.handle(self.by_person.records("by-person"))


def _source(lines: Sequence[str]) -> list[Record]:
    records = []
    for offset, line in enumerate(lines):
        try:
            event = normalize_json_line(line)
        except Exception:
            continue  # not an event: `produce` refuses it
        records.append(Record(encode_event(event), message=At("src", 0, offset)))
    return records


def _event(text: str) -> Event:
    raw = orjson.loads(text)
    raw.setdefault("timestamp", "2026-05-01T10:00:00Z")
    return normalize(raw)


def _requests_by_path(items: Sequence[FrameItem]) -> dict[str, list[dict[str, Any]]]:
    out: dict[str, list[dict[str, Any]]] = {}
    for item in items:
        request = decode_request(item.value)
        out.setdefault(request.endpoint.value, []).append(dict(request.body))
    return out


@pytest.mark.parametrize("project_type", list(ProjectType))
async def test_the_stages_decide_the_sample_as_explain_does(project_type: ProjectType) -> None:
    lines = SAMPLE.read_text().splitlines()
    config = MappingConfig(project_type=project_type)
    pipeline = Pipeline(config)
    # One event per batch keeps the sample's order through every hop, as explain reads it.
    for record in _source(lines):
        await pipeline.run([record])
        pipeline.by_device.frames.clear()
        pipeline.by_person.frames.clear()
    want: dict[str, list[dict[str, Any]]] = {}
    dead: list[str] = []
    for decided in explain_lines(lines, config):
        for request in decided["requests"]:
            want.setdefault(request["path"], []).append(request["body"])
        if decided["decision"] == "drop" and decided["reason"] not in {"anonymous", "stale_identify", "unchanged",
                                                                         "filtered_by_transformation"}:
            dead.append(decided["reason"])

    got = _requests_by_path(pipeline.requests.items())
    assert set(got) == set(want)
    for path, bodies in want.items():
        # createdAt and the like are the same; the order per person is kept, across people it is by partition
        assert sorted(orjson.dumps(b, option=orjson.OPT_SORT_KEYS) for b in got[path]) == \
            sorted(orjson.dumps(b, option=orjson.OPT_SORT_KEYS) for b in bodies), path
    assert sorted(letter.reason for letter in pipeline.dead.letters()) == sorted(dead)


async def test_route_dead_letters_poison_and_events_too_large_and_keys_the_rest_by_device() -> None:
    small = _event('{"type":"track","event":"A","anonymousId":"d-1","messageId":"m-1"}')
    large = _event('{"type":"track","event":"B","anonymousId":"d-2","messageId":"m-2",'
                                '"properties":{"blob":"' + "x" * 5000 + '"}}')
    pipeline = Pipeline(max_record_bytes=len(encode_event_internal(small)) + 100)
    await pipeline.route.handle([Record(b"\x00garbage", key=b"k", message=At("src", 1, 7)),
                                 Record(encode_event(small), message=At("src", 1, 8)),
                                 Record(encode_event(large), message=At("src", 1, 9))])
    letters = pipeline.dead.letters()
    assert [(letter.reason, letter.source_offset) for letter in letters] == [("unknown_schema", 7), ("too_large", 9)]
    assert pipeline.dead.sent[0][0] == b"k"
    [item] = pipeline.by_device.items()
    assert item.key == b"d-1"
    assert item.source == ("src", 1, 8)
    assert decode_event_internal(item.value).message_id == "m-1"


async def test_route_takes_a_replayed_records_source_from_its_header() -> None:
    event = _event('{"type":"track","event":"A","userId":"u-1","messageId":"m-1"}')
    pipeline = Pipeline()
    replayed = Record(encode_event(event), headers={REPLAY_SOURCE_HEADER: b"freshpaint.events:3:1200"},
                      message=At("replay", 0, 5))
    await pipeline.route.handle([replayed])
    [item] = pipeline.by_device.items()
    assert item.source == ("freshpaint.events", 3, 1200)


async def test_resolve_links_devices_drops_anonymous_events_and_dead_letters_undecodable_frames() -> None:
    identify = _event('{"type":"identify","userId":"u-1","anonymousId":"d-1","messageId":"i-1",'
                                   '"timestamp":"2026-05-01T10:00:00Z"}')
    later = _event('{"type":"track","event":"A","anonymousId":"d-1","messageId":"t-1",'
                                '"timestamp":"2026-05-01T10:05:00Z"}')
    stranger = _event('{"type":"track","event":"A","anonymousId":"d-9","messageId":"t-9"}')
    frame = encode_frame([FrameItem(b"d-1", encode_event_internal(identify), ("src", 0, 1)),
                          FrameItem(b"d-1", encode_event_internal(later), ("src", 0, 2)),
                          FrameItem(b"d-9", encode_event_internal(stranger), ("src", 0, 3)),
                          FrameItem(b"d-9", b"not an event", ("src", 0, 4))])
    pipeline = Pipeline()
    await pipeline.resolve.handle([Record(frame, message=At("by-device", 0, 0)),
                                   Record(b"no frame", key=b"x", message=At("by-device", 0, 1))])
    assert [(item.key, item.source) for item in pipeline.by_person.items()] == [
        (b"u-1", ("src", 0, 1)), (b"u-1", ("src", 0, 2))]
    assert AliasTable(pipeline.aliases).get("d-1") == Link("u-1", identify.timestamp)
    letters = pipeline.dead.letters()
    assert [(letter.reason, letter.source_topic, letter.source_offset) for letter in letters] == [
        ("undecodable", "src", 4), ("undecodable", "by-device", 1)]


async def test_resolve_drops_an_event_from_before_its_device_was_linked() -> None:
    early = _event('{"type":"track","event":"A","anonymousId":"d-1","messageId":"t-0",'
                                '"timestamp":"2026-05-01T09:00:00Z"}')
    pipeline = Pipeline()
    pipeline.aliases[b"d-1"] = link_to_bytes(Link("u-1", datetime.fromisoformat("2026-05-01T10:00:00+00:00")))
    await pipeline.resolve.handle([Record(encode_frame([FrameItem(b"d-1", encode_event_internal(early))]))])
    assert pipeline.by_person.items() == []
    assert pipeline.dead.sent == []


async def test_apply_writes_identities_only_after_its_requests_are_sent_and_dead_letters_incomplete_purchases() -> None:
    identify = _event('{"type":"identify","userId":"u-1","messageId":"i-1",'
                                   '"traits":{"email":"jane@example.com","plan":"pro"}}')
    purchase = _event('{"type":"track","event":"Order Completed","userId":"u-1","messageId":"p-1",'
                                   '"properties":{"total":10}}')
    pipeline = Pipeline()
    table_when_sent: list[dict[bytes, bytes]] = []
    pipeline.requests.on_send = lambda: table_when_sent.append(dict(pipeline.identities))
    frame = encode_frame([FrameItem(b"u-1", encode_event_internal(identify), ("src", 0, 1)),
                          FrameItem(b"u-1", encode_event_internal(purchase), ("src", 0, 2))])
    await pipeline.apply.handle([Record(frame, message=At("by-person", 0, 0))])

    assert table_when_sent == [{}], "the identity was written before its requests were sent"
    assert IdentityTable(pipeline.identities).get("u-1") is not None
    assert list(_requests_by_path(pipeline.requests.items())) == ["/api/users/update"]
    [letter] = pipeline.dead.letters()
    assert (letter.reason, letter.source_offset) == ("purchase_incomplete", 2)
    assert letter.event is not None and letter.event.message_id == "p-1"


class Deliverer:
    """Iterable refuses the ids in ``refuse``; ``Abandoned`` is raised at round ``abandon_at_round``."""

    def __init__(self, refuse: frozenset[str] = frozenset(), abandon_at_round: int | None = None) -> None:
        self.refuse = refuse
        self.abandon_at_round = abandon_at_round
        self.rounds: list[list[str]] = []

    async def deliver(self, requests: Sequence[IterableRequest]) -> list[Outcome]:
        if self.abandon_at_round == len(self.rounds):
            raise Abandoned
        self.rounds.append([request.body["id"] for request in requests])
        return [Outcome(request, delivered=request.body["id"] not in self.refuse, reason="iterable_rejected",
                        detail="refused by the test") for request in requests]


def _request_frame(ids: Sequence[str], partition: int = 0, offset: int = 0) -> Record:
    requests = [IterableRequest(Endpoint.EVENTS_TRACK, {"id": i, "eventName": "A"}, "u-1", i) for i in ids]
    items = [FrameItem(b"u-1", encode_request(request), ("src", 0, n)) for n, request in enumerate(requests)]
    return Record(encode_frame(items), message=At("requests", partition, offset))


async def test_send_delivers_in_rounds_and_dead_letters_what_iterable_refuses() -> None:
    dead = DeadLetterTopic()
    sender = Deliverer(refuse=frozenset({"e-2"}))
    stage = SendStage(sender, DeadLetterSink(dead.send), round_items=2)
    frames = [_request_frame(["e-1", "e-2", "e-3"]), _request_frame(["e-4"], offset=1)]
    assert await stage.handle(frames) == frames
    assert sender.rounds == [["e-1", "e-2"], ["e-3", "e-4"]]
    [letter] = dead.letters()
    assert (letter.reason, letter.source_offset, dead.sent[0][0]) == ("iterable_rejected", 1, b"u-1")


async def test_send_acks_nothing_when_its_frames_are_given_up_or_the_delivery_abandoned() -> None:
    frames = [_request_frame(["e-1", "e-2"]), _request_frame(["e-3"], offset=1)]
    abandoned = SendStage(Deliverer(abandon_at_round=1), DeadLetterSink(DeadLetterTopic().send), round_items=1)
    assert await abandoned.handle(frames) == []

    given_up: set[int] = set()
    sender = Deliverer()
    stage = SendStage(sender, DeadLetterSink(DeadLetterTopic().send), round_items=1,
                      given_up=lambda frame: frame.message.offset in given_up)
    original = sender.deliver

    async def give_up_the_second_frame_after_one_round(requests: Sequence[IterableRequest]) -> list[Outcome]:
        given_up.add(1)
        return await original(requests)

    sender.deliver = give_up_the_second_frame_after_one_round  # type: ignore[method-assign]
    assert await stage.handle(frames) == []
    assert sender.rounds == [["e-1"]], "no round after the give-up"


async def test_send_skips_frames_given_up_before_it_started() -> None:
    frames = [_request_frame(["e-1"]), _request_frame(["e-2"], offset=1)]
    sender = Deliverer()
    stage = SendStage(sender, DeadLetterSink(DeadLetterTopic().send), round_items=10,
                      given_up=lambda frame: frame.message.offset == 0)
    assert await stage.handle(frames) == [frames[1]]
    assert sender.rounds == [["e-2"]]


async def test_resolve_and_apply_let_other_tasks_run_between_frames() -> None:
    # The sender's calls share the event loop with the stages: a take of several full frames must not keep it.
    lines = [f'{{"type":"identify","userId":"u-{i}","anonymousId":"d-{i}","messageId":"i-{i}",'
             f'"timestamp":"2026-05-01T10:00:00Z","traits":{{"email":"p{i}@example.com"}}}}' for i in range(40)]
    pipeline = Pipeline()
    await pipeline.route.handle(_source(lines))
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            ticks += 1
            await asyncio.sleep(0)

    async def ticks_at_each_frame(stage: ResolveStage | ApplyStage, frames: list[Record]) -> list[int]:
        seen: dict[int, int] = {}  # frame -> the ticker's count when the stage entered it first

        def enter(frame: Any) -> None:
            seen.setdefault(id(frame), ticks)

        stage.enter = enter
        await stage.handle(frames)
        assert len(frames) >= 2 and len(seen) == len(frames), "the test needs a take of several frames"
        return [seen[id(frame)] for frame in frames]

    running = asyncio.create_task(ticker())
    await asyncio.sleep(0)
    try:
        for counts in (await ticks_at_each_frame(pipeline.resolve, pipeline.by_device.records("by-device")),
                       await ticks_at_each_frame(pipeline.apply, pipeline.by_person.records("by-person"))):
            assert all(later > earlier for earlier, later in itertools.pairwise(counts)), counts
    finally:
        running.cancel()
