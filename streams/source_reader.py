"""The first stage's reader: the source and replay topics read with aiokafka directly, a whole fetch at a time.

Why not a faust agent: faust's machinery costs about 80 µs of CPU per consumed record (its consumer
thread, a queue per stream, an event object, per-record ack bookkeeping), paid once per source event,
while a bare aiokafka consumer costs about 5 µs (bench/RESULTS.md, issue 19). The internal topics carry
frames, so there faust's cost is paid per frame and the tables keep faust's changelogs, standbys and
recovery; the source topic was the one place where it was paid per record. The first stage is
stateless, so it needs none of what faust adds.

Delivery (at least once, as the agents): a fetch is handled by the route stage, every record it
produced (frames on the by-device topic, dead letters) is acknowledged by Kafka, and only then are the
fetch's offsets committed. A crash or a lost partition before the commit means the fetch is read
again, never skipped. A rebalance waits for the fetch in hand to be committed before the partitions
go. The reader has its own consumer group (``<FPI_APP_ID>-source``): faust's group runs faust's
assignor and its members would not share partitions with a plain consumer. Before it joins, a
partition this group never committed starts where faust's group left it (an upgrade from a worker
whose first stage was a faust agent; the offsets are copied before joining), else at the start of the
topic, as faust's group would.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping, Sequence
from typing import Any

from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, TopicPartition  # type: ignore[import-untyped]
from aiokafka.admin import AIOKafkaAdminClient  # type: ignore[import-untyped]
from aiokafka.errors import CommitFailedError, KafkaError  # type: ignore[import-untyped]

from streams.brokers import start_client

__all__ = ["HandleFetch", "SourceReader", "SourceRecord", "source_group"]

log = logging.getLogger("streams.source_reader")

FETCH_MAX_BYTES = 52_428_800
"""A fetch's bound over all partitions: the Java client's and aiokafka's default (50 MiB), raised to the per-partition
bound when FPI_CONSUMER_FETCH_BYTES is larger."""

HandleFetch = Callable[[Sequence["SourceRecord"]], Awaitable[Sequence[Awaitable[Any]]]]
"""Handles a fetch's records in order and returns what finishes once Kafka has acknowledged its output."""


def source_group(app_id: str) -> str:
    """The first stage's consumer group: its own, beside faust's group ``app_id``."""
    return f"{app_id}-source"


class SourceRecord:
    """A consumed source record as the stages read one (``streams.stages.InputRecord``): it is its own
    ``message``, the coordinates faust's events keep there. A plain class: a frozen dataclass took 0.9 µs to
    make, this 0.25 µs, once per source event."""

    __slots__ = ("headers", "key", "offset", "partition", "topic", "value")

    def __init__(self, topic: str, partition: int, offset: int, key: bytes | None, value: bytes | None,
                 headers: Mapping[str, bytes] | None) -> None:
        self.topic = topic
        self.partition = partition
        self.offset = offset
        self.key = key
        self.value = value
        self.headers = headers

    @property
    def message(self) -> SourceRecord:
        return self

    @classmethod
    def of(cls, record: Any) -> SourceRecord:
        """From aiokafka's ``ConsumerRecord`` (headers: a sequence of (str, bytes) pairs)."""
        return cls(record.topic, record.partition, record.offset, record.key, record.value,
                   dict(record.headers) if record.headers else None)


