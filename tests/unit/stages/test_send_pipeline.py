"""The send stage overlaps batches (``SendStage.submit``): budgets stay busy, acks stay in order."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import pytest

from streams.iterable import Outcome
from streams.model import IterableRequest
from streams.stages import DeadLetterSink, SendStage
from tests.unit.stages.test_stages import DeadLetterTopic, _request_frame


class Gated:
    """A sender whose deliveries wait until the test opens the gate of their first request's id."""

    def __init__(self) -> None:
        self.gates: dict[str, asyncio.Event] = {}
        self.started: list[str] = []

    def gate(self, request_id: str) -> asyncio.Event:
        return self.gates.setdefault(request_id, asyncio.Event())

    async def deliver(self, requests: Sequence[IterableRequest]) -> list[Outcome]:
        first = str(requests[0].body["id"])
        self.started.append(first)
        await self.gate(first).wait()
        return [Outcome(request, delivered=True) for request in requests]


def _never_fails(exc: BaseException) -> None:
    raise AssertionError(f"unexpected error: {exc!r}")


async def test_a_later_batch_is_delivered_while_an_earlier_one_waits_and_acks_stay_in_order() -> None:
    sender = Gated()
    stage = SendStage(sender, DeadLetterSink(DeadLetterTopic().send), round_items=10, in_flight=3)
    acked: list[list[int]] = []

    async def ack(frames: Sequence[object]) -> None:
        acked.append([frame.message.offset for frame in frames])  # type: ignore[attr-defined]

    first, second = [_request_frame(["a"], offset=0)], [_request_frame(["b"], offset=1)]
    await stage.submit(first, ack, _never_fails)
    await stage.submit(second, ack, _never_fails)
    for _ in range(5):
        await asyncio.sleep(0)
    assert sender.started == ["a", "b"], "the second batch did not wait for the first"
    sender.gate("b").set()
    for _ in range(5):
        await asyncio.sleep(0)
    assert acked == [], "a batch is not acked before the batches submitted before it"
    sender.gate("a").set()
    for _ in range(10):
        await asyncio.sleep(0)
    assert acked == [[0], [1]]


async def test_submit_waits_while_in_flight_batches_run_and_cancel_acks_nothing() -> None:
    sender = Gated()
    stage = SendStage(sender, DeadLetterSink(DeadLetterTopic().send), round_items=10, in_flight=2)
    acked: list[object] = []

    async def ack(frames: Sequence[object]) -> None:
        acked.extend(frames)

    await stage.submit([_request_frame(["a"])], ack, _never_fails)
    third = asyncio.create_task(stage.submit([_request_frame(["b"], offset=1)], ack, _never_fails))
    for _ in range(5):
        await asyncio.sleep(0)
    assert not third.done(), "two batches in flight: submit waits"
    sender.gate("a").set()
    await asyncio.wait_for(third, 1)
    await stage.cancel()
    assert len(acked) == 1, "the batch still running at cancel is not acked"


async def test_a_bug_in_a_batch_reaches_on_error_and_later_batches_are_not_acked() -> None:
    class Broken(Gated):
        async def deliver(self, requests: Sequence[IterableRequest]) -> list[Outcome]:
            if requests[0].body["id"] == "a":
                raise RuntimeError("bug")
            return await super().deliver(requests)

    sender = Broken()
    stage = SendStage(sender, DeadLetterSink(DeadLetterTopic().send), round_items=10, in_flight=3)
    errors: list[BaseException] = []
    acked: list[object] = []

    async def ack(frames: Sequence[object]) -> None:
        acked.extend(frames)

    await stage.submit([_request_frame(["a"])], ack, errors.append)
    sender.gate("b").set()
    await stage.submit([_request_frame(["b"], offset=1)], ack, errors.append)
    for _ in range(10):
        await asyncio.sleep(0)
    assert [str(e) for e in errors] == ["bug"] and acked == []
    await stage.cancel()


async def test_batches_hand_their_requests_to_the_sender_in_order() -> None:
    """A person's order across batches rests on the order of the deliver() calls: a later batch waits until
    every round of the earlier one went to the sender, even when it is quicker to get there."""
    sender = Gated()
    stage = SendStage(sender, DeadLetterSink(DeadLetterTopic().send), round_items=1, in_flight=3)
    acked: list[object] = []

    async def ack(frames: Sequence[object]) -> None:
        acked.extend(frames)

    await stage.submit([_request_frame(["a1", "a2"])], ack, _never_fails)  # two rounds
    await stage.submit([_request_frame(["b"], offset=1)], ack, _never_fails)
    for _ in range(10):
        await asyncio.sleep(0)
    assert sender.started == ["a1"], "b waits for a's second round to reach the sender"
    sender.gate("a1").set()
    for _ in range(10):
        await asyncio.sleep(0)
    assert sender.started == ["a1", "a2", "b"]
    sender.gate("a2").set()
    sender.gate("b").set()
    for _ in range(10):
        await asyncio.sleep(0)
    assert len(acked) == 2


async def test_batches_that_finished_do_not_hold_the_next_while_an_earlier_one_delivers() -> None:
    """Issue 19: one long batch (hundreds of purchases at 30 calls/s) kept the stage from taking more once the
    short batches after it had finished, and the endpoints' lanes ran dry before it ended."""
    sender = Gated()
    stage = SendStage(sender, DeadLetterSink(DeadLetterTopic().send), round_items=10, in_flight=2, held=4)
    acked: list[list[int]] = []

    async def ack(frames: Sequence[object]) -> None:
        acked.append([frame.message.offset for frame in frames])  # type: ignore[attr-defined]

    for request_id in ("b", "c"):
        sender.gate(request_id).set()
    await stage.submit([_request_frame(["a"], offset=0)], ack, _never_fails)  # the long one
    await asyncio.wait_for(stage.submit([_request_frame(["b"], offset=1)], ack, _never_fails), 1)
    await asyncio.wait_for(stage.submit([_request_frame(["c"], offset=2)], ack, _never_fails), 1)
    assert sender.started == ["a", "b", "c"], "b had its outcomes: c went on while a still delivers"
    fourth = asyncio.create_task(stage.submit([_request_frame(["d"], offset=3)], ack, _never_fails))
    for _ in range(10):
        await asyncio.sleep(0)
    assert not fourth.done(), "four batches held (held=4): submit waits before taking a fifth"
    assert acked == [], "b and c wait for a's ack"
    sender.gate("a").set()
    sender.gate("d").set()
    await asyncio.wait_for(fourth, 1)
    for _ in range(20):
        await asyncio.sleep(0)
    assert acked == [[0], [1], [2], [3]]


def test_held_must_cover_in_flight() -> None:
    with pytest.raises(ValueError, match="held"):
        SendStage(Gated(), DeadLetterSink(DeadLetterTopic().send), round_items=10, in_flight=3, held=2)


def test_in_flight_must_be_positive() -> None:
    with pytest.raises(ValueError, match="in_flight"):
        SendStage(Gated(), DeadLetterSink(DeadLetterTopic().send), round_items=10, in_flight=0)
