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

Back-pressure: the stages after this one share its process and event loop. Unchecked, the reader
decoded and mapped far ahead of a rate-limited sender (about 300,000 events in one benchmark), and that
work starved the sender's calls. So before each fetch the reader asks ``Backlog`` whether this worker's
internal topics hold more unprocessed records than ``FPI_SOURCE_BACKLOG_RECORDS``; while they do, it waits
(polling a record now and then, so it stays in its group) and the backlog stays in the source topic, where
the lag alert and the autoscaler see it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping, Sequence
from typing import Any

from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, TopicPartition  # type: ignore[import-untyped]
from aiokafka.admin import AIOKafkaAdminClient  # type: ignore[import-untyped]
from aiokafka.errors import CommitFailedError, KafkaError  # type: ignore[import-untyped]

from streams import metrics
from streams.brokers import start_client

__all__ = ["Backlog", "HandleFetch", "SourceReader", "SourceRecord", "source_group"]

log = logging.getLogger("streams.source_reader")

FETCH_MAX_BYTES = 52_428_800
"""A fetch's bound over all partitions: the Java client's and aiokafka's default (50 MiB), raised to the per-partition
bound when FPI_CONSUMER_FETCH_BYTES is larger."""

BACKLOG_POLL_SECONDS = 0.1
"""How often a waiting reader asks again whether the stages after it caught up."""

BACKLOG_KEEPALIVE_SECONDS = 30.0
"""While the reader waits, it polls one record this often: aiokafka puts a consumer that has not polled for
max.poll.interval.ms (5 minutes) out of its group."""

BACKLOG_LOG_SECONDS = 60.0
"""A pause this long is logged (once per pause): the backlog waits in the source topic meanwhile."""

OffsetsOf = Callable[[list[TopicPartition]], Awaitable[Mapping[TopicPartition, int]]]
"""aiokafka's ``end_offsets`` or ``beginning_offsets``."""

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


class Backlog:
    """Whether the stages after the first have fallen behind: the records waiting on this worker's partitions
    of the internal topics, all together against ``max_records``.

    Kafka counts a backlog in frames (offsets), and a frame holds anything from one record to a whole take, so
    frames are turned into records with the size of the topic's recent frames (``records_per_frame``). End
    offsets are asked of the broker: faust's own high watermarks stop moving while its stream buffers are
    full, which is just when they matter. Processed is what faust committed or acknowledged since, else the log's start.
    """

    def __init__(self, *, topics: Iterable[str], max_records: int,
                 partitions: Callable[[], Iterable[tuple[str, int]]],
                 processed: Callable[[Any], int | None], records_per_frame: Callable[[str], float]) -> None:
        self.topics = frozenset(topics)
        self.max_records = max_records
        self._partitions = partitions
        self._processed = processed
        self._records_per_frame = records_per_frame

    async def behind(self, end_offsets: OffsetsOf, beginning_offsets: OffsetsOf) -> tuple[str, int] | None:
        """When more than ``max_records`` records wait, the topic where most of them wait and about how many;
        else ``None``."""
        owned = [(tp, TopicPartition(tp[0], tp[1])) for tp in self._partitions() if tp[0] in self.topics]
        if not owned:
            return None
        processed = {ours: self._processed(theirs) for theirs, ours in owned}
        ends = await end_offsets(list(processed))
        # Nothing processed since this worker got the partition (a new topic, or an outage from the start):
        # the stage starts at the log's start, as faust's group does without a committed offset.
        unknown = [tp for tp, offset in processed.items() if offset is None]
        starts = await beginning_offsets(unknown) if unknown else {}
        frames: dict[str, int] = {}
        for tp, offset in processed.items():
            done, end = offset if offset is not None else starts.get(tp), ends.get(tp)
            if done is not None and end is not None and end > done:
                frames[tp.topic] = frames.get(tp.topic, 0) + end - done
        waiting = {topic: round(count * self._records_per_frame(topic)) for topic, count in frames.items()}
        if sum(waiting.values()) > self.max_records:
            return max(waiting.items(), key=lambda item: item[1])
        return None


