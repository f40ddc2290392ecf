"""How many records the frames of each internal topic held lately: what turns a backlog counted in frames
(Kafka offsets) into one counted in records (``streams.source_reader.Backlog``)."""

from __future__ import annotations

__all__ = ["FrameSizes"]


class FrameSizes:
    """A moving mean of records per frame, by topic, over about the last ``span`` frames read.

    A frame's size depends on the upstream take (a fetch's records for one partition, or eight frames' worth)
    and on the partition count, so frames alone say little: about 450 records a by-person frame in a benchmark
    on 4 partitions, 1-6 in a test fetching 100 records on 16 (bench/RESULTS.md, issue 19, session 8)."""

    def __init__(self, span: int = 64) -> None:
        self._weight = 1.0 / span
        self._means: dict[str, float] = {}

    def observe(self, topic: str, records: int) -> None:
        mean = self._means.get(topic)
        self._means[topic] = float(records) if mean is None else mean + (records - mean) * self._weight

    def mean(self, topic: str) -> float:
        """Records per frame of ``topic`` lately; 0.0 before its first frame was read."""
        return self._means.get(topic, 0.0)
