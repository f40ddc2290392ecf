"""``Backlog``: which later-stage topic, if any, holds more unprocessed records than the bound; ``FrameSizes``."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping

import pytest
from aiokafka import TopicPartition

from streams.source_reader import Backlog
from streams.stages import FrameSizes

OffsetsOf = Callable[[list[TopicPartition]], Awaitable[dict[TopicPartition, int]]]


def offsets_of(offsets: Mapping[tuple[str, int], int]) -> OffsetsOf:
    async def asked(partitions: list[TopicPartition]) -> dict[TopicPartition, int]:
        return {tp: offsets[(tp.topic, tp.partition)] for tp in partitions}
    return asked


async def no_call(partitions: list[TopicPartition]) -> dict[TopicPartition, int]:
    raise AssertionError(f"asked the broker about {partitions}")


def one_record_each(topic: str) -> float:
    return 1.0


async def test_the_topics_are_held_to_the_bound_together() -> None:
    processed = {("a", 0): 10, ("a", 1): 10, ("b", 0): 0}
    backlog = Backlog(topics=["a", "b"], max_records=10, partitions=lambda: list(processed), processed=processed.get,
                      records_per_frame=one_record_each)
    # a: 3 + 2 waiting (at the bound), b: 5 waiting (at the bound)
    # a: 3 + 2 waiting, b: 4: 9 in all, within the bound
    assert await backlog.behind(offsets_of({("a", 0): 13, ("a", 1): 12, ("b", 0): 4}), no_call) is None
    # a: 3 + 3, b: 5: over the bound, although neither topic alone is; a holds the most
    assert await backlog.behind(offsets_of({("a", 0): 13, ("a", 1): 13, ("b", 0): 5}), no_call) == ("a", 6)


async def test_frames_count_at_their_topics_recent_size() -> None:
    processed = {("small", 0): 0, ("large", 0): 0}
    sizes = {"small": 2.0, "large": 500.0}
    backlog = Backlog(topics=["small", "large"], max_records=1000, partitions=lambda: list(processed),
                      processed=processed.get, records_per_frame=sizes.__getitem__)
    backlog.max_records = 1800
    assert await backlog.behind(offsets_of({("small", 0): 400, ("large", 0): 2}), no_call) is None  # 800 + 1,000
    assert await backlog.behind(offsets_of({("small", 0): 400, ("large", 0): 3}), no_call) == ("large", 1500)


async def test_other_topics_do_not_count_and_never_processed_partitions_count_from_the_log_start() -> None:
    processed: dict[tuple[str, int], int | None] = {("a", 0): None, ("source", 0): 0}
    backlog = Backlog(topics=["a"], max_records=5, partitions=lambda: list(processed), processed=processed.get,
                      records_per_frame=one_record_each)
    ends = offsets_of({("a", 0): 1000, ("source", 0): 1000})
    # retention removed the start of a: 990 is the first offset there is
    assert await backlog.behind(ends, offsets_of({("a", 0): 996})) is None
    assert await backlog.behind(ends, offsets_of({("a", 0): 990})) == ("a", 10)
    processed[("a", 0)] = 999
    assert await backlog.behind(ends, no_call) is None


async def test_no_owned_partitions_asks_the_broker_nothing() -> None:
    backlog = Backlog(topics=["a"], max_records=1, partitions=lambda: [("b", 0)], processed=lambda tp: 0,
                      records_per_frame=one_record_each)
    assert await backlog.behind(no_call, no_call) is None


def test_frame_sizes_follow_the_recent_frames_of_each_topic() -> None:
    sizes = FrameSizes(span=4)
    assert sizes.mean("a") == 0.0
    sizes.observe("a", 100)
    assert sizes.mean("a") == 100.0
    for _ in range(40):
        sizes.observe("a", 4)
    assert sizes.mean("a") == pytest.approx(4.0, abs=0.01)
    assert sizes.mean("b") == 0.0



async def test_a_broker_that_does_not_answer_the_look_lets_reading_go_on() -> None:
    from aiokafka.errors import KafkaTimeoutError

    from streams.source_reader import SourceReader

    class Silent:
        async def end_offsets(self, partitions: list[TopicPartition]) -> dict[TopicPartition, int]:
            raise KafkaTimeoutError()

        beginning_offsets = end_offsets

    backlog = Backlog(topics=["a"], max_records=1, partitions=lambda: [("a", 0)], processed=lambda tp: 0,
                      records_per_frame=one_record_each)
    reader = SourceReader(topics=["s"], group_id="g", takeover_group_id=None, client_options={},
                          handle=None,  # type: ignore[arg-type]  # never called here
                          max_records=1, wait_seconds=0.01, fetch_bytes=1 << 20, session_timeout_seconds=10,
                          backlog=backlog)
    reader._consumer = Silent()
    assert await reader._look() is None
    with pytest.raises(KafkaTimeoutError):  # the same look without the guard
        await backlog.behind(reader._consumer.end_offsets, reader._consumer.beginning_offsets)