class SourceReader:
    """Reads ``topics`` in group ``group_id`` and hands each fetch to ``handle``; see the module's docstring."""

    def __init__(self, *, topics: Sequence[str], group_id: str, takeover_group_id: str | None,
                 client_options: Mapping[str, Any], handle: HandleFetch, max_records: int,
                 wait_seconds: float, fetch_bytes: int, session_timeout_seconds: float,
                 instance_id: str | None = None, backlog: Backlog | None = None) -> None:
        self.backlog = backlog
        self._looked_at = float("-inf")
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
            held = await self._wait_for_stages() if self.backlog is not None else {}
            fetched = await self._gather(held)
            if fetched:
                async with self._in_hand:
                    await self._handle_fetch(fetched)

    async def _wait_for_stages(self) -> dict[TopicPartition, list[Any]]:
        """Returns once the stages after this one are within the backlog's bound, with the few records polled
        meanwhile (to be handled first).

        The consumer is not paused: aiokafka drops what it fetched for a paused partition and fetches it again
        after ``resume``, and a reader paused and resumed every few tenths of a second held 340 MB instead of 97
        (tracemalloc: fetch responses). Left alone, the fetcher keeps one fetch a partition and waits. Polling a
        record every ``BACKLOG_KEEPALIVE_SECONDS`` keeps the consumer in its group (one that does not poll for
        max.poll.interval.ms, 5 minutes, is put out of it), which matters in an outage that lasts longer."""
        assert self.backlog is not None
        held: dict[TopicPartition, list[Any]] = {}
        # At most one look a poll interval while the stages keep up: under light load a fetch holds a few
        # events, and a broker round trip for each of them cost more CPU than the fetch.
        if time.monotonic() - self._looked_at < BACKLOG_POLL_SECONDS:
            return held
        behind = await self._look()
        self._looked_at = time.monotonic()
        if behind is None:
            return held
        started = counted = polled = time.monotonic()
        logged = False
        while behind is not None:
            await asyncio.sleep(BACKLOG_POLL_SECONDS)
            now = time.monotonic()
            if now - polled >= BACKLOG_KEEPALIVE_SECONDS:
                polled = now
                for tp, records in (await self._consumer.getmany(timeout_ms=0, max_records=1)).items():
                    held.setdefault(tp, []).extend(records)
            metrics.SOURCE_PAUSED_SECONDS.inc(now - counted)  # as it goes: a pause may last as long as an outage
            counted = now
            if not logged and now - started >= BACKLOG_LOG_SECONDS:
                logged = True
                log.info("reading the source waits: this worker's internal topics hold more than "
                         "FPI_SOURCE_BACKLOG_RECORDS=%d records it has not processed (%s the most, about %d)",
                         self.backlog.max_records, *behind)
            behind = await self._look()
        metrics.SOURCE_PAUSED_SECONDS.inc(time.monotonic() - counted)
        self._looked_at = time.monotonic()
        if logged:
            log.info("reading the source goes on after %.0f s", time.monotonic() - started)
        return held

    async def _look(self) -> tuple[str, int] | None:
        """``Backlog.behind``; a broker that does not answer the offsets request counts as not behind (the
        next look asks again), rather than stopping the worker over a measure."""
        assert self.backlog is not None
        try:
            return await self.backlog.behind(self._consumer.end_offsets, self._consumer.beginning_offsets)
        except KafkaError as exc:
            log.warning("could not read the internal topics' end offsets (%s); reading the source goes on",
                        type(exc).__name__)
            return None

    async def _gather(self, held: dict[TopicPartition, list[Any]]) -> dict[TopicPartition, list[Any]]:
        """What the consumer has (after ``held``), waiting up to the window for more while fewer than
        ``max_records``: under backlog a fetch fills at once, under light load the window bounds the wait
        (and the frames' size)."""
        fetched = held
        count = sum(map(len, held.values()))
        loop = asyncio.get_running_loop()
        deadline: float | None = loop.time() + self._window if count else None
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
