"""``freshpaint-iterable topics``: the one list of the worker's topics (``streams.topics.worker_topics``)
for whoever provisions them: the k8s topics Job, compose and the runbook call it, so they agree with
what the worker reads and writes and with what ``check`` verifies.

    freshpaint-iterable topics list       name, partitions, cleanup.policy, retention of each topic
    freshpaint-iterable topics commands   the same as kafka-topics.sh --create --if-not-exists lines
    freshpaint-iterable topics create     create the missing ones with the worker's Kafka settings (TLS,
                                          SASL), then verify all as `check` does; exit 1 on a mismatch
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

import click

if TYPE_CHECKING:
    from streams.commands.check import Check
    from streams.settings import Settings

__all__ = ["topics"]


@click.group()
def topics() -> None:
    """The worker's topics: list them, print kafka-topics.sh commands, or create them.

    Every topic the worker reads or writes: the source and replay topics, the internal topics, the
    two table changelogs (compacted) and the dead-letter topic (kept 30 days). Names and partitions
    come from the FPI_* settings, as for the worker.
    """


@topics.command("list")
def list_() -> None:
    """Name, partitions, cleanup.policy and retention.ms of every topic (tab-separated)."""
    from streams.settings import load_settings
    from streams.topics import worker_topics

    settings = load_settings()
    click.echo("topic\tpartitions\tcleanup.policy\tretention.ms")
    for spec in worker_topics(settings):
        click.echo(f"{spec.name}\t{spec.partitions}\t{spec.cleanup_policy}\t{spec.retention_ms or 'default'}")


@topics.command("commands")
@click.option("--kafka-topics", default="kafka-topics.sh", show_default=True,
              help="The kafka-topics command, e.g. /opt/kafka/bin/kafka-topics.sh.")
@click.option("--command-config", default=None,
              help="A client.properties with the TLS / SASL settings, passed on as --command-config.")
def commands(kafka_topics: str, command_config: str | None) -> None:
    """Print one kafka-topics.sh --create --if-not-exists line per topic (a shell script)."""
    from streams.settings import load_settings
    from streams.topics import create_commands

    for line in create_commands(load_settings(), kafka_topics, command_config):
        click.echo(line)


@topics.command("create")
def create() -> None:
    """Create the missing topics with the worker's Kafka settings, then verify every topic.

    Existing topics are left as they are (idempotent). Exits 1 when a topic has another partition
    count than the tables need or another cleanup.policy, with the fix; 1 when Kafka cannot be reached.
    """
    from streams.settings import load_settings

    settings = load_settings()
    created, problems = asyncio.run(_create(settings))
    click.echo(f"created {len(created)} topics" + (f": {', '.join(created)}" if created else " (all existed)"))
    for problem in problems:
        click.echo(f"{problem.name}: {problem.detail}; fix: {problem.fix}", err=True)
    if problems:
        raise SystemExit(1)


async def _create(settings: Settings) -> tuple[list[str], list[Check]]:
    from streams.commands.check import kafka_checks
    from streams.topics import provision

    created = await provision(settings)
    return created, [check for check in await kafka_checks(settings) if check.status != "pass"]
