"""The batched changelog recovery (``faust_patches.drain_changelogs_in_batches``) against faust's own
loop, on a real faust App, table, ``Recovery`` and changelog queue (no broker: the records are put in
the queue as faust's fetcher would)."""

from __future__ import annotations

import asyncio
import contextlib
import gc
from collections.abc import AsyncIterator, Callable, Iterable
from types import SimpleNamespace
from typing import Any

import faust
import pytest
from faust.tables.recovery import Recovery
from faust.types import TP
from faust.types.tuples import Message

from streams.faust_patches import drain_changelogs_in_batches, queue_changelog_records_directly

FAUST = "faust's loop"
BATCHED = "batched"


def _loop(variant: str, recovery: Any) -> Any:
    """The recovery loop of ``variant``, as mode would start it."""
    if variant == BATCHED:
        drain_changelogs_in_batches(recovery)
    task = recovery._slurp_changelogs
    assert task in set(recovery._get_tasks())
    return task.fun(recovery)


class _Recovering:
    """An app with the ``identities`` table, two active changelog partitions and one standby, in recovery."""

    def __init__(self) -> None:
        self.app = faust.App("test-recovery", broker="kafka://127.0.0.1:1", store="memory://", autodiscover=False)
        self.table = self.app.Table("identities", partitions=3, key_type=bytes, value_type=bytes)
        topic = self.table.changelog_topic.get_topic_name()
        self.active = [TP(topic, 0), TP(topic, 1)]
        self.standby = TP(topic, 2)
        tables: Any = self.app.tables  # TableManagerT declares neither recovery nor changelog_queue
        self.recovery: Recovery = tables.recovery
        self.queue = tables.changelog_queue
        self.consumer = SimpleNamespace()  # faust's consumer holds only the fetcher's callback for these tests
        for tp in self.active:
            self.recovery.add_active(self.table, tp)
        self.recovery.add_standby(self.table, self.standby)

    def expect(self, highwaters: dict[TP, int]) -> None:
        """Recovery is under way until each active partition reached its highwater (last offset)."""
        offsets = self.recovery.active_offsets
        for tp in self.active:  # as faust's _build_offsets leaves an empty store: -1
            offsets[tp] = -1 if offsets[tp] is None else offsets[tp]
        self.recovery.active_highwaters.update(highwaters)
        self.recovery._set_recovery_started()

    def put(self, records: Iterable[tuple[TP, int, bytes, bytes | None]]) -> None:
        for tp, offset, key, value in records:
            message = Message(tp.topic, tp.partition, offset, 0.0, 0, [], key, value, None, tp=tp)
            self.queue.put_nowait(self.app.create_event(key, value, [], message))

    async def run_until_recovered(self, loop: Any) -> None:
        task = asyncio.ensure_future(loop)
        try:
            await asyncio.wait_for(self.recovery.signal_recovery_end.wait(), timeout=10)
            await asyncio.sleep(0)  # the loop goes on to the standby check after the signal
        finally:
            self.recovery._stopped.set()
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):  # faust's loop may have returned by then
                await task

    def data(self) -> dict[bytes, bytes]:
        return dict(self.table.data.items())


@pytest.fixture
async def recovering() -> AsyncIterator[_Recovering]:
    yield _Recovering()
    # faust's objects have finalizers: run them here, not inside a later ast.parse (pytest rewriting a
    # module it imports at the end of the session), where CPython 3.11.7 fails with "AST constructor
    # recursion depth mismatch"
    gc.collect()


def _counting(recovery: Any, name: str) -> list[int]:
    """Count the calls of ``recovery.<name>`` (an instance attribute shadowing faust's method)."""
    calls: list[int] = []
    method: Callable[[], Any] = getattr(recovery, name)

    def counted() -> Any:
        calls.append(1)
        return method()

    setattr(recovery, name, counted)
    return calls


@pytest.mark.parametrize("variant", [FAUST, BATCHED])
async def test_recovery_applies_the_latest_value_of_each_key_and_ends(variant: str, recovering: _Recovering) -> None:
    tp0, tp1 = recovering.active
    recovering.expect({tp0: 1_499, tp1: 2})
    recovering.put([(recovering.standby, 0, b"standby", b"z")])
    recovering.put((tp0, i, f"k{i % 500}".encode(), f"v{i}".encode()) for i in range(1_500))  # three rounds
    recovering.put([(tp1, 0, b"gone", b"x"), (tp1, 1, b"kept", b"y"), (tp1, 2, b"gone", None)])  # a tombstone

    await recovering.run_until_recovered(_loop(variant, recovering.recovery))

    assert recovering.data() == {**{f"k{i}".encode(): f"v{1_000 + i}".encode() for i in range(500)},
                                 b"kept": b"y", b"standby": b"z"}
    assert not recovering.recovery.in_recovery
    assert recovering.recovery.active_offsets == {tp0: 1_499, tp1: 2}
    assert recovering.recovery.standby_offsets == {recovering.standby: 0}


