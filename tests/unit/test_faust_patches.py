"""The inline delivery that replaces faust's four-tasks-per-record race (``streams.faust_patches``)."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any

import pytest
from aiokafka import TopicPartition
from faust.transport.producer import ProducerBuffer
from mode import Service
from mode.utils.queues import FlowControlEvent, FlowControlQueue

from streams.faust_patches import (
    UnsentRecords,
    _continue,
    _keep_buffered_messages_on_redundant_resume,
    _rewind_uncommitted_partitions_on_seek,
    bound_wait_for_acks,
    deliver_inline_while_flowing,
    flush_the_whole_producer_buffer,
)


def _step_once(coroutine: Any) -> Any:
    """Step a coroutine by hand to its first wait, as the inline delivery does."""
    return coroutine.send(None)


async def test_continue_finishes_a_coroutine_that_waited_on_a_future() -> None:
    async def delivery() -> int:
        done, _ = await asyncio.wait([asyncio.ensure_future(asyncio.sleep(0.01, result=5))])
        return done.pop().result() + 1

    coroutine = delivery()
    assert await _continue(coroutine, _step_once(coroutine)) == 6


async def test_continue_finishes_after_a_bare_yield() -> None:
    async def delivery() -> str:
        await asyncio.sleep(0)
        await asyncio.sleep(0)
        return "done"

    coroutine = delivery()
    assert _step_once(coroutine) is None
    assert await _continue(coroutine, None) == "done"


async def test_continue_hands_a_failed_future_to_the_coroutine() -> None:
    failing: asyncio.Future[int] = asyncio.get_running_loop().create_future()

    async def delivery() -> str:
        try:
            await failing
        except KeyError as error:
            return f"caught {error}"
        return "not caught"

    coroutine = delivery()
    task = asyncio.ensure_future(_continue(coroutine, _step_once(coroutine)))
    failing.set_exception(KeyError("x"))
    assert await task == "caught 'x'"


async def test_cancelling_the_rest_cancels_the_coroutine_at_its_wait() -> None:
    never: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    cleaned: list[str] = []

    async def delivery() -> None:
        try:
            await never
        finally:
            cleaned.append("finally ran")

    coroutine = delivery()
    task = asyncio.ensure_future(_continue(coroutine, _step_once(coroutine)))
    await asyncio.sleep(0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert cleaned == ["finally ran"] and never.cancelled()


class _Fetching(Service):
    """What the patch uses of faust's consumer: mode's ``wait_first`` and the flow switches."""

    def __init__(self) -> None:
        super().__init__()
        self.suspend_flow = asyncio.Event()

    def stop_flow(self) -> None:
        self.suspend_flow.set()


@pytest.fixture
async def consumer() -> Any:
    # Made inside the test's loop: mode binds a service to the loop running when it is made.
    # (A faust.App per test would do, but leaves an event loop open per app.)
    fetching = _Fetching()
    deliver_inline_while_flowing(fetching)
    return fetching


async def test_a_delivery_that_completes_at_once_runs_inline(consumer: Any) -> None:
    tasks_before = len(asyncio.all_tasks())
    seen_tasks: list[int] = []

    async def delivery() -> str:
        seen_tasks.append(len(asyncio.all_tasks()))
        return "delivered"

    flow_stopped = consumer.suspend_flow.wait()
    result = await consumer.wait_first(delivery(), flow_stopped)
    assert (result.results, result.stopped) == (["delivered"], False)
    assert seen_tasks == [tasks_before]  # no task was made for it
    assert flow_stopped.cr_frame is None  # the unused wait was closed, not left never-awaited


async def test_a_blocked_delivery_still_gives_way_when_flow_stops(consumer: Any) -> None:
    queue_has_room = asyncio.Event()
    abandoned: list[str] = []

    async def delivery() -> str:
        try:
            await queue_has_room.wait()
            return "delivered"
        except asyncio.CancelledError:
            abandoned.append("cancelled at its wait")
            raise

    flow_stopped = consumer.suspend_flow.wait()
    racing = asyncio.ensure_future(consumer.wait_first(delivery(), flow_stopped))
    await asyncio.sleep(0.01)
    assert not racing.done()
    consumer.stop_flow()
    result = await asyncio.wait_for(racing, 5)
    assert result.done == [flow_stopped]
    await asyncio.sleep(0)
    assert abandoned == ["cancelled at its wait"]


async def test_a_blocked_delivery_completes_when_its_queue_drains(consumer: Any) -> None:
    queue_has_room = asyncio.Event()

    async def delivery() -> str:
        await queue_has_room.wait()
        return "delivered"

    racing = asyncio.ensure_future(consumer.wait_first(delivery(), consumer.suspend_flow.wait()))
    await asyncio.sleep(0.01)
    queue_has_room.set()
    result = await asyncio.wait_for(racing, 5)
    assert result.results == ["delivered"]


async def test_while_flow_is_suspended_faust_races_as_before(consumer: Any) -> None:
    consumer.stop_flow()

    async def delivery() -> str:
        return "delivered"

    flow_stopped = consumer.suspend_flow.wait()
    result = await asyncio.wait_for(consumer.wait_first(delivery(), flow_stopped), 5)
    assert flow_stopped in result.done  # faust's race: suspended flow wins at once


class _Record:
    def __init__(self) -> None:
        self.acked = False


class _AckWaiter:
    """The parts of a faust app and consumer the bounded wait uses; acks never come (Iterable is down)."""

    def __init__(self, *, stopping: bool) -> None:
        self.should_stop = stopping
        self.in_flight = _Record()
        self._unacked_messages = {self.in_flight}
        self.waits_started = 0

    async def wait_empty(self) -> None:
        """faust's loop: look at the set of unacked records about once a second, until it is empty."""
        self.waits_started += 1
        while self._unacked_messages:
            await asyncio.sleep(0.02)


