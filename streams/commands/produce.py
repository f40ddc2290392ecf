"""``freshpaint-iterable produce``: JSON lines of Freshpaint events -> Avro on the source topic.

Reads either Freshpaint dialect one event per line, normalizes it (``streams.normalize``),
encodes it (``streams.codecs``) and produces it keyed by anonymous id, else user id. With a
registry URL the source schema is registered under ``<topic>-value`` (TopicNameStrategy) and its
id goes in the Confluent header; without one the header names ``BUNDLED_SCHEMA_ID`` (0), which
every ``EventDecoder`` knows without a registry. Used by the demo, the tests and the benchmarks.
"""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import IO, Any

import click

from streams.brokers import client_options, start_client
from streams.codecs import BUNDLED_SCHEMA_ID, WireFormat, encode_event, load_schemas, schema_text, subject_for
from streams.codecs._schemas import SOURCE_V1
from streams.errors import ConfigError, StreamsError
from streams.model import Event
from streams.settings import Settings

__all__ = ["BadLine", "ProduceReport", "event_key", "produce", "produce_lines"]


@dataclass(frozen=True, slots=True)
class BadLine:
    """A line that was not produced: its 1-based number, the reason code and why."""

    line_number: int
    reason: str
    detail: str


@dataclass(frozen=True, slots=True)
class ProduceReport:
    """What ``produce_lines`` did: events produced, and the lines it skipped."""

    sent: int
    bad: tuple[BadLine, ...]
    schema_id: int | None
    """The Confluent schema id written (None for schemaless)."""


def event_key(event: Event) -> bytes | None:
    """The Kafka key of an event: its anonymous (device) id, else its user id, else none."""
    key = event.anonymous_id or event.user_id
    return key.encode() if key else None


async def _register(registry_url: str, topic: str, settings: Settings | None) -> int:
    from streams.codecs import SchemaRegistryClient

    async with SchemaRegistryClient.connect(settings or Settings(), registry_url) as registry:
        return await registry.register(subject_for(topic), schema_text(SOURCE_V1))


async def produce_lines(
    lines: Iterable[str | bytes],
    *,
    bootstrap: str,
    topic: str,
    fmt: WireFormat = "confluent",
    registry_url: str | None = None,
    rate: float | None = None,
    on_progress: Callable[[int], None] | None = None,
    kafka_options: Mapping[str, Any] | None = None,
    registry_settings: Settings | None = None,
) -> ProduceReport:
    """Normalize, encode and produce every non-blank line; wait until the broker acked them all.

    ``rate`` caps events per second. ``on_progress(n)`` is called after each line with how many
    lines were handled. ``kafka_options`` are the producer's TLS / SASL options
    (``streams.brokers.client_options``); ``registry_settings`` give the registry's credentials and CA
    (FPI_SCHEMA_REGISTRY_*). Bad lines are skipped and reported, never raised.
    Raises ``BrokerUnavailable`` when Kafka cannot be reached, ``RegistryUnavailable`` /
    ``ConfigError`` for the registry, ``ConfigError`` when the schemas cannot be loaded.
    """
    from aiokafka import AIOKafkaProducer  # type: ignore[import-untyped]

    from streams.normalize import normalize_json_line  # the mapping core; imported on use

    schema_id: int | None = None
    if fmt == "confluent":
        schema_id = await _register(registry_url, topic, registry_settings) if registry_url else BUNDLED_SCHEMA_ID
    options = {**(kafka_options or {}), "bootstrap_servers": bootstrap}
    producer = AIOKafkaProducer(acks="all", linger_ms=5, **options)
    await start_client(producer, bootstrap)
    bad: list[BadLine] = []
    pending: list[asyncio.Future[object]] = []
    sent = 0
    started = time.monotonic()
    try:
        for number, line in enumerate(lines, start=1):
            if line.strip():
                try:
                    event = normalize_json_line(line)
                    value = encode_event(event, fmt, schema_id=schema_id or BUNDLED_SCHEMA_ID)
                except ConfigError:
                    raise  # not the line's fault: no line would encode
                except StreamsError as exc:
                    bad.append(BadLine(number, exc.reason.value, str(exc)))
                else:
                    if rate:
                        delay = started + sent / rate - time.monotonic()
                        if delay > 0:
                            await asyncio.sleep(delay)
                    pending.append(await producer.send(topic, value, key=event_key(event)))
                    sent += 1
                    if len(pending) >= 1000:
                        await asyncio.gather(*pending)
                        pending.clear()
            if on_progress is not None:
                on_progress(number)
        await asyncio.gather(*pending)
    finally:
        await producer.stop()
    return ProduceReport(sent=sent, bad=tuple(bad), schema_id=schema_id)


def _read_lines(source: IO[str]) -> Iterable[str]:
    yield from source


@click.command()
@click.option("--format", "fmt", type=click.Choice(["confluent", "schemaless"]), default=None,
              help="Wire format (FPI_AVRO_FORMAT, default confluent).")
@click.option("--topic", default=None, help="Topic to produce to (FPI_SOURCE_TOPIC).")
@click.option("--rate", type=click.FloatRange(min=0, min_open=True), default=None,
              help="At most this many events per second (default: as fast as possible).")
@click.option("--registry-url", default=None,
              help="Confluent-compatible schema registry (FPI_SCHEMA_REGISTRY_URL); registers the schema "
                   "under <topic>-value. Without it the bundled schema id 0 is used.")
@click.option("--bootstrap", default=None, help="Kafka bootstrap host:port (FPI_KAFKA_BOOTSTRAP).")
@click.argument("source", type=click.File("r", encoding="utf-8"), default="-")
def produce(
    fmt: WireFormat | None, topic: str | None, rate: float | None, registry_url: str | None,
    bootstrap: str | None, source: IO[str],
) -> None:
    """Produce JSON lines (FILE, or - for stdin) of Freshpaint events as Avro to the source topic."""
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from streams.settings import load_settings

    settings = load_settings()
    load_schemas()
    topic = topic or settings.source_topic
    console = Console(stderr=True)
    lines: list[str] | Iterable[str]
    total: int | None = None
    if source is sys.stdin or getattr(source, "name", "-") in ("-", "<stdin>"):
        lines = _read_lines(source)
    else:
        lines = source.readlines()
        total = len(lines)
    with Progress(TextColumn("producing"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  console=console, transient=True, disable=not console.is_terminal) as progress:
        task = progress.add_task("produce", total=total)
        report = asyncio.run(produce_lines(
            lines,
            bootstrap=bootstrap or settings.kafka_bootstrap,
            topic=topic,
            fmt=fmt or settings.avro_format,
            registry_url=registry_url or settings.schema_registry_url,
            rate=rate,
            on_progress=lambda n: progress.update(task, completed=n),
            kafka_options=client_options(settings),
            registry_settings=settings,
        ))
    for line in report.bad:
        console.print(f"line {line.line_number}: {line.reason}: {line.detail}", markup=False)
    schema = "schemaless" if report.schema_id is None else f"schema id {report.schema_id}"
    click.echo(f"produced {report.sent} events to {topic} ({schema}); {len(report.bad)} bad lines")
    if report.bad:
        raise SystemExit(1)
