"""``faust_patches.adaptive_take`` on a real faust app, stream and channel queue (no broker: the events are
put on the stream's queue as faust's fetcher would put them)."""

from __future__ import annotations

import asyncio
import gc
from collections.abc import AsyncIterator
from typing import Any

import faust
import pytest
from faust.types import TP
from faust.types.tuples import Message

from streams.faust_patches import adaptive_take

WINDOW = 30.0
"""Longer than any test waits: a batch handed over before it comes from the queue running dry."""


class _Streaming:
    def __init__(self) -> None:
        self.app = faust.App("test-take", broker="kafka://127.0.0.1:1", store="memory://", autodiscover=False)
        self.app.flow_control.resume()  # as after a rebalance: a stream skips events while flow is off
        self.stream: Any = self.app.stream(self.app.channel())
        self.offset = 0

    async def put(self, count: int) -> None:
        """``count`` events on the stream's queue, as one fetch delivers them."""
        tp = TP("source", 0)
        for _ in range(count):
            message = Message(tp.topic, tp.partition, self.offset, 0.0, 0, [], b"k", b"%d" % self.offset, None,
                              tp=tp, generation_id=self.app.consumer_generation_id)
            await self.stream.channel.put(self.app.create_event(b"k", message.value, [], message))
            self.offset += 1


@pytest.fixture
async def streaming() -> AsyncIterator[_Streaming]:
    made = _Streaming()
    yield made
    await made.stream.stop()
    del made.stream, made.app
    gc.collect()  # faust's finalizers here, not in a later ast.parse (see test_faust_recovery's fixture)


async def _next(take: AsyncIterator[list[Any]]) -> list[bytes]:
    return [event.value for event in await asyncio.wait_for(anext(take), timeout=5)]


async def test_what_one_fetch_brought_is_handed_over_without_waiting_for_the_window(streaming: _Streaming) -> None:
    take = adaptive_take(streaming.stream, 100, WINDOW)
    first = asyncio.ensure_future(_next(take))
    await asyncio.sleep(0.05)  # the take is waiting on an empty queue
    await streaming.put(3)
    assert await first == [b"0", b"1", b"2"]  # faust's noack_take would hold them for the whole window
    await take.aclose()


async def test_under_backlog_batches_fill_up_to_the_most_a_take_holds(streaming: _Streaming) -> None:
    await streaming.put(5)
    take = adaptive_take(streaming.stream, 2, WINDOW)
    assert [await _next(take) for _ in range(3)] == [[b"0", b"1"], [b"2", b"3"], [b"4"]]
    await take.aclose()


async def test_events_queued_while_a_batch_is_handled_make_the_next_batch(streaming: _Streaming) -> None:
    take = adaptive_take(streaming.stream, 100, WINDOW)
    await streaming.put(1)
    assert await _next(take) == [b"0"]
    await streaming.put(4)  # arrive while the agent body still holds the first batch
    assert await _next(take) == [b"1", b"2", b"3", b"4"]
    await take.aclose()


async def test_the_take_acks_nothing(streaming: _Streaming) -> None:
    take = adaptive_take(streaming.stream, 100, WINDOW)
    await streaming.put(2)
    batch = await asyncio.wait_for(anext(take), timeout=5)
    assert [event.message.acked for event in batch] == [False, False]
    await take.aclose()