@pytest.mark.parametrize("variant", [FAUST, BATCHED])
async def test_records_at_or_below_the_recovered_offset_are_not_applied_again(
    variant: str, recovering: _Recovering
) -> None:
    tp0, tp1 = recovering.active
    recovering.recovery.active_offsets[tp0] = 4  # the store's persisted offset
    recovering.expect({tp0: 9, tp1: -1})
    recovering.put((tp0, i, b"key", f"v{i}".encode()) for i in (3, 4, 5))
    recovering.put([(tp0, 9, b"last", b"9"), (tp0, 5, b"key", b"replayed")])

    await recovering.run_until_recovered(_loop(variant, recovering.recovery))

    assert recovering.data() == {b"key": b"v5", b"last": b"9"}


async def test_the_end_of_recovery_is_checked_once_per_take_not_per_record(recovering: _Recovering) -> None:
    # faust checks after every record, building a Counter over every partition each time (its loop fails here)
    tp0, _ = recovering.active
    recovering.expect({tp0: 1_999})
    recovering.put((tp0, i, f"k{i}".encode(), b"v") for i in range(2_000))
    checks = _counting(recovering.recovery, "need_recovery")

    await recovering.run_until_recovered(_loop(BATCHED, recovering.recovery))

    assert len(recovering.data()) == 2_000
    assert len(checks) == 1


async def test_a_record_of_a_partition_no_longer_assigned_is_dropped(
    recovering: _Recovering, caplog: pytest.LogCaptureFixture
) -> None:
    # faust's loop applies it to the table of the record before it (its loop fails here)
    tp0, _ = recovering.active
    other = recovering.app.Table("aliases", partitions=3, key_type=bytes, value_type=bytes)
    revoked = TP(other.changelog_topic.get_topic_name(), 1)
    recovering.expect({tp0: 1})
    recovering.put([(tp0, 0, b"person", b"identity"), (revoked, 0, b"device", b"link"), (tp0, 1, b"p2", b"i2")])

    await recovering.run_until_recovered(_loop(BATCHED, recovering.recovery))

    assert recovering.data() == {b"person": b"identity", b"p2": b"i2"}
    assert dict(other.data.items()) == {}
    assert "Recovery dropped a changelog record of" in caplog.text


class _Conductor:
    """The records faust's own path (the conductor's ``on_message``) was given."""

    def __init__(self) -> None:
        self.records: list[Any] = []

    async def on_message(self, message: Any) -> None:
        self.records.append(message)


def _direct(recovering: _Recovering) -> _Conductor:
    """Install the direct path on a consumer (the fetcher's callback: a recording stand-in for faust's conductor
    path) and subscribe the changelog channel as faust's table manager does."""
    app: Any = recovering.app
    conductor = _Conductor()
    recovering.consumer.callback = conductor.on_message
    channel = recovering.table.changelog_topic.clone_using_queue(recovering.queue)
    app.topics._topic_name_index[channel.get_topic_name()].add(channel)
    queue_changelog_records_directly(app, recovering.consumer)
    app.flow_control.resume()  # as recovery does before it reads the changelogs
    return conductor


def _message(tp: TP, offset: int, key: bytes, value: bytes | None) -> Message:
    return Message(tp.topic, tp.partition, offset, 0.0, 0, [("h", b"1")], key, value, None, tp=tp)


async def test_a_changelog_record_goes_straight_to_the_changelog_queue_as_faust_would_decode_it(
    recovering: _Recovering
) -> None:
    conductor = _direct(recovering)
    tp0, _ = recovering.active
    channel = recovering.table.changelog_topic.clone_using_queue(recovering.queue)
    for message in (_message(tp0, 0, b"person", b"identity"), _message(tp0, 1, b"person", None)):
        await recovering.consumer.callback(message)
        event = recovering.queue.get_nowait()
        faust_event = await channel.decode(message, propagate=True)
        assert (type(event), event.key, event.value, event.headers, event.message) == (
            type(faust_event), faust_event.key, faust_event.value, faust_event.headers, faust_event.message)
    assert conductor.records == []  # faust's path is not taken (this fails without the patch)


async def test_other_records_and_a_suspended_flow_take_faust_path(recovering: _Recovering) -> None:
    conductor = _direct(recovering)
    tp0, _ = recovering.active
    source = _message(TP("source", 0), 0, b"k", b"v")
    await recovering.consumer.callback(source)
    recovering.app.flow_control.suspend()
    suspended = _message(tp0, 0, b"person", b"identity")
    await recovering.consumer.callback(suspended)
    assert conductor.records == [source, suspended]
    assert recovering.queue.empty()


async def test_a_filling_changelog_queue_takes_faust_path_with_its_back_pressure(recovering: _Recovering) -> None:
    conductor = _direct(recovering)
    tp0, _ = recovering.active
    high = recovering.queue.pressure_high_size
    for offset in range(high + 1):
        await recovering.consumer.callback(_message(tp0, offset, b"k", b"v"))
    assert recovering.queue.qsize() == high
    assert [m.offset for m in conductor.records] == [high]
