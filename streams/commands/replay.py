"""``freshpaint-iterable replay``: re-feed a range of the source topic through the pipeline.

Design: the worker's first stage consumes BOTH the source topic and the replay topic
(``FPI_REPLAY_TOPIC``, default ``freshpaint.replay``). This command reads a range of the source
topic with its own aiokafka consumer WITHOUT a consumer group (partitions assigned by hand,
positions set by seek, nothing committed), and produces the selected records unchanged (same key,
same value bytes, original headers plus ``fpi-source`` naming the copied record) to the replay
topic. The live consumer group's committed offsets are never read or written, so live traffic
carries on where it was. Why a replay is safe (``streams.replay``): deterministic Iterable ids
make a replayed event an update of the stored one, and an identify older than the person's last
applied identify is dropped (``stale_identify``), so a replay cannot regress a profile.

The range, per partition: from the offset of ``--from-time`` (Kafka's offsets-for-times: the first
record stamped at or after it) or the offset given in ``--from-offsets``, up to (excluding) the
offset of ``--to-time``, else the end offset when the replay starts. Reading ranges without a group is
``streams.commands._kafka_io``, shared with ``dead-letters``.
"""

from __future__ import annotations

import asyncio
import sys
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import click

from streams.brokers import client_options, partitions_of, start_client
from streams.codecs import SourceCodec, load_schemas
from streams.commands._kafka_io import consumer_without_group, read_ranges
from streams.errors import DecodeError, InvalidEvent, StreamsError
from streams.explain import ExplainState, decision_record, explain_all
from streams.mapping import MappingConfig
from streams.model import Event
from streams.replay import (
    DEFAULT_REPLAY_RATE,
    REPLAY_SOURCE_HEADER,
    EventFilter,
    Pacer,
    PartitionRange,
    parse_offsets,
    parse_time,
    parse_types,
    plan_ranges,
)
from streams.settings import Settings, load_settings

__all__ = [
    "ReplayReport",
    "plan_replay",
    "replay",
    "replay_range",
]


async def plan_replay(
    options: Mapping[str, Any],
    topic: str,
    *,
    from_time: datetime | None = None,
    to_time: datetime | None = None,
    from_offsets: Mapping[int, int] | None = None,
) -> tuple[PartitionRange, ...]:
    """The per-partition offset ranges of a replay (``streams.replay.plan_ranges``), looked up now."""
    from aiokafka import TopicPartition  # type: ignore[import-untyped]

    partitions = await partitions_of(options, topic)
    if from_offsets is not None:
        unknown = sorted(set(from_offsets) - set(partitions))
        if unknown:
            raise click.ClickException(f"topic {topic!r} has no partition {unknown[0]}")
    tps = [TopicPartition(topic, p) for p in partitions]
    consumer = consumer_without_group(options)
    await start_client(consumer, options["bootstrap_servers"])
    try:
        beginnings = {tp.partition: o for tp, o in (await consumer.beginning_offsets(tps)).items()}
        ends = {tp.partition: o for tp, o in (await consumer.end_offsets(tps)).items()}

        async def at(when: datetime) -> dict[int, int | None]:
            found = await consumer.offsets_for_times({tp: int(when.timestamp() * 1000) for tp in tps})
            return {tp.partition: (None if hit is None else hit.offset) for tp, hit in found.items()}

        starts: Mapping[int, int | None]
        if from_offsets is not None:
            starts = dict(from_offsets)
        else:
            assert from_time is not None
            starts = await at(from_time)
        stops = await at(to_time) if to_time is not None else None
    finally:
        await consumer.stop()
    return plan_ranges(partitions, beginnings, ends, starts, stops)


@dataclass(slots=True)
class ReplayReport:
    """What a replay did. ``scanned`` records were read; ``selected`` passed the filter (and were
    produced, or explained in a dry run); ``undecodable`` did not decode (produced unchanged when
    no filter is set, since the pipeline dead-letters them again; skipped otherwise)."""

    ranges: tuple[PartitionRange, ...]
    dry_run: bool
    scanned: int = 0
    selected: int = 0
    filtered: int = 0
    undecodable: int = 0
    undecodable_forwarded: int = 0
    by_type: Counter[str] = field(default_factory=Counter)
    seconds: float = 0.0

    @property
    def total(self) -> int:
        return sum(r.size for r in self.ranges)


