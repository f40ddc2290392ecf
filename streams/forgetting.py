"""The right to be forgotten (GDPR): what ``freshpaint-iterable forget`` / ``unforget`` and the deletion topic
(``FPI_DELETION_TOPIC``, ``streams.deletions``) both do for a person, in this order, each step idempotent:

1. Iterable: ``users/forget`` (or ``unforget``) for each identifier, in every project (``call_iterable``).
2. The worker: a control record per person key on the by-person topic and on every partition of the by-device
   topic (``tell_worker``); the stages delete the person's identity and links and drop their events
   (``streams.commands.forget`` describes the records).

Repeating both is harmless: the emulator answers 200 to ``users/forget`` of a forgotten user, the apply stage
sets the same marker again and the resolve stage finds no link left to delete.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import TYPE_CHECKING

from streams.errors import ConfigError
from streams.identity import forgotten_key
from streams.settings import Settings
from streams.stages import Control, control_to_bytes

if TYPE_CHECKING:
    from pydantic import SecretStr

__all__ = ["ForgetReport", "call_iterable", "forget_person", "iterable_projects", "person_keys", "tell_worker"]


@dataclass(frozen=True, slots=True)
class ForgetReport:
    """Where each person key's control record went: ``(marker, by-person partition)``, and how many by-device
    partitions got it (0 with ``FPI_SOURCE_KEYED_BY_DEVICE``)."""

    written: tuple[tuple[str, int], ...]
    by_device: int = 0


def person_keys(email: str | None, user_id: str | None) -> list[str]:
    """The person keys the worker may hold for these identifiers (user id first), stripped; empty ones left out."""
    return [key.strip() for key in (user_id, email) if key is not None and key.strip()]


async def tell_worker(settings: Settings, keys: list[str], control: Control) -> ForgetReport:
    """Write one control record per person key to the by-person topic (and to every partition of the by-device
    topic, unless ``FPI_SOURCE_KEYED_BY_DEVICE``) and wait for the broker's acks.

    Raises ``BrokerUnavailable``, or ``TopicMissing`` when a topic does not exist.
    """
    from aiokafka import AIOKafkaProducer  # type: ignore[import-untyped]

    from streams.brokers import client_options, partitions_of, start_client
    from streams.codecs import FrameItem, encode_frame
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
        for person_key in keys:
            key = person_key.encode()
            partition = partition_of(key)
            # A frame of one item, as the worker's outboxes write them; the Kafka key stays empty (the
            # outboxes send frames unkeyed, to a partition they choose), so the email is not a message key.
            frame = encode_frame([FrameItem(key, control_to_bytes(control), ("forget", None, None))])
            # Each record goes to a partition of its own: sent together, acked together (one round trip,
            # not one per by-device partition).
            acks = [await producer.send(topic, frame, partition=partition)]
            acks += [await producer.send(by_device_topic, frame, partition=device_partition)
                     for device_partition in by_device]
            await asyncio.gather(*acks)
            written.append((forgotten_key(person_key), partition))
    finally:
        await producer.stop()
    return ForgetReport(tuple(written), len(by_device))


def iterable_projects(settings: Settings) -> list[tuple[str, SecretStr]]:
    """(URL, key) of every Iterable project: each of the routing file's (FPI_PROJECTS_FILE), else the one."""
    from streams.wiring import build_mapping_config, build_project_sender_configs, build_routing

    routing = build_routing(settings, build_mapping_config(settings))
    if routing is not None:
        return [(config.base_url, config.api_key)
                for config in build_project_sender_configs(settings, routing).values()]
    if settings.iterable_api_key is None:
        raise ConfigError("FPI_ITERABLE_API_KEY is not set: set it to the project's server-side key")
    return [(settings.iterable_url, settings.iterable_api_key)]


async def call_iterable(settings: Settings, email: str | None, user_id: str | None, control: Control) -> None:
    """``users/forget`` (or ``unforget``) in every project: the worker drops the person's events in all of them.

    Raises ``DeliveryError`` for Iterable's refusal or an outage (nothing retried here)."""
    from streams.iterable.client import IterableClient, new_http_client

    projects = iterable_projects(settings)
    async with new_http_client(request_timeout=30, verify=not settings.iterable_insecure_skip_tls_verify) as http:
        for url, key in projects:
            client = IterableClient(http, url, key)
            call = client.forget if control is Control.FORGET else client.unforget
            # One call per identifier: Iterable's users/forget takes an email or a userId.
            if email and email.strip():
                await call(email=email.strip())
            if user_id and user_id.strip():
                await call(user_id=user_id.strip())


async def forget_person(settings: Settings, email: str | None, user_id: str | None,
                        control: Control) -> ForgetReport:
    """Both steps: Iterable first (a refusal leaves the worker untouched), then the control records."""
    keys = person_keys(email, user_id)
    if not keys:
        raise ValueError("neither an email nor a user id")
    await call_iterable(settings, email, user_id, control)
    return await tell_worker(settings, keys, control)
