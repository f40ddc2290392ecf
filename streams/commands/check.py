"""``freshpaint-iterable check``: is this deployment ready to run? (Freshpaint's "the integration
status should now be active", for a service.)

Validates the settings (store scheme, URLs, SASL, TLS files), the Avro schemas and the transformation
rules, connects to Kafka and checks every topic the worker uses (existence, partition counts,
co-partitioning of internal and changelog topics, cleanup policy: compact for changelogs, delete for the
rest; a missing topic only warns when the worker creates it, FPI_CREATE_TOPICS=true), the schema
registry (with its credentials and CA) when one is configured, and the Iterable key with one
harmless authenticated read. Prints a table of what passed and failed with the fix for each; exits 1
if anything failed, 2 when a setting has an invalid value.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any, Literal

import click

__all__ = ["Check", "check", "kafka_checks", "run_checks"]

Status = Literal["pass", "warn", "fail"]


@dataclass(frozen=True, slots=True)
class Check:
    name: str
    status: Status
    detail: str
    fix: str = ""


async def run_checks(settings: Any) -> list[Check]:
    """Every check, in order; never raises for what it checks (a failure is a ``Check``)."""
    from streams.codecs import avro_dir, load_schemas
    from streams.errors import ConfigError
    from streams.wiring import build_mapping_config, build_project_sender_configs, build_routing

    problems = settings.problems()
    results = [Check("settings", "fail", problem, "see the README's Configuration table") for problem in problems]
    if not problems:
        results.append(Check("settings", "pass", f"project type {settings.mapping_config().project_type.value}, "
                                                 f"store {settings.store}, {settings.topic_partitions} partitions"))
    try:
        load_schemas()
        results.append(Check("schemas", "pass", f"Avro schemas load ({avro_dir()})"))
    except ConfigError as exc:
        results.append(Check("schemas", "fail", str(exc), "set FPI_AVRO_DIR to the .avsc folder, or unset it"))
    try:
        build_mapping_config(settings)
        where = settings.transformations_file or "none configured"
        results.append(Check("transformations", "pass", f"rules load ({where})"))
    except ConfigError as exc:
        results.append(Check("transformations", "fail", str(exc), "correct the rule named above"))
    routing = None
    if settings.projects_file is not None:
        try:
            routing = build_routing(settings, build_mapping_config(settings))
        except ConfigError as exc:
            results.append(Check("projects", "fail", str(exc), "correct the routing file or set the variable"))
    if routing is not None:
        results.append(Check("projects", "pass", f"{len(routing.projects)} projects load "
                                                 f"({', '.join(p.name for p in routing.projects)})"))
    results.extend(await kafka_checks(settings))
    if settings.schema_registry_url and not problems:
        results.append(await _registry_check(settings))
    if routing is not None:  # several projects: every project's key (FPI_PROJECTS_FILE)
        for name, config in build_project_sender_configs(settings, routing).items():
            results.append(await _key_check(settings, f"iterable project {name}", config.base_url, config.api_key,
                                            f"check the project's region / base_url in {settings.projects_file}",
                                            f"put the project's server-side key in {routing.get(name).api_key_env}"))
        return results
    results.append(await _iterable_check(settings))
    return results


async def kafka_checks(settings: Any) -> list[Check]:
    """Connection, then one row per worker topic (existence, partitions, cleanup policy)."""
    from aiokafka.admin import AIOKafkaAdminClient  # type: ignore[import-untyped]

    from streams.brokers import client_options, start_client
    from streams.errors import StreamsError

    fix = "check FPI_KAFKA_BOOTSTRAP and the FPI_KAFKA_SECURITY_* / SASL settings"
    try:
        admin = AIOKafkaAdminClient(request_timeout_ms=10_000, **client_options(settings))
        await start_client(admin, settings.kafka_bootstrap, timeout=20)
    except StreamsError as exc:  # the finding, whatever went wrong
        return [Check("kafka", "fail", str(exc), fix)]
    try:
        from streams.topics import topic_configs, worker_topics

        results = [Check("kafka", "pass", f"connected to {settings.kafka_bootstrap}")]
        partitions = await _partitions(admin)
        configs = await topic_configs(admin, [spec.name for spec in worker_topics(settings)
                                              if spec.name in partitions])
        results.extend(_topic_checks(settings, partitions, configs))
        return results
    finally:
        await admin.close()


async def _partitions(admin: Any) -> dict[str, int]:
    """Partition count of every topic of the cluster."""
    names = list(await admin.list_topics())
    return {d["topic"]: len(d["partitions"]) for d in await admin.describe_topics(names)} if names else {}


def _topic_checks(settings: Any, partitions: dict[str, int], configs: dict[str, dict[str, str]]) -> list[Check]:
    """One row per topic the worker reads or writes (``streams.topics.worker_topics``)."""
    from streams.topics import worker_topics

    results = []
    for spec in worker_topics(settings):
        name, count = f"topic {spec.name}", partitions.get(spec.name)
        if count is None and settings.create_topics:
            results.append(Check(name, "warn", "missing; the worker creates it on start (FPI_CREATE_TOPICS=true)",
                                 "nothing to do, unless topic creation is not allowed here: then pre-create "
                                 "it (freshpaint-iterable topics create) and set FPI_CREATE_TOPICS=false"))
        elif count is None:
            results.append(Check(name, "fail", "missing, and FPI_CREATE_TOPICS=false",
                                 "create it: freshpaint-iterable topics create (or topics commands), correct "
                                 "the FPI_*_TOPIC / FPI_APP_ID name, or set FPI_CREATE_TOPICS=true"))
        elif spec.exact and count != spec.partitions:
            results.append(Check(name, "fail", f"{count} partitions, expected {spec.partitions} (co-partitioning)",
                                 "recreate it with FPI_TOPIC_PARTITIONS partitions, or set "
                                 "FPI_TOPIC_PARTITIONS to match"))
        elif (policy := configs.get(spec.name, {}).get("cleanup.policy")) != spec.cleanup_policy:
            why = ("a changelog deleted by time loses table state on recovery" if spec.compacted
                   else "compaction drops records that share a key")
            results.append(Check(name, "fail", f"cleanup.policy={policy}, expected {spec.cleanup_policy} ({why})",
                                 f"kafka-configs.sh --alter --entity-type topics --entity-name {spec.name} "
                                 f"--add-config cleanup.policy={spec.cleanup_policy}"))
        else:
            results.append(Check(name, "pass", f"{count} partitions, cleanup.policy={policy}"))
    return results


async def _registry_check(settings: Any) -> Check:
    from streams.codecs import SchemaRegistryClient
    from streams.errors import StreamsError
    from streams.settings import redact_url

    try:
        async with SchemaRegistryClient.connect(settings) as registry:
            subjects = await registry.subjects()
    except StreamsError as exc:  # the message names the URL (redacted) and the settings to check
        return Check("schema registry", "fail", str(exc), "see the detail")
    return Check("schema registry", "pass", f"{redact_url(settings.schema_registry_url)} answers "
                                            f"({len(subjects)} subjects)")


async def _iterable_check(settings: Any) -> Check:
    if settings.iterable_api_key is None:
        return Check("iterable", "fail", "no API key configured",
                     "set FPI_ITERABLE_API_KEY (a server-side key) from a secret")
    return await _key_check(settings, "iterable", settings.iterable_url, settings.iterable_api_key,
                            "check FPI_ITERABLE_REGION / FPI_ITERABLE_BASE_URL and egress to Iterable",
                            "create a server-side key in Iterable and update the secret")


async def _key_check(settings: Any, name: str, url: str, key: Any, fix: str, key_fix: str) -> Check:
    """One harmless authenticated read at ``url`` with ``key``: does Iterable accept it?"""
    from streams.errors import BadApiKey, DeliveryError
    from streams.iterable.client import IterableClient, new_http_client
    from streams.settings import redact_url

    verify = not settings.iterable_insecure_skip_tls_verify
    shown = redact_url(url)
    async with new_http_client(request_timeout=15, verify=verify) as http:
        client = IterableClient(http, url, key)
        try:
            await client.check_key()
        except BadApiKey:
            return Check(name, "fail", f"{shown} rejected the API key (401)", key_fix)
        except DeliveryError as exc:
            return Check(name, "fail", f"{shown}: {exc.reason.value} ({exc.status})", fix)
        except ValueError:  # aiohttp's InvalidURL; the settings row names the variable
            return Check(name, "fail", f"{shown} is not a URL", fix)
    return Check(name, "pass", f"{shown} accepted the key")


@click.command()
def check() -> None:
    """Check settings, transformations, Kafka topics, the schema registry and the Iterable key.

    Prints a table with a fix for each failure and exits 1 if any check failed.
    """
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    from streams.settings import Settings

    settings = Settings.load()
    results = asyncio.run(run_checks(settings))
    table = Table(title="freshpaint-iterable check", title_justify="left")
    for column in ("check", "status", "detail", "fix"):
        table.add_column(column)
    colours = {"pass": "green", "warn": "yellow", "fail": "red"}
    for result in results:
        table.add_row(escape(result.name), f"[{colours[result.status]}]{result.status}[/]", escape(result.detail),
                      escape(result.fix))
    Console(width=200).print(table)
    if any(result.status == "fail" for result in results):
        raise SystemExit(1)