def _headers(message: Any) -> list[tuple[str, bytes]]:
    headers = list(message.headers or ())
    if not any(name == REPLAY_SOURCE_HEADER for name, _ in headers):
        headers.append(
            (REPLAY_SOURCE_HEADER, f"{message.topic}:{message.partition}:{message.offset}".encode())
        )
    return headers


async def replay_range(
    settings: Settings,
    ranges: Sequence[PartitionRange],
    *,
    topic: str | None = None,
    event_filter: EventFilter | None = None,
    rate: float | None = DEFAULT_REPLAY_RATE,
    dry_run: bool = False,
    on_explain: Callable[[dict[str, Any]], None] | None = None,
    on_progress: Callable[[ReplayReport], None] | None = None,
    clock: Callable[[], float] = time.monotonic,
) -> ReplayReport:
    """Read ``ranges`` of ``topic`` (default the source topic) and produce the records that pass
    ``event_filter`` unchanged to ``settings.replay_topic``, at most ``rate`` per second; waits
    until the broker acked them all. With ``dry_run`` nothing is produced: each selected event's
    ``explain`` record (plus ``partition``/``offset``) goes to ``on_explain``, identity state
    starting empty; anonymous events are held as the worker holds them (``FPI_HOLD_ANONYMOUS_SECONDS``), and
    each event is mapped by its project (``FPI_PROJECTS_FILE``). Raises aiokafka errors, and
    ``RegistryUnavailable`` when a configured schema registry cannot be reached (nothing is committed anywhere:
    run the replay again).
    """
    from aiokafka import AIOKafkaProducer

    from streams.codecs import SchemaRegistryClient
    from streams.wiring import build_event_decoder, build_mapping_config, build_routing

    topic = topic or settings.source_topic
    options = client_options(settings)
    started = clock()
    config = build_mapping_config(settings)
    routing = build_routing(settings, config, need_keys=False) if dry_run else None
    registry = SchemaRegistryClient.connect(settings) if settings.schema_registry_url else None
    run = _Run(
        report=ReplayReport(ranges=tuple(ranges), dry_run=dry_run),
        event_filter=event_filter or EventFilter(),
        codec=SourceCodec(build_event_decoder(settings), registry),
        replay_topic=settings.replay_topic,
        config=config if dry_run else None,
        producer=None if dry_run else AIOKafkaProducer(acks="all", linger_ms=5, **options),
        pacer=Pacer(None if dry_run else rate, clock),
        on_explain=on_explain,
        state=ExplainState(hold=settings.hold_rule(), routing=routing),
    )
    try:
        if run.producer is not None:
            await start_client(run.producer, options["bootstrap_servers"])
        async for message in read_ranges(options, topic, run.report.ranges):
            await run.take(message)
            if on_progress is not None:
                on_progress(run.report)
        await asyncio.gather(*run.pending)
    finally:
        if run.producer is not None:
            await run.producer.stop()
        if registry is not None:
            await registry.aclose()
    run.report.seconds = clock() - started
    return run.report


