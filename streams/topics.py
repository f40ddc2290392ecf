"""The worker's topics: which exist, with how many partitions and which cleanup policy, and creating
the missing ones. ``worker_topics`` is the one list: the worker, ``check``, ``freshpaint-iterable topics``
(which the k8s topics Job, compose and the runbook call) all read it.

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

__all__ = ["DEAD_LETTER_RETENTION_MS", "TopicSpec", "create_commands", "ensure_topics", "provision",
           "topic_configs", "worker_topics"]

log = logging.getLogger("streams.topics")

DEAD_LETTER_RETENTION_MS = 30 * 24 * 3600 * 1000
"""Dead letters are kept 30 days: time to read, fix and re-drive them (docs/operations.md)."""


@dataclass(frozen=True, slots=True)
class TopicSpec:
    name: str
    partitions: int
    compacted: bool = False
    exact: bool = True
    """The partition count must be ``partitions``: frames and tables place records by it."""
    retention_ms: int | None = None
    """Set at creation; None leaves the broker's default."""

    @property
    def cleanup_policy(self) -> str:
        """``compact`` for changelogs (a table's state is its latest value per key); ``delete`` for the
        rest, whose records must all be read (compaction would drop frames and events sharing a key)."""
        return "compact" if self.compacted else "delete"

    @property
    def configs(self) -> dict[str, str]:
        """Topic configs to create it with."""
        configs = {"cleanup.policy": self.cleanup_policy}
        if self.retention_ms is not None:
            configs["retention.ms"] = str(self.retention_ms)
        return configs


def worker_topics(settings: Settings) -> list[TopicSpec]:
    """Every topic the worker reads or writes; internal and changelog topics are co-partitioned. The
    ``held`` table's changelog is one of them only when anonymous events are held
    (``FPI_HOLD_ANONYMOUS_SECONDS``), as the worker declares that table only then; the ``carts`` table's
    only when carts are kept (``FPI_CARTS``); the ``devices`` table's only with ``FPI_PUSH_APP_NAME``; the
    ``subscriptions`` table's only with a subscription trait (``Settings.subscriptions_kept``); the deletion topic
    only with ``FPI_DELETION_TOPIC``."""
    n = settings.topic_partitions
    held = [TopicSpec(f"{settings.app_id}-held-changelog", n, compacted=True)] if settings.hold_rule() else []
    mapping = settings.mapping_config()
    carts = [TopicSpec(f"{settings.app_id}-carts-changelog", n, compacted=True)] if mapping.carts else []
    devices = ([TopicSpec(f"{settings.app_id}-devices-changelog", n, compacted=True)]
               if mapping.push_app_name else [])
    subscriptions = ([TopicSpec(f"{settings.app_id}-subscriptions-changelog", n, compacted=True)]
                     if settings.subscriptions_kept() else [])
    # Deletion requests (FPI_DELETION_TOPIC): any partition count, the broker's retention.
    deletions = [TopicSpec(settings.deletion_topic, n, exact=False)] if settings.deletion_topic else []
    return [
        # A source keyed by device feeds the aliases table directly, so it is co-partitioned too.
        TopicSpec(settings.source_topic, n, exact=settings.source_keyed_by_device),
        TopicSpec(settings.replay_topic, n, exact=False),
        TopicSpec(f"{settings.app_id}-by-device", n),
        TopicSpec(settings.by_person_topic, n),
        TopicSpec(settings.requests_topic, n),
        TopicSpec(settings.dead_letter_topic, n, exact=False, retention_ms=DEAD_LETTER_RETENTION_MS),
        TopicSpec(f"{settings.app_id}-aliases-changelog", n, compacted=True),
        TopicSpec(f"{settings.app_id}-identities-changelog", n, compacted=True),
        *held,
        *carts,
        *devices,
        *subscriptions,
        *deletions,
    ]