class SourceReader:
    """Reads ``topics`` in group ``group_id`` and hands each fetch to ``handle``; see the module's docstring."""

    def __init__(self, *, topics: Sequence[str], group_id: str, takeover_group_id: str | None,
                 client_options: Mapping[str, Any], handle: HandleFetch, max_records: int,
                 wait_seconds: float, fetch_bytes: int, session_timeout_seconds: float,
                 instance_id: str | None = None) -> None:
        self.topics = tuple(topics)
        self.group_id = group_id
        self.takeover_group_id = takeover_group_id
        self._client_options = dict(client_options)
        self._handle = handle
        self._max_records = max_records
        self._window = wait_seconds
        self._consumer_options: dict[str, Any] = dict(
            group_id=group_id, group_instance_id=instance_id, enable_auto_commit=False,
            auto_offset_reset="earliest", max_partition_fetch_bytes=fetch_bytes,
            fetch_max_bytes=max(fetch_bytes, FETCH_MAX_BYTES), session_timeout_ms=int(session_timeout_seconds * 1000),
            heartbeat_interval_ms=min(3000, int(session_timeout_seconds * 1000) // 3),  # a join waits for a beat
            rebalance_timeout_ms=int(session_timeout_seconds * 1000), **self._client_options)
        self._consumer: Any = None
        # Held while a fetch is handled and committed; a rebalance takes it before partitions go.
        self._in_hand = asyncio.Lock()
        self._committed: dict[TopicPartition, int] = {}
        self.joined = False
        """True once the group gave this reader its partitions (possibly none) the first time."""

    async def start(self) -> None:
        """Connect and join the group (``BrokerUnavailable`` if no broker answers)."""
        if self.takeover_group_id:
            await self._take_over(self.takeover_group_id)
        self._consumer = AIOKafkaConsumer(**self._consumer_options)  # in the running loop: aiokafka takes it
        self._consumer.subscribe(self.topics, listener=_Handover(self))
        await start_client(self._consumer, self._client_options["bootstrap_servers"])

    async def run(self) -> None:
        """Read, handle and commit until cancelled."""
        while True:
            fetched = await self._gather()
            if fetched:
                async with self._in_hand:
                    await self._handle_fetch(fetched)

    async def _gather(self) -> dict[TopicPartition, list[Any]]:
        """What the consumer has, waiting up to the window for more while fewer than ``max_records``: under
        backlog a fetch fills at once, under light load the window bounds the wait (and the frames' size)."""
        fetched: dict[TopicPartition, list[Any]] = {}
        count = 0
        loop = asyncio.get_running_loop()
        deadline: float | None = None
        while count < self._max_records:
            timeout = 1.0 if deadline is None else deadline - loop.time()
            if timeout <= 0:
                break
            more = await self._consumer.getmany(timeout_ms=int(timeout * 1000), max_records=self._max_records - count)
            if not more:
                break
            for tp, records in more.items():
                fetched.setdefault(tp, []).extend(records)
                count += len(records)
            if deadline is None:
                deadline = loop.time() + self._window
        return fetched

    async def stop(self) -> None:
        """Leave the group; called once ``run`` is cancelled. A fetch not yet committed is read again by the
        partitions' next owner."""
        if self._consumer is not None:
            await self._consumer.stop()

    async def _handle_fetch(self, fetched: Mapping[TopicPartition, Sequence[Any]]) -> None:
        records = [SourceRecord.of(record) for batch in fetched.values() for record in batch]
        acknowledged = await self._handle(records)
        if acknowledged:
            await asyncio.gather(*acknowledged)
        offsets = {tp: batch[-1].offset + 1 for tp, batch in fetched.items() if batch}
        await self._commit(offsets)

    async def _commit(self, offsets: Mapping[TopicPartition, int]) -> None:
        assigned = self._consumer.assignment()
        offsets = {tp: offset for tp, offset in offsets.items() if tp in assigned}
        if not offsets:
            return
        try:
            await self._consumer.commit(offsets)
        except CommitFailedError as exc:
            # The group moved on (this worker was too slow for its session): the partitions' new owner
            # reads these records again, and Iterable's event ids make the second delivery an update.
            log.warning("source offsets not committed (%s); the records are read again by their new owner", exc)
            return
        except KafkaError as exc:
            # A later commit covers these offsets too; until then a restart reads them again.
            log.warning("source offsets not committed (%s: %s); the next fetch's commit covers them",
                        type(exc).__name__, exc)
            return
        self._committed.update(offsets)

    def lag_positions(self) -> Iterable[tuple[str, int, int, int | None]]:
        """(topic, partition, high watermark, committed offset) of each assigned partition whose high
        watermark is known, for ``fpi_consumer_lag`` (none before ``start``)."""
        for tp in self._consumer.assignment() if self._consumer is not None else ():
            highwater = self._consumer.highwater(tp)
            if highwater is not None:
                yield tp.topic, tp.partition, highwater, self._committed.get(tp)

    async def revoked(self) -> None:
        """The fetch in hand is committed before the group moves partitions away."""
        async with self._in_hand:
            pass

    async def assigned(self, partitions: Iterable[TopicPartition]) -> None:
        """Reads the group's committed offsets of ``partitions``, the lag's reference until the next commit."""
        async with self._admin() as admin:
            self._committed = await _group_offsets(admin, self.group_id, list(partitions))
        self.joined = True

    async def _take_over(self, group: str) -> None:
        """Commits, for each partition of the topics this group never committed, the offset ``group`` committed.

        Done before joining: seeking from the assignment callback came too late, aiokafka had already fetched
        from the start. A group another worker already joined took over before it joined; its members refuse
        this commit, which is then not needed.
        """
        async with self._admin() as admin:
            described = await admin.describe_topics(list(self.topics))
            partitions = [TopicPartition(d["topic"], p["partition"]) for d in described for p in d["partitions"]]
            ours = await _group_offsets(admin, self.group_id, partitions)
            taken = await _group_offsets(admin, group, [tp for tp in partitions if tp not in ours])
        if not taken:
            return
        seeder = AIOKafkaConsumer(group_id=self.group_id, enable_auto_commit=False, **self._client_options)
        await start_client(seeder, self._client_options["bootstrap_servers"])
        try:
            seeder.assign(list(taken))
            await seeder.commit(taken)
        except KafkaError as exc:
            log.info("consumer group %s is in use (%s); its members took over already", self.group_id,
                     type(exc).__name__)
            return
        finally:
            await seeder.stop()
        log.info("%d source partitions start where consumer group %s left them", len(taken), group)

    @contextlib.asynccontextmanager
    async def _admin(self) -> AsyncIterator[Any]:
        """One admin client for a few requests (``BrokerUnavailable`` if no broker answers)."""
        admin = AIOKafkaAdminClient(**self._client_options)
        await start_client(admin, self._client_options["bootstrap_servers"])
        try:
            yield admin
        finally:
            await admin.close()


async def _group_offsets(admin: Any, group: str, partitions: Sequence[TopicPartition]) -> dict[TopicPartition, int]:
    """``group``'s committed offsets of ``partitions`` (absent: never committed)."""
    if not partitions:
        return {}
    found = await admin.list_consumer_group_offsets(group, partitions=list(partitions))
    return {tp: meta.offset for tp, meta in found.items() if meta.offset >= 0}


class _Handover(ConsumerRebalanceListener):  # type: ignore[misc]  # aiokafka is untyped
    def __init__(self, reader: SourceReader) -> None:
        self.reader = reader

    async def on_partitions_revoked(self, revoked: Any) -> None:
        await self.reader.revoked()

    async def on_partitions_assigned(self, assigned: Any) -> None:
        await self.reader.assigned(assigned)