async def _seconds_to_return(rig: _AckWaiter) -> float:
    loop = asyncio.get_running_loop()
    started = loop.time()
    await asyncio.wait_for(rig.wait_empty(), timeout=5)
    return loop.time() - started


async def test_a_stopping_worker_waits_for_acks_only_as_long_as_the_drain(caplog: pytest.LogCaptureFixture) -> None:
    rig = _AckWaiter(stopping=True)
    bound_wait_for_acks(rig, rig, drain_seconds=0.2)
    assert 0.15 < await _seconds_to_return(rig) < 2
    assert "stopping with 1 records still in flight after a 0.2 s drain" in caplog.text
    assert rig.in_flight.acked, "a late ack from the sender must find it acked already, so it is never committed"
    # faust waits twice on stop (the app, then the consumer): both share the one deadline.
    rig._unacked_messages.add(_Record())
    assert await _seconds_to_return(rig) < 0.1


async def test_a_rebalance_gives_up_in_flight_records_after_each_drain(caplog: pytest.LogCaptureFixture) -> None:
    rig = _AckWaiter(stopping=False)
    given_up: list[bool] = []
    bound_wait_for_acks(rig, rig, drain_seconds=0.2, on_give_up=lambda: given_up.append(rig.in_flight.acked))
    assert 0.15 < await _seconds_to_return(rig) < 2
    assert "giving up partitions in a rebalance with 1 records" in caplog.text and rig.in_flight.acked
    assert given_up == [True], "the sender is told once the records are marked, to stop delivering them"
    # The next rebalance has a drain of its own.
    rig._unacked_messages.add(_Record())
    assert 0.15 < await _seconds_to_return(rig) < 2
    assert len(given_up) == 2


@pytest.mark.parametrize("stopping", [True, False])
async def test_a_drain_that_finishes_in_time_gives_nothing_up(stopping: bool, caplog: pytest.LogCaptureFixture) -> None:
    rig = _AckWaiter(stopping=stopping)
    given_up: list[None] = []
    bound_wait_for_acks(rig, rig, drain_seconds=0.3, on_give_up=lambda: given_up.append(None))
    asyncio.get_running_loop().call_later(0.05, rig._unacked_messages.clear)  # the last ack arrives
    assert await _seconds_to_return(rig) < 0.25
    await asyncio.sleep(0.4)  # past the deadline: the timer must be gone
    assert "still in flight" not in caplog.text and not rig.in_flight.acked and not given_up


