"""The Faust app: topics, tables and agents, wired from one ``Settings`` object.

The shell layer: with ``cli.py``, ``commands/``, ``faust_patches.py`` and ``wiring.py`` the only code that
imports faust. Data flow (``design.md``)::

    source topic (Avro, any key)
      -> agent route     decode; dead-letter poison; re-key by device / anonymous id
    by-device topic (internal, frames)   [skipped when FPI_SOURCE_KEYED_BY_DEVICE=true]
      -> agent resolve   table aliases: anonymous id -> person key; anonymous events dropped
    by-person topic (internal, frames, partitioned by person key)
      -> agent apply     table identities; the mapping core decides; requests or dead letters
    requests topic (internal, frames, partitioned by person key)
      -> agent send      batches to Iterable; every request delivered or dead-lettered
    dead-letter topic

The internal topics carry frames (``streams.codecs.encode_frame``): one message holds a taken
batch's records for one partition, each record placed where its key would be (``streams.outbox``).
A table write inside a frame therefore lands in the changelog partition of its key.

Delivery: faust acks an event even when the agent body raises, so no body lets an exception
escape with data unrecorded. A ``StreamsError`` becomes a dead letter; anything else is a bug and
stops the process at once (``_die``), before the offset of the failing event can be committed,
so the event is processed again after the restart. Messages sent from a body are flushed by
faust before it commits the consumed offsets, so a forwarded event is never committed-away.
"""

from __future__ import annotations

import asyncio
import logging
import os
import sys
import weakref
from collections import Counter
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any, TypeVar

import faust
from faust.streams import _current_event

from streams import faust_patches, metrics
from streams.codecs import (
    FrameItem,
    Source,
    dead_letter_for_undecodable,
    decode_event_internal,
    decode_frame,
    decode_request,
    encode_dead_letter,
    encode_event_internal,
    encode_request,
)
from streams.errors import Reason, StreamsError
from streams.identity import resolve, routing_key
from streams.iterable import Abandoned
from streams.mapping import apply_event
from streams.model import QUIET_DROPS, DeadLetter, DropReason, Event, Identity, IterableRequest
from streams.outbox import Outbox, Partitioner
from streams.services import DecoderService, SenderService
from streams.settings import Settings
from streams.wiring import (
    broker_credentials,
    build_event_decoder,
    build_mapping_config,
    build_sender_config,
    identity_from_bytes,
    identity_to_bytes,
    link_from_bytes,
    link_to_bytes,
)

__all__ = ["build_app"]

log = logging.getLogger("streams.app")

SOURCE_HEADER = "fpi-source"
"""Header of a replayed source record naming ``topic:partition:offset`` of the record it copies."""

FRAMES_PER_TAKE = 8
"""Frames an internal stage takes at a time. A frame holds the records of one upstream batch for one
partition (up to ``FPI_STAGE_BATCH_ITEMS``), so a take stays within a few thousand records."""

FRAMES_BUFFERED = 4 * FRAMES_PER_TAKE
"""Frames an internal stage's stream holds before faust's fetcher waits. faust bounds a stream's queue
by message count (``stream_buffer_maxsize``, 4,096), which suits the ~1 KB source records but would let
a stage that cannot keep up (the sender in an Iterable outage) hold 4,096 frames of up to
``FPI_MAX_RECORD_BYTES`` each, gigabytes, in memory. This bounds each internal stream to a few takes
(seen with Iterable down and 200,000 events waiting: RSS levelled off at 252 MB; without the bound it
rose to 355 MB, peak 384 MB, as the worker went on reading the backlog)."""

_DEAD_LETTER_SAMPLE_BYTES = 65_536

T = TypeVar("T")


def _die(where: str, exc: BaseException) -> None:
    """Stop the worker without committing: the event that hit a bug is redelivered after restart."""
    log.critical("unexpected error in %s; stopping the worker so no offset is committed past it", where,
                 exc_info=exc)
    logging.shutdown()
    sys.stderr.flush()
    os._exit(70)


def _make_current(event: Any) -> None:
    """Make ``event`` faust's current event while a batch is handled one event at a time.

    Table writes find their changelog partition (and their RocksDB shard) through faust's current
    event; inside a batch that would be the last event taken, so it is set here
    for each event. ``_current_event`` is faust's own context variable (faust/streams.py).
    """
    _current_event.set(weakref.ref(event))


