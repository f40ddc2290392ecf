"""The first stage's reader on a real broker: offsets are committed only after the fetch's output is
acknowledged, a restart resumes after the last commit, and a new group takes over where faust's group left."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Awaitable, Sequence
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from streams.source_reader import SourceReader, SourceRecord

pytestmark = pytest.mark.integration


class Recorder:
    """A ``HandleFetch`` that records what it is given and holds each fetch's acknowledgement until released."""

    def __init__(self) -> None:
        self.records: list[SourceRecord] = []
        self.pending: list[asyncio.Future[None]] = []
        self.hold = False

    async def __call__(self, records: Sequence[SourceRecord]) -> Sequence[Awaitable[Any]]:
        self.records.extend(records)
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        if not self.hold:
            done.set_result(None)
        self.pending.append(done)
        return [done]

    def release(self) -> None:
        for future in self.pending:
            if not future.done():
                future.set_result(None)

    def offsets(self, partition: int) -> list[int]:
        return [r.offset for r in self.records if r.partition == partition]


async def wait_for(condition: Any, timeout: float = 30.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not condition():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.05)


@pytest.fixture()
async def topic(kafka_bootstrap: str) -> AsyncIterator[str]:
    name = f"reader-{uuid.uuid4().hex[:10]}"
    admin = AIOKafkaAdminClient(bootstrap_servers=kafka_bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(name, num_partitions=2, replication_factor=1)])
        yield name
        await admin.delete_topics([name])
    finally:
        await admin.close()


async def produce(bootstrap: str, topic: str, partition: int, count: int, start: int = 0) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap)
    await producer.start()
    try:
        for i in range(start, start + count):
            await producer.send(topic, f"v{i}".encode(), key=f"k{i}".encode(), partition=partition,
                                headers=[("h", b"1")])
        await producer.flush()
    finally:
        await producer.stop()


async def committed(bootstrap: str, group: str) -> dict[tuple[str, int], int]:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        found = await admin.list_consumer_group_offsets(group)
    finally:
        await admin.close()
    return {(tp.topic, tp.partition): meta.offset for tp, meta in found.items() if meta.offset >= 0}


def reader(bootstrap: str, topic: str, group: str, handle: Recorder, takeover: str | None = None) -> SourceReader:
    return SourceReader(topics=[topic], group_id=group, takeover_group_id=takeover,
                        client_options={"bootstrap_servers": bootstrap}, handle=handle, max_records=500,
                        wait_seconds=0.01, fetch_bytes=1 << 20, session_timeout_seconds=10)


async def running(source: SourceReader) -> asyncio.Task[None]:
    await source.start()
    return asyncio.create_task(source.run())


async def stopped(source: SourceReader, task: asyncio.Task[None]) -> None:
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await source.stop()


async def test_offsets_are_committed_only_once_the_output_is_acknowledged(kafka_bootstrap: str, topic: str) -> None:
    await produce(kafka_bootstrap, topic, 0, 30)
    await produce(kafka_bootstrap, topic, 1, 20)
    group = f"g-{uuid.uuid4().hex[:8]}"
    handle = Recorder()
    handle.hold = True
    source = reader(kafka_bootstrap, topic, group, handle)
    task = await running(source)
    try:
        await wait_for(lambda: len(handle.records) == 50)
        await asyncio.sleep(1.0)  # time for a commit that should not happen
        assert await committed(kafka_bootstrap, group) == {}, "committed before the output was acknowledged"
        assert handle.offsets(0) == list(range(30)) and handle.offsets(1) == list(range(20))
        first = handle.records[0]
        assert (first.topic, first.key, first.headers, first.message) == (topic, first.key, {"h": b"1"}, first)
        assert first.value == f"v{first.offset}".encode()

        handle.release()
        deadline = asyncio.get_running_loop().time() + 30
        while await committed(kafka_bootstrap, group) != {(topic, 0): 30, (topic, 1): 20}:
            assert asyncio.get_running_loop().time() < deadline, await committed(kafka_bootstrap, group)
            await asyncio.sleep(0.2)
        assert sorted(source.lag_positions()) == [(topic, 0, 30, 30), (topic, 1, 20, 20)]
    finally:
        await stopped(source, task)

    # A restart resumes after the commit: only the new records come again.
    await produce(kafka_bootstrap, topic, 0, 3, start=30)
    again = Recorder()
    source = reader(kafka_bootstrap, topic, group, again)
    task = await running(source)
    try:
        await wait_for(lambda: len(again.records) == 3)
        await asyncio.sleep(0.5)
        assert again.offsets(0) == [30, 31, 32] and again.offsets(1) == []
    finally:
        await stopped(source, task)


