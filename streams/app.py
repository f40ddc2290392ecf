"""The Faust app: topics, tables and agents, wired from one ``Settings`` object.

The shell layer: with ``cli.py``, ``commands/``, ``services.py`` and ``wiring.py`` the only code that
imports faust, and it reaches no faust internal itself (``faust_patches`` holds every such contact).
Each agent takes a batch, has its stage (``streams.stages``) handle it, and acks it. Data flow
(``design.md``)::

    source topic (Avro, any key)
      -> stage route     decode; dead-letter poison; re-key by device / anonymous id. Read with aiokafka
                         directly, in its own consumer group (``streams.source_reader``), not by an agent:
                         the one topic where faust's per-record cost would be paid per event
                         (FPI_SOURCE_READER=faust keeps the agent)
    by-device topic (internal, frames)   [skipped when FPI_SOURCE_KEYED_BY_DEVICE=true]
      -> agent resolve   table aliases: anonymous id -> person key; anonymous events dropped, or held
                         in table held until their device is linked (FPI_HOLD_ANONYMOUS_SECONDS)
    by-person topic (internal, frames, partitioned by person key)
      -> agent apply     tables identities (carts, devices, subscriptions); the mapping core decides;
                         requests or dead letters
    requests topic (internal, frames, partitioned by person key)
      -> agent send      batches to Iterable; every request delivered or dead-lettered
    dead-letter topic
    deletion topic (JSON, FPI_DELETION_TOPIC, optional)
      -> agent deletions users/forget in Iterable, then control records to by-person and by-device
                         (``streams.deletions``, as ``freshpaint-iterable forget``)

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
import contextlib
import logging
import os
import sys
from collections.abc import Awaitable, Sequence
from dataclasses import dataclass
from typing import Any

import faust

from streams import faust_patches, metrics
from streams.brokers import client_options
from streams.errors import StreamsError
from streams.outbox import Outbox, Partitioner
from streams.services import DecoderService, SenderService
from streams.settings import Settings
from streams.source_reader import Backlog, SourceReader, SourceRecord, source_group
from streams.stages import (
    AliasTable,
    ApplyStage,
    CartTable,
    DeadLetterSink,
    DeviceTable,
    FrameSizes,
    HeldTable,
    IdentityTable,
    ResolveStage,
    RouteStage,
    SendStage,
    SubscriptionTable,
)
from streams.wiring import (
    broker_credentials,
    build_event_decoder,
    build_mapping_config,
    build_project_sender_configs,
    build_routing,
    build_sender_config,
)

__all__ = ["build_app"]

log = logging.getLogger("streams.app")

FRAMES_PER_TAKE = 8
"""Frames an internal stage takes at a time. A frame holds the records of one upstream batch for one
partition (up to ``FPI_STAGE_BATCH_ITEMS``), so a take stays within a few thousand records."""

FRAMES_BUFFERED = 4 * FRAMES_PER_TAKE
"""Frames an internal stage's stream holds before faust's fetcher waits. faust bounds a stream's queue
by message count (``stream_buffer_maxsize``, 4,096), which suits the ~1 KB source records but would let
a stage that cannot keep up (the sender in an Iterable outage) hold 4,096 frames of up to
``FPI_MAX_RECORD_BYTES`` each, gigabytes, in memory (the figures are in bench/RESULTS.md)."""


def _die(where: str, exc: BaseException) -> None:
    """Stop the worker without committing: the event that hit a bug is redelivered after restart."""
    log.critical("unexpected error in %s; stopping the worker so no offset is committed past it", where,
                 exc_info=exc)
    _exit_now(70)


def _exit_now(code: int) -> None:
    """Exit at once, logs flushed: no shutdown path that could commit offsets runs."""
    logging.shutdown()
    sys.stderr.flush()
    os._exit(code)


def _fail(where: str, exc: StreamsError) -> None:
    """Stop the worker on an expected failure the operator must fix (a broker that stopped answering): one
    line naming the setting, as the command line shows such errors, not a traceback; nothing was committed."""
    log.critical("%s stopped: %s", where, exc, extra={"reason": exc.reason.value})
    _exit_now(1)


@dataclass(frozen=True, slots=True)
class _Topics:
    sources: Any
    """The source and the replay topic: the replay topic feeds the same first stage, so replays never
    touch the source's offsets."""
    by_device: Any
    by_person: Any
    requests: Any
    dead_letters: Any


@dataclass(frozen=True, slots=True)
class _Stages:
    route: RouteStage
    resolve: ResolveStage
    apply: ApplyStage
    send: SendStage