def _source_of(event: Any) -> Source:
    """Where a source record really comes from: a replayed copy names its original in a header."""
    headers = event.headers or {}
    raw = headers.get(SOURCE_HEADER)
    if raw:
        topic, partition, offset = raw.decode().rsplit(":", 2)
        return topic, int(partition), int(offset)
    message = event.message
    return message.topic, message.partition, message.offset


def _count(series: Any, counts: Counter[str]) -> None:
    """Add a batch's tallies to a labelled counter: one label lookup per label, not per event."""
    for label, amount in counts.items():
        series.labels(label).inc(amount)


def build_app(settings: Settings) -> faust.App:
    """Create the Faust app with its topics, tables, agents and web pages.

    Raises ``ConfigError`` (from the transformation rules) before anything connects.
    """
    mapping_config = build_mapping_config(settings)
    app = faust.App(
        settings.app_id,
        broker=[f"kafka://{host.strip()}" for host in settings.kafka_bootstrap.split(",")],
        broker_credentials=broker_credentials(settings),
        store=settings.store,
        datadir=str(settings.data_dir),
        topic_partitions=settings.topic_partitions,
        topic_replication_factor=settings.topic_replication_factor,
        table_standby_replicas=settings.table_standby_replicas,
        consumer_group_instance_id=settings.consumer_instance_id,
        broker_session_timeout=settings.kafka_session_timeout_seconds,
        producer_linger=settings.producer_linger_ms / 1000.0,
        consumer_max_fetch_size=settings.consumer_fetch_bytes,
        processing_guarantee="at_least_once",
        consumer_auto_offset_reset="earliest",
        web_port=settings.web_port,
        web_bind=settings.web_bind,
        # /table and /router would serve identity data (PII) over HTTP.
        web_tables_enabled=False,
        web_router_enabled=False,
        # No agent or timer runs on the leader only. faust's leader topic would be one more topic to
        # provision, created by faust after our topics were checked: on a fresh broker the first
        # join missed it ("Ignoring missing topic") and logged errors until it appeared.
        topic_disable_leader=True,
        autodiscover=False,
    )
    # Records given up at a rebalance or stop must not be sent by this worker any more (issue 17);
    # the sender is made below, and the hook runs only once the worker is up.
    faust_patches.install(app, drain_seconds=settings.drain_seconds, on_give_up=lambda: sender.abandon())
    n = settings.topic_partitions
    raw: dict[str, Any] = {"key_type": bytes, "value_type": bytes, "key_serializer": "raw",
                           "value_serializer": "raw"}
    # The replay topic feeds the same first agent, so replays never touch the source's offsets.
    # internal=True: faust creates the topic (n partitions) before subscribing, if it is missing;
    # for the source topic that only happens locally, where nobody created it beforehand.
    sources = app.topic(settings.source_topic, settings.replay_topic, internal=True, **raw)
    by_device = app.topic(f"{settings.app_id}-by-device", partitions=n, internal=True, **raw)
    by_person = app.topic(settings.by_person_topic, partitions=n, internal=True, **raw)
    requests_topic = app.topic(settings.requests_topic, partitions=n, internal=True, **raw)
    for frames in (by_device, by_person, requests_topic):
        # Set on the topic, which every stream of it copies: app.topic() accepts maxsize but drops it.
        frames.maxsize = FRAMES_BUFFERED
    dead_letters = app.topic(settings.dead_letter_topic, partitions=n, internal=True, **raw)

    # bytes key and value types make faust use the raw codec for the tables, their stores AND
    # changelog recovery (a Schema alone does not reach recovery, which then fails on JSON).
    aliases = app.Table("aliases", partitions=n, key_type=bytes, value_type=bytes)
    identities = app.Table("identities", partitions=n, key_type=bytes, value_type=bytes)

    decoder = DecoderService(build_event_decoder(settings), settings.schema_registry_url, loop=app.loop)
    sender = SenderService(build_sender_config(settings),
                           verify_tls=not settings.iterable_insecure_skip_tls_verify, loop=app.loop)
    app.add_dependency(decoder)
    app.add_dependency(sender)

    partition_of = Partitioner(n)
    to_by_device = Outbox(by_device, partition_of, settings.max_record_bytes)
    to_by_person = Outbox(by_person, partition_of, settings.max_record_bytes)
    to_requests = Outbox(requests_topic, partition_of, settings.max_record_bytes)

    async def dead_letter(letter: DeadLetter, key: bytes | None) -> None:
        metrics.DEAD_LETTERS.labels(letter.reason).inc()
        log.warning("dead letter %s: %s", letter.reason, letter.detail,
                    extra={"topic": letter.source_topic, "partition": letter.source_partition,
                           "offset": letter.source_offset})
        await dead_letters.send(key=key, value=encode_dead_letter(letter))

    batch_items, batch_wait = settings.stage_batch_items, settings.stage_batch_seconds

    async def decode_source(event: Any, counts: Counter[str]) -> Event | None:
        message = event.message
        result = await decoder.decode(event.value, topic=message.topic, partition=message.partition,
                                      offset=message.offset, now=datetime.now(UTC))
        if isinstance(result, DeadLetter):
            await dead_letter(result, event.key)
            return None
        counts[result.type.value] += 1
        return result

    async def fits(event: Any, source: Source, value: bytes) -> bool:
        """False (and a dead letter) for an event too large for the internal topics.

        Forwarding it would fail in the producer and stop the worker on the same record forever.
        """
        if len(value) <= settings.max_record_bytes:
            return True
        await dead_letter(DeadLetter(
            reason=Reason.TOO_LARGE.value, failed_at=datetime.now(UTC),
            detail=f"event of {len(value)} bytes is over FPI_MAX_RECORD_BYTES={settings.max_record_bytes}; "
                   f"original_bytes holds its first {_DEAD_LETTER_SAMPLE_BYTES} bytes",
            source_topic=source[0], source_partition=source[1], source_offset=source[2],
            original_bytes=(event.value or b"")[:_DEAD_LETTER_SAMPLE_BYTES]), event.key)
        return False

    def resolve_one(decoded: Event, value: bytes, source: Source, drops: Counter[str]) -> None:
        """Resolve one event against ``aliases``; faust's current event must be on its partition."""
        device = decoded.anonymous_id.encode() if decoded.anonymous_id else None
        stored = aliases.get(device) if device else None
        resolution = resolve(decoded, link_from_bytes(stored) if stored else None)
        if resolution.new_link is not None and device:
            aliases[device] = link_to_bytes(resolution.new_link)
        if resolution.person_key is None:
            drops[(resolution.drop or DropReason.ANONYMOUS).value] += 1
            return
        to_by_person.add(resolution.person_key.encode(), value, source)

    # Every stage takes its input in batches and sends its output as frames (one Kafka message per
    # destination partition and batch): faust's per-message cost dominates otherwise.
    # noack_take, not take_events: take_events acks the whole batch in a `finally`, so a batch cut
    # short (the agent cancelled by a shutdown or rebalance mid-body) would be committed unprocessed.
    # A batch is acked only once handled and its output handed to the producer buffer (`hand_on`):
    # faust flushes the producer before it commits consumed offsets, so a commit never covers an
    # event whose output is still held in an outbox.
    async def decode_batch(batch: Sequence[Any], seen: Counter[str]) -> list[tuple[Any, Source, Event, bytes]]:
        """``(record, source, event, internal value)`` of each source record that decodes and fits."""
        usable = []
        for event in batch:
            source = _source_of(event)
            decoded = await decode_source(event, seen)
            if decoded is not None:
                value = encode_event_internal(decoded)
                if await fits(event, source, value):
                    usable.append((event, source, decoded, value))
        return usable

    async def decoded_items(frame: Any, decode: Callable[[bytes], T]) -> list[tuple[FrameItem, T]]:
        """Each record of an internal frame with its decoded value.

        What does not decode (another version's format, a foreign producer) becomes a dead letter
        with its bytes instead of stopping the worker on the same message forever.
        """
        message = frame.message
        try:
            items = decode_frame(frame.value)
        except StreamsError as exc:
            await dead_letter(dead_letter_for_undecodable(frame.value, exc, message.topic, message.partition,
                                                          message.offset, datetime.now(UTC)), frame.key)
            return []
        decoded: list[tuple[FrameItem, T]] = []
        for item in items:
            try:
                decoded.append((item, decode(item.value)))
            except StreamsError as exc:
                await dead_letter(dead_letter_for_undecodable(item.value, exc, *item.source, datetime.now(UTC)),
                                  item.key)
        return decoded

    async def hand_on(stream: Any, batch: Sequence[Any], outbox: Outbox) -> None:
        """Send a handled batch's output, then ack the batch (never the other way round)."""
        outbox.flush()
        for event in batch:
            await stream.ack(event)

    if settings.source_keyed_by_device:
        @app.agent(sources, name="resolve")
        async def resolve_source(stream: Any) -> None:
            """Decode source records already keyed by device id and resolve their person."""
            async for batch in stream.noack_take(batch_items, within=batch_wait):
                try:
                    seen: Counter[str] = Counter()
                    drops: Counter[str] = Counter()
                    for event, source, decoded, value in await decode_batch(batch, seen):
                        _make_current(event)
                        resolve_one(decoded, value, source, drops)
                    await hand_on(stream, batch, to_by_person)
                    _count(metrics.EVENTS_IN, seen)
                    _count(metrics.EVENTS_DROPPED, drops)
                except Exception as exc:
                    _die("resolve", exc)
    else:
        @app.agent(sources, name="route")
        async def route(stream: Any) -> None:
            """Decode source records and re-key them by device / anonymous id."""
            async for batch in stream.noack_take(batch_items, within=batch_wait):
                try:
                    seen: Counter[str] = Counter()
                    for _, source, decoded, value in await decode_batch(batch, seen):
                        key = routing_key(decoded)
                        to_by_device.add(key.encode() if key else None, value, source)
                    await hand_on(stream, batch, to_by_device)
                    _count(metrics.EVENTS_IN, seen)
                except Exception as exc:
                    _die("route", exc)

        @app.agent(by_device, name="resolve")
        async def resolve_internal(stream: Any) -> None:
            """Attach the person key to each event; drop events of never-identified devices."""
            async for batch in stream.noack_take(FRAMES_PER_TAKE, within=batch_wait):
                try:
                    drops: Counter[str] = Counter()
                    for frame in batch:
                        _make_current(frame)
                        for item, decoded in await decoded_items(frame, decode_event_internal):
                            resolve_one(decoded, item.value, item.source, drops)
                    await hand_on(stream, batch, to_by_person)
                    _count(metrics.EVENTS_DROPPED, drops)
                except Exception as exc:
                    _die("resolve", exc)

    @app.agent(by_person, name="apply")
    async def apply_agent(stream: Any) -> None:
        """Run the mapping core per person; emit Iterable requests or dead letters.

        The batch's identity changes reach the ``identities`` table only once its requests are in
        Kafka. Written earlier, a crash could leave the table ahead of the requests: the redelivered
        identifies would then look older than the last one applied and be dropped as stale, and the
        fields only they carried would never reach Iterable.
        """
        async for batch in stream.noack_take(FRAMES_PER_TAKE, within=batch_wait):
            try:
                drops: Counter[str] = Counter()
                endpoints: Counter[str] = Counter()
                changed: dict[bytes, tuple[Identity, Any]] = {}
                for frame in batch:
                    _make_current(frame)
                    for item, decoded in await decoded_items(frame, decode_event_internal):
                        await apply_one(item, decoded, frame, changed, drops, endpoints)
                await asyncio.gather(*to_requests.flush())
                for key, (identity, frame) in changed.items():
                    _make_current(frame)
                    identities[key] = identity_to_bytes(identity)
                for frame in batch:
                    await stream.ack(frame)
                _count(metrics.EVENTS_DROPPED, drops)
                _count(metrics.REQUESTS_OUT, endpoints)
            except Exception as exc:
                _die("apply", exc)

    async def apply_one(item: FrameItem, decoded: Event, frame: Any, changed: dict[bytes, tuple[Identity, Any]],
                        drops: Counter[str], endpoints: Counter[str]) -> None:
        """Apply one event; a changed identity goes to ``changed`` (key -> identity, frame), not yet to the table."""
        key = item.key
        assert key is not None, "by-person items are keyed by person"
        if key in changed:
            identity: Identity | None = changed[key][0]
        else:
            stored = identities.get(key)
            identity = identity_from_bytes(stored) if stored else None
        now = datetime.now(UTC)
        topic, partition, offset = item.source
        try:
            applied = apply_event(decoded, key.decode(), identity, mapping_config, now)
        except StreamsError as exc:
            await dead_letter(DeadLetter(reason=exc.reason.value, detail=str(exc), failed_at=now,
                                         source_topic=topic, source_partition=partition, source_offset=offset,
                                         event=decoded), key)
            return
        if applied.identity is not None:
            changed[key] = (applied.identity, frame)
        decision = applied.decision
        if decision.drop_reason is not None:
            drops[decision.drop_reason.value] += 1
            if decision.drop_reason not in QUIET_DROPS:
                await dead_letter(DeadLetter(reason=decision.drop_reason.value,
                                             detail=decision.detail or decision.drop_reason.value,
                                             failed_at=now, source_topic=topic, source_partition=partition,
                                             source_offset=offset, event=decoded), key)
            return
        for request in decision.requests:
            endpoints[request.endpoint.value] += 1
            to_requests.add(key, encode_request(request), item.source)

    @app.agent(requests_topic, name="send")
    async def send_agent(stream: Any) -> None:
        """Deliver requests in rounds; frames are acked only once every request in them has an outcome.

        Frames given up at a rebalance or stop (``faust_patches.bound_wait_for_acks`` marks them acked,
        and we ack a frame only after its last round) are left to the next owner of their partition:
        their delivery is abandoned, and those still in the take buffer are skipped.
        """
        async for batch in stream.noack_take(FRAMES_PER_TAKE, within=settings.send_linger_seconds):
            try:
                frames = [frame for frame in batch if not frame.message.acked]
                items = [pair for frame in frames for pair in await decoded_items(frame, decode_request)]
                for start in range(0, len(items), settings.send_batch_items):
                    if any(frame.message.acked for frame in frames):
                        break  # given up while the previous rounds ran
                    try:
                        await deliver_round(items[start:start + settings.send_batch_items])
                    except Abandoned:
                        break
                else:
                    for frame in frames:
                        await stream.ack(frame)
            except Exception as exc:
                _die("send", exc)

    async def deliver_round(items: Sequence[tuple[FrameItem, IterableRequest]]) -> None:
        outcomes = await sender.deliver([request for _, request in items])
        now = datetime.now(UTC)
        for (item, _), outcome in zip(items, outcomes, strict=True):
            if not outcome.delivered:
                topic, partition, offset = item.source
                await dead_letter(outcome.to_dead_letter(failed_at=now, source_topic=topic,
                                                         source_partition=partition, source_offset=offset),
                                  item.key)

    @app.task  # type: ignore[untyped-decorator]  # faust is untyped
    async def declare_dead_letter_topic() -> None:
        """Nothing consumes the dead-letter topic here, so faust would not create it."""
        await dead_letters.maybe_declare()

    _add_web_pages(app, sender)
    return app