async def test_a_fetch_not_acknowledged_before_a_stop_is_read_again(kafka_bootstrap: str, topic: str) -> None:
    await produce(kafka_bootstrap, topic, 0, 10)
    group = f"g-{uuid.uuid4().hex[:8]}"
    handle = Recorder()
    handle.hold = True
    source = reader(kafka_bootstrap, topic, group, handle)
    task = await running(source)
    await wait_for(lambda: len(handle.records) == 10)
    await stopped(source, task)  # the worker stops while Kafka has not acknowledged the output
    assert await committed(kafka_bootstrap, group) == {}

    again = Recorder()
    source = reader(kafka_bootstrap, topic, group, again)
    task = await running(source)
    try:
        await wait_for(lambda: len(again.records) == 10)
        assert again.offsets(0) == list(range(10))
    finally:
        await stopped(source, task)


async def test_a_new_group_starts_where_the_takeover_group_left(kafka_bootstrap: str, topic: str) -> None:
    await produce(kafka_bootstrap, topic, 0, 12)
    await produce(kafka_bootstrap, topic, 1, 4)
    old_group = f"faust-{uuid.uuid4().hex[:8]}"
    # What faust's group had committed for the source topic: partition 0 at 7, partition 1 never.
    old = AIOKafkaConsumer(bootstrap_servers=kafka_bootstrap, group_id=old_group, enable_auto_commit=False)
    await old.start()
    try:
        old.assign([TopicPartition(topic, 0)])
        await old.commit({TopicPartition(topic, 0): 7})
    finally:
        await old.stop()

    handle = Recorder()
    source = reader(kafka_bootstrap, topic, f"{old_group}-source", handle, takeover=old_group)
    task = await running(source)
    try:
        await wait_for(lambda: len(handle.records) >= 5 + 4)
        await asyncio.sleep(0.5)
        assert handle.offsets(0) == [7, 8, 9, 10, 11]
        assert handle.offsets(1) == [0, 1, 2, 3]
        assert source.joined
    finally:
        await stopped(source, task)


async def test_a_reader_not_started_reports_no_lag_and_is_not_joined() -> None:
    # The lag timer runs from the app's start; the reader joins a moment later.
    source = reader("127.0.0.1:1", "t", "g", Recorder())
    assert list(source.lag_positions()) == [] and not source.joined


async def test_reading_waits_while_a_later_stage_is_behind(kafka_bootstrap: str, topic: str) -> None:
    """A later stage's topic holding more unprocessed records than the bound stops the reader (the source's
    records stay there) until the stage catches up; the pause is counted."""
    from streams import metrics
    from streams.source_reader import Backlog

    downstream = f"{topic}-down"
    admin = AIOKafkaAdminClient(bootstrap_servers=kafka_bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(downstream, num_partitions=2, replication_factor=1)])
    finally:
        await admin.close()
    await produce(kafka_bootstrap, downstream, 0, 4)
    await produce(kafka_bootstrap, downstream, 1, 3)
    processed: dict[tuple[str, int], int] = {(downstream, 0): 0, (downstream, 1): 0}
    backlog = Backlog(topics=[downstream], max_records=50, partitions=lambda: list(processed),
                      processed=lambda tp: processed[tp], records_per_frame=lambda topic: 10.0)
    await produce(kafka_bootstrap, topic, 0, 10)
    paused_before = metrics.SOURCE_PAUSED_SECONDS._value.get()
    handle = Recorder()
    source = SourceReader(topics=[topic], group_id=f"g-{uuid.uuid4().hex[:8]}", takeover_group_id=None,
                          client_options={"bootstrap_servers": kafka_bootstrap}, handle=handle, max_records=500,
                          wait_seconds=0.01, fetch_bytes=1 << 20, session_timeout_seconds=10, backlog=backlog)
    task = await running(source)
    try:
        await wait_for(lambda: source.joined)
        await asyncio.sleep(2.0)
        assert handle.records == [], "read while the later stage held 7 frames of 10 records against a bound of 50"
        processed[(downstream, 1)] = 2  # 4 + 1 frames, 50 records waiting: within the bound
        await wait_for(lambda: len(handle.records) == 10)
        assert handle.offsets(0) == list(range(10))
        assert metrics.SOURCE_PAUSED_SECONDS._value.get() - paused_before >= 1.5
    finally:
        await stopped(source, task)