def build_app(settings: Settings) -> faust.App:
    """Create the Faust app with its topics, tables, agents and web pages.

    Raises ``ConfigError`` (from the transformation rules) before anything connects.
    """
    mapping_config = build_mapping_config(settings)
    routing = build_routing(settings, mapping_config)  # several Iterable projects (FPI_PROJECTS_FILE)
    app = _new_app(settings)
    topics = _declare_topics(app, settings)
    decoder = DecoderService(build_event_decoder(settings), settings, loop=app.loop)
    sender = SenderService(build_sender_config(settings),
                           verify_tls=not settings.iterable_insecure_skip_tls_verify, loop=app.loop,
                           projects=build_project_sender_configs(settings, routing) if routing else None,
                           stall_seconds=settings.project_stall_seconds)
    app.add_dependency(decoder)
    app.add_dependency(sender)
    # Records given up at a rebalance or stop must not be sent by this worker any more.
    faust_patches.install(app, drain_seconds=settings.drain_seconds, on_give_up=sender.abandon)

    # bytes key and value types make faust use the raw codec for the tables, their stores AND
    # changelog recovery (a Schema alone does not reach recovery, which then fails on JSON).
    n = settings.topic_partitions
    aliases = app.Table("aliases", partitions=n, key_type=bytes, value_type=bytes)
    identities = app.Table("identities", partitions=n, key_type=bytes, value_type=bytes)
    hold = settings.hold_rule()
    # Declared only when holding: an unused table would still be recovered and its changelog provisioned.
    held = app.Table("held", partitions=n, key_type=bytes, value_type=bytes) if hold is not None else None
    # Declared only when carts are kept (FPI_CARTS), for the same reason.
    carts = app.Table("carts", partitions=n, key_type=bytes, value_type=bytes) if mapping_config.carts else None
    # And only when push tokens are registered (FPI_PUSH_APP_NAME).
    devices = (app.Table("devices", partitions=n, key_type=bytes, value_type=bytes)
               if mapping_config.push_app_name else None)
    # And only when a subscription trait is set (FPI_*_TRAIT(S)).
    subscriptions = (app.Table("subscriptions", partitions=n, key_type=bytes, value_type=bytes)
                     if settings.subscriptions_kept() else None)
    partition_of = Partitioner(n)

    def outbox(topic: Any) -> Outbox:
        return Outbox(topic, partition_of, settings.max_record_bytes)

    frame_sizes = FrameSizes()
    dead_letter = DeadLetterSink(lambda key, value: topics.dead_letters.send(key=key, value=value), frame_sizes)
    enter = faust_patches.make_current
    reads_source = not settings.source_keyed_by_device and settings.source_reader == "aiokafka"
    route_letters = _AwaitedDeadLetters(topics.dead_letters) if reads_source else None
    stages = _Stages(
        route=RouteStage(decoder, DeadLetterSink(route_letters.send) if route_letters else dead_letter,
                         outbox(topics.by_device), settings.max_record_bytes),
        resolve=ResolveStage(AliasTable(aliases), dead_letter, outbox(topics.by_person), enter=enter,
                             held=HeldTable(held) if held is not None else None, hold=hold),
        apply=ApplyStage(IdentityTable(identities), mapping_config, dead_letter, outbox(topics.requests),
                         enter=enter, carts=CartTable(carts) if carts is not None else None,
                         devices=DeviceTable(devices) if devices is not None else None,
                         subscriptions=SubscriptionTable(subscriptions) if subscriptions is not None else None),
        send=SendStage(sender, dead_letter, settings.send_batch_items, given_up=faust_patches.was_given_up),
    )
    stages.apply.routing = routing
    _add_agents(app, settings, topics, stages)
    reader = (_add_source_reader(app, settings, topics, stages.route, route_letters, frame_sizes)
              if route_letters else None)
    if settings.deletion_topic:
        _add_deletion_agent(app, settings, settings.deletion_topic, dead_letter)

    if held is not None:
        def reindex_held(sender: Any, /, *args: Any, signal: Any, **kwargs: Any) -> None:
            """The held table's partitions change at a rebalance: the sweep's index is rebuilt from it."""
            stages.resolve.reindex()

        app.on_partitions_revoked.connect(reindex_held)

    @app.task  # type: ignore[untyped-decorator]  # faust is untyped
    async def declare_dead_letter_topic() -> None:
        """Nothing consumes the dead-letter topic here, so faust would not create it."""
        await topics.dead_letters.maybe_declare()

    _add_web_pages(app, sender, reader)
    return app


