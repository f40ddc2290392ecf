"""Outboxes: what a stage sends to an internal topic, gathered per partition and sent as frames.

A stage handles a taken batch, adds each output record to the outbox of its topic, and calls
``flush`` once the batch is handled and before it acks the batch. Records go to the partition
Kafka's default partitioner would give their key (murmur2, as the Java client and aiokafka do), so a
stage's table keys keep the partitions they would have as single keyed records, and a source topic
already keyed by device lands on the same table partitions as the by-device topic.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, Protocol

from aiokafka.partitioner import murmur2  # type: ignore[import-untyped]

from streams.codecs import FrameItem, Source, encode_frame, frame_chunks

__all__ = ["FrameSink", "Outbox", "Partitioner"]


class FrameSink(Protocol):
    """What an outbox sends through: faust's ``Topic.send_soon``, in effect."""

    def send_soon(self, *, key: bytes | None, value: bytes, partition: int) -> Awaitable[Any]: ...


class Partitioner:
    """Kafka's default partition of a key (``murmur2(key) & 0x7fffffff % partitions``), memoized.

    murmur2 is pure Python in aiokafka (about 15 µs a key); the same people and devices come back
    all the time, so a bounded memo saves most of it.
    """

    def __init__(self, partitions: int, memo_size: int = 200_000) -> None:
        if partitions < 1:
            raise ValueError(f"partitions must be at least 1, got {partitions}")
        self.partitions = partitions
        self._memo: dict[bytes, int] = {}
        self._memo_size = memo_size
        self._next_unkeyed = 0

    def __call__(self, key: bytes | None) -> int:
        if key is None:
            # Kafka spreads unkeyed records too; these have no table key to keep together.
            self._next_unkeyed = (self._next_unkeyed + 1) % self.partitions
            return self._next_unkeyed
        partition = self._memo.get(key)
        if partition is None:
            if len(self._memo) >= self._memo_size:
                self._memo.clear()
            partition = self._memo[key] = (murmur2(key) & 0x7FFFFFFF) % self.partitions
        return partition


class Outbox:
    """Records bound for one internal topic, held per partition until ``flush``."""

    def __init__(self, sink: FrameSink, partitioner: Callable[[bytes | None], int], max_frame_bytes: int) -> None:
        self._sink = sink
        self._partition_of = partitioner
        self._max_frame_bytes = max_frame_bytes
        self._pending: dict[int, list[FrameItem]] = {}
        self.sent_frames = 0

    def add(self, key: bytes | None, value: bytes, source: Source) -> None:
        partition = self._partition_of(key)
        items = self._pending.get(partition)
        if items is None:
            items = self._pending[partition] = []
        items.append(FrameItem(key, value, source))

    def __len__(self) -> int:
        return sum(len(items) for items in self._pending.values())

    def flush(self) -> list[Awaitable[Any]]:
        """Hand every held record to the producer buffer, one frame per partition (or more, by size).

        Returns what each frame's send gives back: awaited, they finish once Kafka has the frames.
        """
        pending, self._pending = self._pending, {}
        sent: list[Awaitable[Any]] = []
        for partition, items in pending.items():
            for chunk in frame_chunks(items, self._max_frame_bytes):
                sent.append(self._sink.send_soon(key=None, value=encode_frame(chunk), partition=partition))
                self.sent_frames += 1
        return sent