async def ensure_topics(settings: Settings, *, create: bool = True, timeout: float = 60.0) -> None:
    """Create the missing topics (unless ``create`` is false) and wait until all are visible.

    Raises ``BrokerUnavailable`` when Kafka cannot be reached, ``ConfigError`` when a topic is missing
    and may not be created, does not appear in the metadata within ``timeout`` seconds, or has another
    partition count than the internal topics and tables need (``FPI_TOPIC_PARTITIONS``).
    """
    specs = worker_topics(settings)
    created, counts = await _provision(settings, create, timeout)
    if created:
        log.info("created topics: %s", ", ".join(created))
    wrong = [f"{spec.name} has {counts[spec.name]}" for spec in specs
             if spec.exact and counts[spec.name] != spec.partitions]
    if wrong:
        raise ConfigError(
            f"topics with the wrong number of partitions (FPI_TOPIC_PARTITIONS={settings.topic_partitions}): "
            f"{', '.join(wrong)}. Internal topics and tables are co-partitioned; recreate these topics with "
            "that many partitions (after draining them) or set FPI_TOPIC_PARTITIONS to match.")


async def provision(settings: Settings, timeout: float = 60.0) -> list[str]:
    """Create the worker's missing topics (partitions, cleanup policy, retention) and wait until the
    metadata shows all of them; existing topics are left as they are. Returns the names created.

    Raises ``BrokerUnavailable`` when Kafka cannot be reached, ``ConfigError`` when a topic does not
    become visible within ``timeout`` seconds.
    """
    return (await _provision(settings, True, timeout))[0]


async def _provision(settings: Settings, create: bool, timeout: float) -> tuple[list[str], dict[str, int]]:
    """The topics created, and the partition count of every worker topic once all are visible."""
    from aiokafka.admin import AIOKafkaAdminClient, NewTopic  # type: ignore[import-untyped]

    specs = worker_topics(settings)
    admin = AIOKafkaAdminClient(**client_options(settings))
    await start_client(admin, settings.kafka_bootstrap)
    try:
        existing = set(await admin.list_topics())
        missing = [spec for spec in specs if spec.name not in existing]
        if missing and not create:
            names = ", ".join(spec.name for spec in missing)
            raise ConfigError(f"missing topics and FPI_CREATE_TOPICS=false: {names}; create them with "
                              "`freshpaint-iterable topics create` (the k8s topics Job) or set FPI_CREATE_TOPICS=true")
        if missing:
            await admin.create_topics([_new_topic(NewTopic, spec, settings) for spec in missing])
        counts = await _wait_visible(admin, [spec.name for spec in specs], timeout)
    finally:
        await admin.close()
    return [spec.name for spec in missing], counts


def _new_topic(new_topic: Any, spec: TopicSpec, settings: Settings) -> Any:
    return new_topic(spec.name, spec.partitions, settings.topic_replication_factor, topic_configs=spec.configs)


def create_commands(settings: Settings, kafka_topics: str = "kafka-topics.sh",
                    command_config: str | None = None) -> list[str]:
    """One ``kafka-topics.sh --create --if-not-exists`` shell line per worker topic, for platforms that
    provision topics with Kafka's own tools (quoted for a POSIX shell)."""
    import shlex

    extra = ["--command-config", command_config] if command_config else []
    lines = []
    for spec in worker_topics(settings):
        configs = [part for name, value in spec.configs.items() for part in ("--config", f"{name}={value}")]
        lines.append(shlex.join([kafka_topics, "--bootstrap-server", settings.kafka_bootstrap, *extra, "--create",
                                 "--if-not-exists", "--topic", spec.name, "--partitions", str(spec.partitions),
                                 "--replication-factor", str(settings.topic_replication_factor), *configs]))
    return lines


async def topic_configs(admin: Any, names: list[str]) -> dict[str, dict[str, str]]:
    """``cleanup.policy`` and ``retention.ms`` of each existing topic of ``names``."""
    from aiokafka.admin.config_resource import (  # type: ignore[import-untyped]
        ConfigResource,
        ConfigResourceType,
    )

    if not names:
        return {}
    wanted = ["cleanup.policy", "retention.ms"]
    responses = await admin.describe_configs(
        [ConfigResource(ConfigResourceType.TOPIC, name, dict.fromkeys(wanted)) for name in names])
    found: dict[str, dict[str, str]] = {}
    for response in responses:
        # DescribeConfigs resources: (error_code, error_message, type, name, [(key, value, ...), ...])
        for error_code, _message, _type, name, entries in response.resources:
            if error_code == 0:
                found[name] = {entry[0]: entry[1] for entry in entries}
    return found


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
