"""The Faust app: topics, tables and agents, wired from one ``Settings`` object.

The shell layer: with ``cli.py`` and ``commands/`` the only code that imports faust. Data flow
(``design.md``)::

    source topic (Avro, any key)
      -> agent route     decode; dead-letter poison; re-key by device / anonymous id
    by-device topic (internal)        [skipped when FPI_SOURCE_KEYED_BY_DEVICE=true]
      -> agent resolve   table aliases: anonymous id -> person key; anonymous events dropped
    by-person topic (internal, keyed by person key)
      -> agent apply     table identities; the mapping core decides; requests or dead letters
    requests topic (internal, keyed by person key)
      -> agent send      batches to Iterable; every request delivered or dead-lettered
    dead-letter topic

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

from streams import metrics
from streams.codecs import (
    decode_event_internal,
    decode_request,
    encode_dead_letter,
    encode_event_internal,
    encode_request,
)
from streams.errors import Reason, StreamsError
from streams.identity import resolve, routing_key
from streams.mapping import apply_event
from streams.model import QUIET_DROPS, DeadLetter, DropReason, Event
from streams.services import DecoderService, SenderService
from streams.settings import Settings
from streams.wiring import (
    broker_credentials,
    build_event_decoder,
    build_mapping_config,
    build_sender_config,
    identity_from_bytes,
    identity_to_bytes,
)

__all__ = ["build_app"]

log = logging.getLogger("streams.app")

SOURCE_HEADER = "fpi-source"
"""Header carrying ``topic:partition:offset`` of the source record along the internal topics."""

_DEAD_LETTER_SAMPLE_BYTES = 65_536


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


def _source_of(event: Any) -> tuple[str | None, int | None, int | None]:
    headers = event.headers or {}
    raw = headers.get(SOURCE_HEADER)
    if raw:
        topic, partition, offset = raw.decode().rsplit(":", 2)
        return topic, int(partition), int(offset)
    message = event.message
    return message.topic, message.partition, message.offset


def _source_header(topic: str | None, partition: int | None, offset: int | None) -> dict[str, bytes]:
    return {SOURCE_HEADER: f"{topic}:{partition}:{offset}".encode()}


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
        processing_guarantee="at_least_once",
        consumer_auto_offset_reset="earliest",
        web_port=settings.web_port,
        web_bind=settings.web_bind,
        # /table and /router would serve identity data (PII) over HTTP.
        web_tables_enabled=False,
        web_router_enabled=False,
        autodiscover=False,
    )
    _keep_buffered_messages_on_redundant_resume(app)
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

    async def dead_letter(letter: DeadLetter, key: bytes | None) -> None:
        metrics.DEAD_LETTERS.labels(letter.reason).inc()
        log.warning("dead letter %s: %s", letter.reason, letter.detail,
                    extra={"topic": letter.source_topic, "partition": letter.source_partition,
                           "offset": letter.source_offset})
        await dead_letters.send(key=key, value=encode_dead_letter(letter))

    batch_items, batch_wait = settings.stage_batch_items, settings.stage_batch_seconds

    async def decode_source(event: Any) -> Event | None:
        message = event.message
        result = await decoder.decode(event.value, topic=message.topic, partition=message.partition,
                                      offset=message.offset, now=datetime.now(UTC))
        if isinstance(result, DeadLetter):
            await dead_letter(result, event.key)
            return None
        metrics.EVENTS_IN.labels(result.type.value).inc()
        return result

    async def fits(event: Any, value: bytes) -> bool:
        """False (and a dead letter) for an event too large for the internal topics.

        Forwarding it would fail in the producer and stop the worker on the same record forever.
        """
        if len(value) <= settings.max_record_bytes:
            return True
        message = event.message
        await dead_letter(DeadLetter(
            reason=Reason.TOO_LARGE.value, failed_at=datetime.now(UTC),
            detail=f"event of {len(value)} bytes is over FPI_MAX_RECORD_BYTES={settings.max_record_bytes}; "
                   f"original_bytes holds its first {_DEAD_LETTER_SAMPLE_BYTES} bytes",
            source_topic=message.topic, source_partition=message.partition, source_offset=message.offset,
            original_bytes=(event.value or b"")[:_DEAD_LETTER_SAMPLE_BYTES]), event.key)
        return False

    def resolve_one(event: Any, decoded: Event) -> None:
        device = decoded.anonymous_id.encode() if decoded.anonymous_id else None
        known = aliases.get(device) if device else None
        resolution = resolve(decoded, known.decode() if known else None)
        if resolution.new_alias is not None and device:
            aliases[device] = resolution.new_alias.encode()
        if resolution.person_key is None:
            metrics.EVENTS_DROPPED.labels((resolution.drop or DropReason.ANONYMOUS).value).inc()
            return
        by_person.send_soon(key=resolution.person_key.encode(), value=encode_event_internal(decoded),
                            headers=_source_header(*_source_of(event)))

    # Every stage takes its events in batches: faust's per-message cost dominates otherwise.
    # noack_take, not take_events: take_events acks the whole batch in a `finally`, so a batch cut
    # short (the agent cancelled by a shutdown or rebalance mid-body) would be committed unprocessed.
    # Each event is acked here once handled. send_soon() only buffers; faust flushes the producer
    # before it commits consumed offsets.
    if settings.source_keyed_by_device:
        @app.agent(sources, name="resolve")
        async def resolve_source(stream: Any) -> None:
            """Decode source records already keyed by device id and resolve their person."""
            async for batch in stream.noack_take(batch_items, within=batch_wait):
                try:
                    for event in batch:
                        decoded = await decode_source(event)
                        if decoded is not None and await fits(event, encode_event_internal(decoded)):
                            _make_current(event)
                            resolve_one(event, decoded)
                        await stream.ack(event)
                except Exception as exc:
                    _die("resolve", exc)
    else:
        @app.agent(sources, name="route")
        async def route(stream: Any) -> None:
            """Decode source records and re-key them by device / anonymous id."""
            async for batch in stream.noack_take(batch_items, within=batch_wait):
                try:
                    for event in batch:
                        decoded = await decode_source(event)
                        if decoded is not None:
                            value = encode_event_internal(decoded)
                            if await fits(event, value):
                                key = routing_key(decoded)
                                by_device.send_soon(key=key.encode() if key else None, value=value,
                                                    headers=_source_header(*_source_of(event)))
                        await stream.ack(event)
                except Exception as exc:
                    _die("route", exc)

        @app.agent(by_device, name="resolve")
        async def resolve_internal(stream: Any) -> None:
            """Attach the person key to each event; drop events of never-identified devices."""
            async for batch in stream.noack_take(batch_items, within=batch_wait):
                try:
                    for event in batch:
                        _make_current(event)
                        resolve_one(event, decode_event_internal(event.value))
                        await stream.ack(event)
                except Exception as exc:
                    _die("resolve", exc)

    @app.agent(by_person, name="apply")
    async def apply_agent(stream: Any) -> None:
        """Run the mapping core per person; emit Iterable requests or dead letters."""
        async for batch in stream.noack_take(batch_items, within=batch_wait):
            try:
                for event in batch:
                    _make_current(event)
                    await apply_one(event)
                    await stream.ack(event)
            except Exception as exc:
                _die("apply", exc)

    async def apply_one(event: Any) -> None:
        decoded = decode_event_internal(event.value)
        person_key = event.key.decode()
        stored = identities.get(event.key)
        identity = identity_from_bytes(stored) if stored else None
        now = datetime.now(UTC)
        topic, partition, offset = _source_of(event)
        try:
            applied = apply_event(decoded, person_key, identity, mapping_config, now)
        except StreamsError as exc:
            await dead_letter(DeadLetter(reason=exc.reason.value, detail=str(exc), failed_at=now,
                                         source_topic=topic, source_partition=partition, source_offset=offset,
                                         event=decoded), event.key)
            return
        if applied.identity is not None:
            identities[event.key] = identity_to_bytes(applied.identity)
        decision = applied.decision
        if decision.drop_reason is not None:
            metrics.EVENTS_DROPPED.labels(decision.drop_reason.value).inc()
            if decision.drop_reason not in QUIET_DROPS:
                await dead_letter(DeadLetter(reason=decision.drop_reason.value,
                                             detail=decision.detail or decision.drop_reason.value,
                                             failed_at=now, source_topic=topic, source_partition=partition,
                                             source_offset=offset, event=decoded), event.key)
            return
        for request in decision.requests:
            metrics.REQUESTS_OUT.labels(request.endpoint.value).inc()
            requests_topic.send_soon(key=event.key, value=encode_request(request),
                                     headers=_source_header(topic, partition, offset))

    @app.agent(requests_topic, name="send")
    async def send_agent(stream: Any) -> None:
        """Deliver requests in batches; a batch is acked only once every item has an outcome."""
        async for batch in stream.noack_take(settings.send_batch_items, within=settings.send_linger_seconds):
            try:
                await deliver_batch(batch)
                for event in batch:
                    await stream.ack(event)
            except Exception as exc:
                _die("send", exc)

    async def deliver_batch(batch: Sequence[Any]) -> None:
        requests = [decode_request(event.value) for event in batch]
        outcomes = await sender.deliver(requests)
        now = datetime.now(UTC)
        for event, outcome in zip(batch, outcomes, strict=True):
            if not outcome.delivered:
                topic, partition, offset = _source_of(event)
                await dead_letter(outcome.to_dead_letter(failed_at=now, source_topic=topic,
                                                         source_partition=partition, source_offset=offset),
                                  event.key)

    @app.task  # type: ignore[untyped-decorator]  # faust is untyped
    async def declare_dead_letter_topic() -> None:
        """Nothing consumes the dead-letter topic here, so faust would not create it."""
        await dead_letters.maybe_declare()

    _add_web_pages(app, sender)
    return app


def _keep_buffered_messages_on_redundant_resume(app: faust.App) -> None:
    """Work around message loss in faust-streaming 0.15.3 table recovery.

    mode's ``FlowControlEvent.resume()`` clears every managed queue, even when flow was never
    suspended. Recovery calls it twice: once to read changelogs, and again after seeking the
    stream partitions to their committed offsets. Messages fetched between that seek and the
    second ``resume()`` are dropped from the stream's queue while the fetch position has moved
    past them, so they are not processed until the next restart (seen on the real broker:
    offsets 14-16 skipped, 17+ processed). Clearing only on a real suspended -> resumed
    transition keeps the intended behaviour (a rebalance suspends, clears, and seeks again).
    """
    flow = app.flow_control
    resume = flow.resume

    def resume_if_suspended() -> None:
        if not flow.is_active():
            resume()

    flow.resume = resume_if_suspended  # type: ignore[method-assign]  # patching a faust instance on purpose


def _add_web_pages(app: faust.App, sender: SenderService) -> None:
    from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

    # faust's PrometheusMonitor would cost ~6 label lookups per message per hop (a quarter of the
    # worker's CPU in the profile); lag, the one series of it we alert on, is sampled instead.
    @app.timer(interval=5.0)  # type: ignore[untyped-decorator]  # faust is untyped
    async def sample_consumer_lag() -> None:
        consumer = app.consumer
        for tp in consumer.assignment():
            highwater = consumer.highwater(tp)
            committed = consumer._committed_offset.get(tp)  # type: ignore[attr-defined]  # no public accessor
            if highwater is not None:
                lag = highwater - (committed if committed is not None else 0)
                metrics.CONSUMER_LAG.labels(tp.topic, str(tp.partition)).set(max(lag, 0))

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