def _add_web_pages(app: faust.App, sender: SenderService) -> None:
    from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

    # faust's PrometheusMonitor would cost ~6 label lookups per message per hop (a quarter of the
    # worker's CPU in the profile); lag, the one series of it we alert on, is sampled instead.
    lag = metrics.LagSampler()

    @app.timer(interval=5.0)  # type: ignore[untyped-decorator]  # faust is untyped
    async def sample_consumer_lag() -> None:
        consumer = app.consumer
        # faust reads changelogs without committing offsets, so their "lag" never reached 0 and would
        # have fed the lag alert and the autoscaler a backlog that is not one.
        changelogs = app.tables.changelog_topics
        lag.sample(
            (tp.topic, tp.partition, highwater,
             consumer._committed_offset.get(tp))  # type: ignore[attr-defined]  # no public accessor
            for tp in consumer.assignment()
            if tp.topic not in changelogs and (highwater := consumer.highwater(tp)) is not None
        )

    @app.page("/metrics")
    async def metrics_page(web: Any, request: Any) -> Any:
        return web.bytes(generate_latest(), content_type=CONTENT_TYPE_LATEST.split(";")[0])

    @app.page("/healthz")
    async def healthz(web: Any, request: Any) -> Any:
        return web.json({"status": "ok"})

    @app.page("/readyz")
    async def readyz(web: Any, request: Any) -> Any:
        problems = []
        if app.rebalancing:
            problems.append("rebalancing")
        if not app.consumer.assignment():
            problems.append("no partitions assigned")
        if sender.paused:
            problems.append("sender paused: Iterable rejected the API key (401)")
        return web.json({"ready": not problems, "problems": problems}, status=503 if problems else 200)
