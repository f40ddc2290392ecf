"""Kafka I/O shared by ``replay`` and ``dead-letters``: reading offset ranges of a topic without a group.

Neither command may touch a consumer group's committed offsets (the live worker's), so every consumer
here has no group and commits nothing; partitions are assigned by hand and positioned by seek.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping, Sequence
from typing import Any

from streams.brokers import partitions_of, start_client
from streams.replay import PartitionRange

__all__ = ["consumer_without_group", "read_ranges", "whole_topic"]


def consumer_without_group(options: Mapping[str, Any]) -> Any:
    """A started-later aiokafka consumer with no group and no auto-commit."""
    from aiokafka import AIOKafkaConsumer  # type: ignore[import-untyped]

    # No group: nothing is committed and no group's offsets are read. "earliest" only matters
    # when retention deletes the start of a range while it is being read.
    return AIOKafkaConsumer(group_id=None, enable_auto_commit=False, auto_offset_reset="earliest", **options)


async def whole_topic(options: Mapping[str, Any], topic: str) -> list[PartitionRange]:
    """Each partition of ``topic`` from its first offset to its end offset now."""
    from aiokafka import TopicPartition

    tps = [TopicPartition(topic, p) for p in await partitions_of(options, topic)]
    consumer = consumer_without_group(options)
    await start_client(consumer, options["bootstrap_servers"])
    try:
        starts = await consumer.beginning_offsets(tps)
        ends = await consumer.end_offsets(tps)
    finally:
        await consumer.stop()
    return [PartitionRange(tp.partition, starts[tp], ends[tp]) for tp in tps]


async def read_ranges(
    options: Mapping[str, Any], topic: str, ranges: Sequence[PartitionRange]
) -> AsyncIterator[Any]:
    """Yield every record of ``ranges`` (aiokafka ``ConsumerRecord``), partition by partition in
    offset order, with a consumer that has no group; stops when each partition reached its end."""
    from aiokafka import TopicPartition

    remaining = {TopicPartition(topic, r.partition): r for r in ranges if r.size}
    if not remaining:
        return
    consumer = consumer_without_group(options)
    await start_client(consumer, options["bootstrap_servers"])
    try:
        consumer.assign(list(remaining))
        for tp, first in remaining.items():
            consumer.seek(tp, first.start)
        while remaining:
            batch = await consumer.getmany(*remaining, timeout_ms=1000)
            for tp, messages in batch.items():
                planned = remaining.get(tp)
                if planned is None:
                    continue
                for message in messages:
                    if message.offset >= planned.end:
                        break
                    yield message
            for tp in list(remaining):
                # position, not the last offset seen: compaction and transaction markers leave gaps.
                if await consumer.position(tp) >= remaining[tp].end:
                    consumer.pause(tp)
                    del remaining[tp]
    finally:
        await consumer.stop()
