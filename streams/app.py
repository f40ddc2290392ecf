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

import logging
import os
import sys
import weakref
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import faust
from faust.streams import _current_event

from streams import faust_patches, metrics
from streams.codecs import (
    FrameItem,
    decode_request,
)
from streams.iterable import Abandoned
from streams.model import IterableRequest
from streams.outbox import Outbox, Partitioner
from streams.services import DecoderService, SenderService
from streams.settings import Settings
from streams.stages import AliasTable, ApplyStage, DeadLetterSink, IdentityTable, ResolveStage, RouteStage
from streams.wiring import broker_credentials, build_event_decoder, build_mapping_config, build_sender_config

__all__ = ["build_app"]

log = logging.getLogger("streams.app")

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

    decoder = DecoderService(build_event_decoder(settings), settings, loop=app.loop)
    sender = SenderService(build_sender_config(settings),
                           verify_tls=not settings.iterable_insecure_skip_tls_verify, loop=app.loop)
    app.add_dependency(decoder)
    app.add_dependency(sender)

    partition_of = Partitioner(n)
    to_by_device = Outbox(by_device, partition_of, settings.max_record_bytes)
    to_by_person = Outbox(by_person, partition_of, settings.max_record_bytes)
    to_requests = Outbox(requests_topic, partition_of, settings.max_record_bytes)

    dead_letter = DeadLetterSink(lambda key, value: dead_letters.send(key=key, value=value))
    route = RouteStage(decoder, dead_letter, to_by_device, settings.max_record_bytes)
    resolve = ResolveStage(AliasTable(aliases), dead_letter, to_by_person, enter=_make_current)
    apply = ApplyStage(IdentityTable(identities), mapping_config, dead_letter, to_requests, enter=_make_current)
    batch_items, batch_wait = settings.stage_batch_items, settings.stage_batch_seconds

    # Every stage takes its input in batches and sends its output as frames (one Kafka message per
    # destination partition and batch): faust's per-message cost dominates otherwise.
    # noack_take, not take_events: take_events acks the whole batch in a `finally`, so a batch cut
    # short (the agent cancelled by a shutdown or rebalance mid-body) would be committed unprocessed.
    # A batch is acked only once its stage handled it and handed its output to the producer buffer:
    # faust flushes the producer before it commits consumed offsets, so a commit never covers an
    # event whose output is still held in an outbox.
    async def ack(stream: Any, batch: Sequence[Any]) -> None:
        for record in batch:
            await stream.ack(record)

    if settings.source_keyed_by_device:
        @app.agent(sources, name="resolve")
        async def resolve_source(stream: Any) -> None:
            """Decode source records already keyed by device id and resolve their person."""
            async for batch in stream.noack_take(batch_items, within=batch_wait):
                try:
                    resolve.handle_decoded(await route.decode(batch))
                    await ack(stream, batch)
                except Exception as exc:
                    _die("resolve", exc)
    else:
        @app.agent(sources, name="route")
        async def route_agent(stream: Any) -> None:
            """Decode source records and re-key them by device / anonymous id."""
            async for batch in stream.noack_take(batch_items, within=batch_wait):
                try:
                    await route.handle(batch)
                    await ack(stream, batch)
                except Exception as exc:
                    _die("route", exc)

        @app.agent(by_device, name="resolve")
        async def resolve_agent(stream: Any) -> None:
            """Attach the person key to each event; drop events of never-identified devices."""
            async for batch in stream.noack_take(FRAMES_PER_TAKE, within=batch_wait):
                try:
                    await resolve.handle(batch)
                    await ack(stream, batch)
                except Exception as exc:
                    _die("resolve", exc)

    @app.agent(by_person, name="apply")
    async def apply_agent(stream: Any) -> None:
        """Run the mapping core per person; emit Iterable requests or dead letters."""
        async for batch in stream.noack_take(FRAMES_PER_TAKE, within=batch_wait):
            try:
                await apply.handle(batch)
                await ack(stream, batch)
            except Exception as exc:
                _die("apply", exc)

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
                items = [pair for frame in frames for pair in await dead_letter.frame_items(frame, decode_request)]
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