@dataclass
class _Run:
    """One replay's state: what it counted, where it sends, and (in a dry run) the identity state."""

    report: ReplayReport
    event_filter: EventFilter
    codec: SourceCodec
    replay_topic: str
    config: MappingConfig | None
    producer: Any
    pacer: Pacer
    on_explain: Callable[[dict[str, Any]], None] | None
    state: ExplainState = field(default_factory=ExplainState)
    pending: list[asyncio.Future[Any]] = field(default_factory=list)

    async def take(self, message: Any) -> None:
        """Count one record of the range, and forward it (or explain it) when the filter selects it."""
        self.report.scanned += 1
        event = await self._decode(message)
        if event is not None and not self.event_filter.matches(event):
            self.report.filtered += 1
            return
        if event is None and self.event_filter.active:
            return  # a filter selects events, and this is none
        self.report.selected += 1
        if event is not None:
            self.report.by_type[event.type.value] += 1
        elif self.producer is not None:
            self.report.undecodable_forwarded += 1
        if self.config is not None:
            if event is not None:
                try:
                    decisions = explain_all(event, self.config, self.state, datetime.now(UTC))
                except StreamsError as exc:
                    decisions = [(event, exc)]
                # The event's own record (``hold`` when held), then one per held event it releases or expires.
                for decided, decision in decisions:
                    if isinstance(decision, StreamsError):
                        self._explain(message, _error(decided.message_id, decision))
                    else:
                        self._explain(message, decision_record(decided.message_id, decision))
        elif self.producer is not None:
            await self._forward(message)

    async def _decode(self, message: Any) -> Event | None:
        try:
            await self.codec.prepare(message.value)
            return self.codec.decode(message.value)
        except (DecodeError, InvalidEvent) as exc:
            self.report.undecodable += 1
            if self.config is not None and not self.event_filter.active:
                self._explain(message, _error(None, exc))
            return None

    def _explain(self, message: Any, record: dict[str, Any]) -> None:
        """Print ``record`` with the position of the record it came from (a released held event: the one that
        released it)."""
        if self.on_explain is not None:
            self.on_explain({"partition": message.partition, "offset": message.offset, **record})

    async def _forward(self, message: Any) -> None:
        delay = self.pacer.delay()
        if delay > 0:
            await asyncio.sleep(delay)
        self.pending.append(await self.producer.send(self.replay_topic, message.value, key=message.key,
                                                     headers=_headers(message)))
        if len(self.pending) >= 1000:
            await asyncio.gather(*self.pending)
            self.pending.clear()


def _error(message_id: str | None, exc: StreamsError) -> dict[str, Any]:
    return {"message_id": message_id, "decision": "error", "reason": exc.reason.value, "detail": str(exc),
            "requests": []}


def _summary(report: ReplayReport, topic: str, replay_topic: str) -> str:
    parts = ", ".join(f"{r.partition}:[{r.start},{r.end})" for r in report.ranges) or "none"
    kinds = ", ".join(f"{name} {count}" for name, count in sorted(report.by_type.items())) or "none"
    verb = "explained (dry run, nothing produced)" if report.dry_run else f"produced to {replay_topic}"
    return (
        f"replay of {topic}: partitions {parts}\n"
        f"  scanned {report.scanned} records, selected {report.selected} -> {verb}\n"
        f"  by type: {kinds}; filtered out {report.filtered}; undecodable {report.undecodable}"
        f" (of which copied: {report.undecodable_forwarded})\n"
        f"  took {report.seconds:.1f}s"
    )


_HELP = f"""Replay a range of the source topic through the pipeline, without touching the live
consumer group.

\b
How: the worker consumes both the source topic and the replay topic (FPI_REPLAY_TOPIC, default
freshpaint.replay). This command reads the range with its own consumer that has NO consumer group
(manual assignment and seek, nothing committed) and copies the selected records unchanged (same
key, same bytes) to the replay topic; the worker processes them like live events. The live
group's (FPI_APP_ID) committed offsets are never read or written.

\b
Range per partition: from --from-time (Kafka offsets-for-times: the first record stamped at or
after it) or --from-offsets "partition:offset,..." (only the partitions named), up to --to-time
(exclusive) or else the end offset when the replay starts. Times: ISO 8601 (no zone = UTC),
epoch milliseconds, or a duration ago such as 15m, 2h, 3d.

\b
Filters: --type identify,track,... and --user ID (matches user id, email or anonymous id; the
records are decoded to filter). With a filter, records that do not decode are skipped; without
one they are copied too (the worker dead-letters them again).

\b
Safety: every Iterable event and purchase id is derived from the Freshpaint message id, so a
replayed event updates the stored one (no duplicates), and an identify older than the newest
identify already applied for that person is dropped (stale_identify), so a replay never
regresses a profile.

\b
Rate: --rate caps records per second (default {DEFAULT_REPLAY_RATE:.0f}). Iterable's bulk endpoints
take 1000 records per call at 10 calls/s (events) and 5 calls/s (users) per project, shared with
live traffic; the default keeps a replay near half the event ceiling so live events keep their
share.

\b
--dry-run prints the explain output (one JSON object per selected event, with partition and
offset) instead of producing. Identity state starts empty in a dry run, so events of people
identified before the range show as dropped "anonymous"/"missing_identifier" there. With
FPI_HOLD_ANONYMOUS_SECONDS anonymous events are held as the worker holds them ("hold"), and a later
link prints a record for each held event it releases (at the linking record's position); events still
held at the end of the range stay "hold" (the worker drops them "anonymous" once their window ends).
With FPI_PROJECTS_FILE each event is mapped by its project. Dry-run output contains request bodies,
including emails.
"""