async def _slow_buffer(seconds_per_record: float) -> tuple[Any, list[str]]:
    """A started faust ProducerBuffer whose records take ``seconds_per_record`` each to reach "aiokafka"."""
    buffer = ProducerBuffer()
    buffer.app = SimpleNamespace(conf=SimpleNamespace(producer_threaded=False))
    produced: list[str] = []

    async def pass_on(record: str) -> None:
        await asyncio.sleep(seconds_per_record)
        produced.append(record)

    buffer._send_pending = pass_on
    flush_the_whole_producer_buffer(buffer)
    await buffer.start()
    return buffer, produced


async def test_the_flush_before_a_commit_waits_for_every_buffered_record() -> None:
    buffer, produced = await _slow_buffer(0.15)  # faust's own flush gives up after 0.1 s without progress
    try:
        for record in ("a", "b", "c"):
            buffer.put(record)
        await asyncio.wait_for(buffer.flush(), timeout=5)
        assert produced == ["a", "b", "c"]
    finally:
        await buffer.stop()


async def test_a_flush_that_cannot_finish_raises_instead_of_allowing_a_commit() -> None:
    buffer, produced = await _slow_buffer(30)
    buffer.put("stuck")
    flushing = asyncio.ensure_future(buffer.flush())
    await asyncio.sleep(0.05)
    buffer._stopped.set()  # the buffer is stopping: the record will never be produced
    with pytest.raises(UnsentRecords, match="1 records not yet produced"):
        await asyncio.wait_for(flushing, timeout=5)
    assert produced == []
    await buffer.stop()


class _AioConsumer:
    """aiokafka's consumer as the rewind sees it: committed offsets, and where each seek went."""

    def __init__(self, committed: dict[TopicPartition, int | None]) -> None:
        self.committed = committed
        self.seeks: dict[TopicPartition, int] = {}

    async def seek_to_committed(self) -> dict[TopicPartition, int | None]:
        return self.committed

    def seek(self, tp: TopicPartition, offset: int) -> None:
        self.seeks[tp] = offset

    async def seek_to_beginning(self, *partitions: TopicPartition) -> None:
        raise AssertionError("seek_to_beginning waits a whole fetch round; the rewind must not await it")


async def test_the_rewind_after_recovery_seeks_never_committed_stream_partitions_to_0_without_a_round_trip() -> None:
    changelog = "app-identities-changelog"
    committed: dict[TopicPartition, int | None] = {TopicPartition("source", p): None for p in range(64)}
    committed |= {TopicPartition("replay", 0): 0, TopicPartition("requests", 0): 17, TopicPartition(changelog, 0): None}
    aio = _AioConsumer(committed)

    async def call_thread(method: Any, *args: Any) -> Any:
        return await method(*args)

    thread = SimpleNamespace(call_thread=call_thread, _ensure_consumer=lambda: aio)
    app: Any = SimpleNamespace(consumer=SimpleNamespace(_thread=thread),
                               tables=SimpleNamespace(changelog_topics={changelog}))
    _rewind_uncommitted_partitions_on_seek(app)

    assert await app.consumer.seek_to_committed() == committed
    rewound = {tp for tp, offset in committed.items() if not offset and tp.topic != changelog}
    assert aio.seeks == dict.fromkeys(rewound, 0)


async def test_a_redundant_resume_keeps_the_messages_fetched_after_the_recovery_seek() -> None:
    """Against mode's own flow control: resumed while already flowing, a patched app's queue keeps its
    messages (unpatched, mode empties it: the records fetched after the seek were lost); a real
    suspend -> resume still clears it, as a rebalance means."""
    flow = FlowControlEvent(initially_suspended=False)
    app: Any = SimpleNamespace(flow_control=flow)
    queue: FlowControlQueue = FlowControlQueue(flow_control=flow, clear_on_resume=True)
    _keep_buffered_messages_on_redundant_resume(app)

    await queue.put("fetched after the seek")
    app.flow_control.resume()
    assert queue.qsize() == 1

    app.flow_control.suspend()
    app.flow_control.resume()
    assert queue.qsize() == 0
