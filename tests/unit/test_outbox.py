from __future__ import annotations

from collections.abc import Awaitable, Iterator
from typing import Any

import pytest
from aiokafka.partitioner import DefaultPartitioner  # type: ignore[import-untyped]

from streams.codecs import decode_frame
from streams.outbox import Outbox, Partitioner


class Produced:
    """What a send gives back; awaiting it finishes at once (Kafka has the frame)."""

    def __await__(self) -> Iterator[None]:
        return iter(())


class RecordingTopic:
    def __init__(self) -> None:
        self.sent: list[tuple[int, bytes]] = []

    def send_soon(self, *, key: bytes | None, value: bytes, partition: int) -> Awaitable[Any]:
        assert key is None
        self.sent.append((partition, value))
        return Produced()


class TestPartitioner:
    @pytest.mark.parametrize("partitions", [1, 4, 7])
    def test_same_partition_as_kafkas_default_partitioner(self, partitions: int) -> None:
        kafka = DefaultPartitioner()
        ours = Partitioner(partitions, memo_size=10)
        every = list(range(partitions))
        for i in range(100):  # more keys than the memo holds: the memo is cleared and refilled
            key = f"person-{i}@example.com".encode()
            assert ours(key) == kafka(key, every, every)
            assert ours(key) == kafka(key, every, every)

    def test_unkeyed_records_are_spread(self) -> None:
        ours = Partitioner(4)
        assert {ours(None) for _ in range(8)} == {0, 1, 2, 3}

    def test_needs_a_partition(self) -> None:
        with pytest.raises(ValueError, match="at least 1"):
            Partitioner(0)


class TestOutbox:
    def test_one_frame_per_partition_with_each_record_where_its_key_belongs(self) -> None:
        topic = RecordingTopic()
        partition_of = Partitioner(4)
        outbox = Outbox(topic, partition_of, max_frame_bytes=1_000_000)
        keys = [f"k{i}".encode() for i in range(40)]
        for i, key in enumerate(keys):
            outbox.add(key, f"v{i}".encode(), ("src", 0, i))
        assert len(outbox) == 40
        assert topic.sent == []  # nothing leaves before flush
        produced = outbox.flush()
        assert len(outbox) == 0
        assert len(produced) == len(topic.sent) and all(isinstance(p, Produced) for p in produced)
        partitions = [p for p, _ in topic.sent]
        assert sorted(partitions) == sorted(set(partitions))
        seen = []
        for partition, raw in topic.sent:
            items = decode_frame(raw)
            assert all(partition_of(item.key) == partition for item in items)
            offsets = [item.source[2] for item in items]
            assert offsets == sorted(offsets)  # per partition, in the order added
            seen.extend(items)
        assert sorted(item.source[2] or 0 for item in seen) == list(range(40))

    def test_large_batches_are_split_by_bytes(self) -> None:
        topic = RecordingTopic()
        outbox = Outbox(topic, Partitioner(1), max_frame_bytes=2_000)
        for i in range(20):
            outbox.add(b"same", b"x" * 300, ("src", 0, i))
        outbox.flush()
        assert len(topic.sent) > 1
        assert all(len(raw) <= 2_000 for _, raw in topic.sent)
        assert [item.source[2] for _, raw in topic.sent for item in decode_frame(raw)] == list(range(20))
        assert outbox.sent_frames == len(topic.sent)
        outbox.flush()
        assert outbox.sent_frames == len(topic.sent)  # an empty outbox sends nothing
