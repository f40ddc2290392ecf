"""``freshpaint-iterable forget`` / ``unforget``: the right to be forgotten (GDPR).

``forget`` does two things, in this order, each idempotent (run it again after a failure):

1. Iterable: ``POST /api/users/forget`` for each identifier given, with the configured key. Iterable
   deletes the user and answers 409 ``ForgottenUserError`` to their later data; the sender turns that
   into a ``forgotten`` dead letter without the request (no email in it), never a retry.
2. The worker: one control record per identifier (``streams.stages.Control``) in a frame on the by-person
   topic, on the partition the worker's partitioner gives the person key. Only the worker writes its tables:
   the apply agent that owns the person's partition deletes their ``identities`` entry (a tombstone in
   the changelog, so compaction removes their email) and sets a marker keyed by a SHA-256 of the person key;
   from then on their events are dropped ``forgotten`` (counted, not dead-lettered). A faust table's
   changelog written from outside would not be seen by the running worker. The by-person topic rather than
   the replay topic: the apply stage is the one that keeps person state, the records reach it in order with
   the person's events, and ``dead-letters redrive`` writes frames to an internal topic the same way.
   The same record also goes to every partition of the by-device topic: the resolve agent of each deletes
   the ``aliases`` links to the person it indexed there (tombstones) and stores no new one until ``unforget``
   (``AliasTable.forget``). Not with ``FPI_SOURCE_KEYED_BY_DEVICE``: that worker has no by-device topic.

``unforget`` calls ``users/unforget`` and clears the markers. What is not removed (links stored before the
index existed or beyond its bound, held events of devices not linked yet, the internal and dead-letter topics
until their retention): README, "The right to be forgotten".
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import TYPE_CHECKING

import click

from streams.errors import ConfigError
from streams.identity import forgotten_key
from streams.settings import Settings, load_settings
from streams.stages import Control, control_to_bytes

if TYPE_CHECKING:
    from pydantic import SecretStr

__all__ = ["ForgetReport", "forget", "tell_worker", "unforget"]


@dataclass(frozen=True, slots=True)
class ForgetReport:
    """Where each person key's control record went: ``(marker, by-person partition)``, and how many by-device
    partitions got it (0 with ``FPI_SOURCE_KEYED_BY_DEVICE``)."""

    written: tuple[tuple[str, int], ...]
    by_device: int = 0


def _person_keys(email: str | None, user_id: str | None) -> list[str]:
    keys = [key.strip() for key in (user_id, email) if key is not None and key.strip()]
    if not keys:
        raise click.UsageError("give --email, --user-id, or both")
    return keys


async def tell_worker(settings: Settings, person_keys: list[str], control: Control) -> ForgetReport:
    """Write one control record per person key to the by-person topic (and to every partition of the by-device
    topic, unless ``FPI_SOURCE_KEYED_BY_DEVICE``) and wait for the broker's acks.

    Raises ``BrokerUnavailable``, or ``click.ClickException`` when the topic does not exist.
    """
    from aiokafka import AIOKafkaProducer  # type: ignore[import-untyped]

    from streams.brokers import client_options, start_client
    from streams.codecs import FrameItem, encode_frame
    from streams.commands._kafka_io import partitions_of
    from streams.outbox import Partitioner

    options = client_options(settings)
    topic = settings.by_person_topic
    partition_of = Partitioner(len(await partitions_of(options, topic)))
    by_device_topic = f"{settings.app_id}-by-device"
    by_device = [] if settings.source_keyed_by_device else await partitions_of(options, by_device_topic)
    producer = AIOKafkaProducer(acks="all", **options)
    await start_client(producer, settings.kafka_bootstrap)
    written: list[tuple[str, int]] = []
    try:
        for person_key in person_keys:
            key = person_key.encode()
            partition = partition_of(key)
            # A frame of one item, as the worker's outboxes write them; the Kafka key stays empty (the
            # outboxes send frames unkeyed, to a partition they choose), so the email is not a message key.
            frame = encode_frame([FrameItem(key, control_to_bytes(control), ("forget", None, None))])
            await producer.send_and_wait(topic, frame, partition=partition)
            for device_partition in by_device:
                await producer.send_and_wait(by_device_topic, frame, partition=device_partition)
            written.append((forgotten_key(person_key), partition))
    finally:
        await producer.stop()
    return ForgetReport(tuple(written), len(by_device))


def _projects(settings: Settings) -> list[tuple[str, SecretStr]]:
    """(URL, key) of every Iterable project: each of the routing file's (FPI_PROJECTS_FILE), else the one."""
    from streams.wiring import build_mapping_config, build_project_sender_configs, build_routing

    routing = build_routing(settings, build_mapping_config(settings))
    if routing is not None:
        return [(config.base_url, config.api_key)
                for config in build_project_sender_configs(settings, routing).values()]
    if settings.iterable_api_key is None:
        raise ConfigError("FPI_ITERABLE_API_KEY is not set: set it to the project's server-side key")
    return [(settings.iterable_url, settings.iterable_api_key)]


async def _call_iterable(settings: Settings, email: str | None, user_id: str | None, control: Control) -> None:
    """``users/forget`` (or ``unforget``) in every project: the worker drops the person's events in all of them."""
    from streams.iterable.client import IterableClient, new_http_client

    projects = _projects(settings)
    async with new_http_client(request_timeout=30, verify=not settings.iterable_insecure_skip_tls_verify) as http:
        for url, key in projects:
            client = IterableClient(http, url, key)
            call = client.forget if control is Control.FORGET else client.unforget
            # One call per identifier: Iterable's users/forget takes an email or a userId.
            if email:
                await call(email=email.strip())
            if user_id:
                await call(user_id=user_id.strip())


def _run(email: str | None, user_id: str | None, control: Control) -> None:
    keys = _person_keys(email, user_id)
    settings = load_settings()

    async def run() -> ForgetReport:
        await _call_iterable(settings, email, user_id, control)
        return await tell_worker(settings, keys, control)

    report = asyncio.run(run())
    done = "forgotten" if control is Control.FORGET else "unforgotten"
    where = f"every project of {settings.projects_file}" if settings.projects_file else settings.iterable_url
    click.echo(f"Iterable: {done} ({where})")
    for marker, partition in report.written:
        click.echo(f"worker: {control.value} record for {marker} on {settings.by_person_topic}[{partition}]"
                   f" and {report.by_device} partitions of {settings.app_id}-by-device")
    if settings.source_keyed_by_device:
        click.echo("worker: FPI_SOURCE_KEYED_BY_DEVICE is set: the person's aliases links are not deleted")


_EMAIL = click.option("--email", help="The person's email (their person key when they have no user id).")
_USER_ID = click.option("--user-id", "user_id", help="The person's user id (their person key when they have one).")


@click.command()
@_EMAIL
@_USER_ID
def forget(email: str | None, user_id: str | None) -> None:
    """Forget a person (GDPR): Iterable's users/forget, then the worker deletes their identity and drops
    their events (reason forgotten) until `unforget`.

    Give every identifier the person has (--email and --user-id): each is forgotten in Iterable, and the
    worker drops events that carry either.
    """
    _run(email, user_id, Control.FORGET)


@click.command()
@_EMAIL
@_USER_ID
def unforget(email: str | None, user_id: str | None) -> None:
    """Undo `forget`: Iterable's users/unforget, and the worker sends the person's new events again
    (what was deleted stays deleted)."""
    _run(email, user_id, Control.UNFORGET)