@click.command(help=_HELP)
@click.option(
    "--from-time",
    "from_time",
    default=None,
    help="Start of the range: ISO 8601, epoch ms, or a duration ago (2h).",
)
@click.option(
    "--to-time",
    "to_time",
    default=None,
    help="End of the range (exclusive); default the end offsets when the replay starts.",
)
@click.option(
    "--from-offsets",
    "from_offsets",
    default=None,
    help='Start offsets "partition:offset,..." instead of --from-time (only these partitions).',
)
@click.option("--topic", default=None, help="Topic to read (default FPI_SOURCE_TOPIC).")
@click.option("--type", "types", default=None, help="Only these event types, e.g. identify,track.")
@click.option("--user", default=None, help="Only events whose user id, email or anonymous id is this.")
@click.option(
    "--rate",
    type=click.FloatRange(min=0, min_open=True),
    default=DEFAULT_REPLAY_RATE,
    show_default=True,
    help="At most this many records per second to the replay topic.",
)
@click.option(
    "--dry-run", is_flag=True, help="Print the explain output of the selected events; produce nothing."
)
def replay(
    from_time: str | None,
    to_time: str | None,
    from_offsets: str | None,
    topic: str | None,
    types: str | None,
    user: str | None,
    rate: float,
    dry_run: bool,
) -> None:
    import orjson
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    if (from_time is None) == (from_offsets is None):
        raise click.UsageError("give exactly one of --from-time and --from-offsets")
    settings = load_settings()
    load_schemas()
    topic = topic or settings.source_topic
    if topic == settings.replay_topic:
        raise click.UsageError("the range to replay cannot be read from the replay topic itself")
    now = datetime.now(UTC)
    try:
        start_at = parse_time(from_time, now) if from_time else None
        end_at = parse_time(to_time, now) if to_time else None
        offsets = parse_offsets(from_offsets) if from_offsets else None
        event_filter = EventFilter(parse_types(types) if types else frozenset(), user)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None
    if start_at and end_at and end_at <= start_at:
        raise click.BadParameter("--to-time must be after --from-time")
    options = client_options(settings)
    console = Console(stderr=True)

    async def run() -> ReplayReport:
        ranges = await plan_replay(options, topic, from_time=start_at, to_time=end_at, from_offsets=offsets)
        total = sum(r.size for r in ranges)
        with Progress(
            TextColumn("[bold]replay[/]"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("selected {task.fields[selected]}"),
            TimeElapsedColumn(),
            TextColumn("ETA"),
            TimeRemainingColumn(),
            console=console,
            transient=True,
        ) as progress:
            task = progress.add_task("replay", total=total, selected=0)

            def explained(record: dict[str, Any]) -> None:
                sys.stdout.write(orjson.dumps(record).decode() + "\n")

            report = await replay_range(
                settings,
                ranges,
                topic=topic,
                event_filter=event_filter,
                rate=rate,
                dry_run=dry_run,
                on_explain=explained,
                on_progress=lambda r: progress.update(task, completed=r.scanned, selected=r.selected),
            )
            progress.update(task, completed=total)
        return report

    report = asyncio.run(run())
    console.print(_summary(report, topic, settings.replay_topic), markup=False, highlight=False)
