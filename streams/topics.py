"""The worker's topics: which exist, with how many partitions, and creating the missing ones.

Faust declares topics itself while it subscribes, but when a topic is created in the same moment
the group assignment runs, the broker's metadata may not list it yet: faust's assignor then logs
"Ignoring missing topic" and that topic's partitions stay unassigned until the next rebalance (seen
on Kafka 4.1 here). So the worker creates its topics first, waits until the metadata shows every
one of them, and only then starts faust.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import Any

from streams.brokers import client_options, start_client
from streams.errors import ConfigError
from streams.settings import Settings

__all__ = ["TopicSpec", "ensure_topics", "worker_topics"]

log = logging.getLogger("streams.topics")


@dataclass(frozen=True, slots=True)
class TopicSpec:
    name: str
    partitions: int
    compacted: bool = False
    exact: bool = True
    """The partition count must be ``partitions``: frames and tables place records by it."""


def worker_topics(settings: Settings) -> list[TopicSpec]:
    """Every topic the worker reads or writes; internal and changelog topics are co-partitioned."""
    n = settings.topic_partitions
    return [
        # A source keyed by device feeds the aliases table directly, so it is co-partitioned too.
        TopicSpec(settings.source_topic, n, exact=settings.source_keyed_by_device),
        TopicSpec(settings.replay_topic, n, exact=False),
        TopicSpec(f"{settings.app_id}-by-device", n),
        TopicSpec(settings.by_person_topic, n),
        TopicSpec(settings.requests_topic, n),
        TopicSpec(settings.dead_letter_topic, n, exact=False),
        TopicSpec(f"{settings.app_id}-aliases-changelog", n, compacted=True),
        TopicSpec(f"{settings.app_id}-identities-changelog", n, compacted=True),
    ]


async def ensure_topics(settings: Settings, *, create: bool = True, timeout: float = 60.0) -> None:
    """Create the missing topics (unless ``create`` is false) and wait until all are visible.

    Raises ``BrokerUnavailable`` when Kafka cannot be reached, ``ConfigError`` when a topic is missing
    and may not be created, does not appear in
    the metadata within ``timeout`` seconds, or has another partition count than the internal
    topics and tables need (``FPI_TOPIC_PARTITIONS``).
    """
    from aiokafka.admin import AIOKafkaAdminClient, NewTopic  # type: ignore[import-untyped]

    specs = worker_topics(settings)
    admin = AIOKafkaAdminClient(**client_options(settings))
    await start_client(admin, settings.kafka_bootstrap)
    try:
        existing = set(await admin.list_topics())
        missing = [spec for spec in specs if spec.name not in existing]
        if missing and not create:
            names = ", ".join(spec.name for spec in missing)
            raise ConfigError(f"missing topics and FPI_CREATE_TOPICS=false: {names}; create them (k8s/base has "
                              "a topics job) or set FPI_CREATE_TOPICS=true")
        if missing:
            await admin.create_topics([_new_topic(NewTopic, spec, settings) for spec in missing])
            log.info("created topics: %s", ", ".join(spec.name for spec in missing))
        counts = await _wait_visible(admin, [spec.name for spec in specs], timeout)
    finally:
        await admin.close()
    wrong = [f"{spec.name} has {counts[spec.name]}" for spec in specs
             if spec.exact and counts[spec.name] != spec.partitions]
    if wrong:
        raise ConfigError(
            f"topics with the wrong number of partitions (FPI_TOPIC_PARTITIONS={settings.topic_partitions}): "
            f"{', '.join(wrong)}. Internal topics and tables are co-partitioned; recreate these topics with "
            "that many partitions (after draining them) or set FPI_TOPIC_PARTITIONS to match.")


def _new_topic(new_topic: Any, spec: TopicSpec, settings: Settings) -> Any:
    configs = {"cleanup.policy": "compact"} if spec.compacted else {}
    return new_topic(spec.name, spec.partitions, settings.topic_replication_factor, topic_configs=configs)


async def _wait_visible(admin: Any, names: list[str], timeout: float) -> dict[str, int]:
    """Partition count of each topic, once the metadata lists them all."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        described = await admin.describe_topics(names)
        counts = {d["topic"]: len(d["partitions"]) for d in described
                  if d.get("error_code", 0) == 0 and d.get("partitions")}
        ready = set(counts)
        if ready >= set(names):
            return counts
        if asyncio.get_running_loop().time() > deadline:
            raise ConfigError(f"topics not visible in the broker metadata: {sorted(set(names) - ready)}")
        await asyncio.sleep(0.2)