def _new_app(settings: Settings) -> faust.App:
    return faust.App(
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


def _declare_topics(app: faust.App, settings: Settings) -> _Topics:
    n = settings.topic_partitions
    raw: dict[str, Any] = {"key_type": bytes, "value_type": bytes, "key_serializer": "raw",
                           "value_serializer": "raw"}
    # internal=True: faust creates the topic (n partitions) before subscribing, if it is missing;
    # for the source topic that only happens locally, where nobody created it beforehand.
    topics = _Topics(
        sources=app.topic(settings.source_topic, settings.replay_topic, internal=True, **raw),
        by_device=app.topic(f"{settings.app_id}-by-device", partitions=n, internal=True, **raw),
        by_person=app.topic(settings.by_person_topic, partitions=n, internal=True, **raw),
        requests=app.topic(settings.requests_topic, partitions=n, internal=True, **raw),
        dead_letters=app.topic(settings.dead_letter_topic, partitions=n, internal=True, **raw),
    )
    for frames in (topics.by_device, topics.by_person, topics.requests):
        faust_patches.bound_stream_buffer(frames, FRAMES_BUFFERED)
    return topics


def _add_agents(app: faust.App, settings: Settings, topics: _Topics, stages: _Stages) -> None:
    """One agent per stage: take a batch, let the stage handle it, ack it.

    Every stage takes its input in batches and sends its output as frames (one Kafka message per
    destination partition and batch): faust's per-message cost dominates otherwise.
    noack_take, not take_events: take_events acks the whole batch in a `finally`, so a batch cut
    short (the agent cancelled by a shutdown or rebalance mid-body) would be committed unprocessed.
    A batch is acked only once its stage handled it and handed its output to the producer buffer:
    faust flushes the producer before it commits consumed offsets, so a commit never covers an
    event whose output is still held in an outbox.
    """
    batch_items, batch_wait = settings.stage_batch_items, settings.stage_batch_seconds

    if settings.source_keyed_by_device:
        @app.agent(topics.sources, name="resolve")
        async def resolve_source(stream: Any) -> None:
            """Decode source records already keyed by device id and resolve their person."""
            async for batch in stream.noack_take(batch_items, within=batch_wait):
                try:
                    await stages.resolve.handle_decoded(await stages.route.decode(batch))
                    await _ack(stream, batch)
                except Exception as exc:
                    _die("resolve", exc)
    else:
        if settings.source_reader == "faust":
            _add_route_agent(app, settings, topics, stages)

        @app.agent(topics.by_device, name="resolve")
        async def resolve(stream: Any) -> None:
            """Attach the person key to each event; drop events of never-identified devices."""
            async for batch in stream.noack_take(FRAMES_PER_TAKE, within=settings.frame_take_seconds):
                try:
                    await stages.resolve.handle(batch)
                    await _ack(stream, batch)
                except Exception as exc:
                    _die("resolve", exc)

    @app.agent(topics.by_person, name="apply")
    async def apply(stream: Any) -> None:
        """Run the mapping core per person; emit Iterable requests or dead letters."""
        async for batch in stream.noack_take(FRAMES_PER_TAKE, within=settings.frame_take_seconds):
            try:
                await stages.apply.handle(batch)
                await _ack(stream, batch)
            except Exception as exc:
                _die("apply", exc)

    @app.agent(topics.requests, name="send")
    async def send(stream: Any) -> None:
        """Deliver requests; frames are acked only once every request in them has an outcome, in order, and
        never when they were given up meanwhile (``SendStage``). A few batches are delivered at once, so
        no endpoint's budget waits for another endpoint's calls to finish a batch."""
        async def acked(frames: Sequence[Any]) -> None:
            await _ack(stream, frames)

        try:
            async for batch in stream.noack_take(FRAMES_PER_TAKE, within=settings.send_linger_seconds):
                await stages.send.submit(batch, acked, on_error=lambda exc: _die("send", exc))
        finally:
            await stages.send.cancel()


async def _ack(stream: Any, batch: Sequence[Any]) -> None:
    for record in batch:
        await stream.ack(record)


def _add_route_agent(app: faust.App, settings: Settings, topics: _Topics, stages: _Stages) -> None:
    """The first stage as a faust agent (FPI_SOURCE_READER=faust)."""
    @app.agent(topics.sources, name="route")
    async def route(stream: Any) -> None:
        """Decode source records and re-key them by device / anonymous id."""
        async for batch in stream.noack_take(settings.stage_batch_items, within=settings.stage_batch_seconds):
            try:
                await stages.route.handle(batch)
                await _ack(stream, batch)
            except Exception as exc:
                _die("route", exc)


class _AwaitedDeadLetters:
    """Sends the first stage's dead letters and keeps their acknowledgements, which the reader awaits before it
    commits the fetch they came from."""

    def __init__(self, topic: Any) -> None:
        self.topic = topic
        self.pending: list[Awaitable[Any]] = []

    async def send(self, key: bytes | None, value: bytes) -> None:
        self.pending.append(await self.topic.send(key=key, value=value))

    def taken(self) -> list[Awaitable[Any]]:
        pending, self.pending = self.pending, []
        return pending


def _add_source_reader(app: faust.App, settings: Settings, topics: _Topics, route: RouteStage,
                       letters: _AwaitedDeadLetters, frame_sizes: FrameSizes) -> SourceReader:
    """The first stage on its own aiokafka consumer (``streams.source_reader``), started once faust has
    started (its producer carries the stage's output) and stopped before faust stops."""
    async def handle(records: Sequence[SourceRecord]) -> list[Awaitable[Any]]:
        try:
            return [*await route.handle(records), *letters.taken()]
        except Exception as exc:
            _die("route", exc)
            raise  # unreachable: _die exits

    backlog = Backlog(
        topics=(topics.by_device.get_topic_name(), topics.by_person.get_topic_name(),
                topics.requests.get_topic_name()),
        max_records=settings.source_backlog_records, partitions=lambda: app.consumer.assignment(),
        processed=lambda tp: faust_patches.processed_offset(app.consumer, tp), records_per_frame=frame_sizes.mean)
    reader = SourceReader(
        topics=(settings.source_topic, settings.replay_topic), group_id=source_group(settings.app_id),
        takeover_group_id=settings.app_id, client_options=client_options(settings), handle=handle,
        max_records=settings.stage_batch_items, wait_seconds=settings.stage_batch_seconds,
        fetch_bytes=settings.consumer_fetch_bytes, session_timeout_seconds=settings.kafka_session_timeout_seconds,
        instance_id=settings.consumer_instance_id, backlog=backlog if settings.source_backlog_records else None)

    reading: list[asyncio.Task[None]] = []

    @app.task  # type: ignore[untyped-decorator]  # faust is untyped
    async def read_sources() -> None:
        reading.extend(task for task in (asyncio.current_task(),) if task is not None)
        try:
            await reader.start()
            await reader.run()
        except asyncio.CancelledError:
            raise
        except StreamsError as exc:  # BrokerUnavailable: the brokers stopped answering since the start-up check
            _fail("the source reader", exc)
        except Exception as exc:
            _die("the source reader", exc)
        finally:
            await asyncio.shield(reader.stop())

    async def stop_reading(sender: Any, /, *args: Any, signal: Any, **kwargs: Any) -> None:
        """Before faust flushes and stops its producer: a fetch in hand would otherwise produce into a stopped
        producer (mode stops an app's children before it cancels its tasks)."""
        for task in reading:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    app.on_before_shutdown.connect(stop_reading)
    return reader


def _add_deletion_agent(app: faust.App, settings: Settings, name: str, dead_letter: DeadLetterSink) -> None:
    """Deletion requests (``FPI_DELETION_TOPIC``): each record is acked once Iterable forgot the person and the
    control records are written, or once it is dead-lettered (``streams.deletions``)."""
    from streams.deletions import DeletionHandler

    topic = app.topic(name, internal=True, key_type=bytes, value_type=bytes,
                      key_serializer="raw", value_serializer="raw")
    handler = DeletionHandler(settings, dead_letter, given_up=faust_patches.was_given_up)

    @app.agent(topic, name="deletions")
    async def deletions(stream: Any) -> None:
        """One request at a time, in order: a later unforget must not overtake an earlier forget."""
        async for batch in stream.noack_take(16, within=settings.stage_batch_seconds):
            try:
                for record in batch:
                    await handler.handle(record)
                    await stream.ack(record)
            except Exception as exc:
                _die("deletions", exc)


def _add_web_pages(app: faust.App, sender: SenderService, reader: SourceReader | None) -> None:
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
        positions = [
            (tp.topic, tp.partition, highwater, faust_patches.committed_offset(consumer, tp))
            for tp in consumer.assignment()
            if tp.topic not in changelogs and (highwater := consumer.highwater(tp)) is not None
        ]
        lag.sample([*positions, *(reader.lag_positions() if reader else ())])

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
        if reader is not None and not reader.joined:
            problems.append(f"source reader not yet in consumer group {reader.group_id}")
        if sender.paused:
            problems.append("sender paused: Iterable rejected the API key (401)"
                            + (" of every project" if sender.projects else ""))
        return web.json({"ready": not problems, "problems": problems}, status=503 if problems else 200)
