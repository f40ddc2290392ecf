"""``freshpaint-iterable check``: is this deployment ready to run? (Freshpaint's "the integration
status should now be active", for a service.)

Validates the settings and the transformation rules, connects to Kafka and checks the topics
(existence, partition counts, co-partitioning of internal and changelog topics), the schema
registry when one is configured, and the Iterable key with one harmless authenticated read. Prints
a table of what passed and failed with the fix for each; exits 1 if anything failed.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any, Literal

import click

__all__ = ["Check", "check", "run_checks"]

Status = Literal["pass", "warn", "fail"]


@dataclass(frozen=True, slots=True)
class Check:
    name: str
    status: Status
    detail: str
    fix: str = ""


async def run_checks(settings: Any) -> list[Check]:
    """Every check, in order; never raises for what it checks (a failure is a ``Check``)."""
    from streams.errors import ConfigError
    from streams.wiring import build_mapping_config

    results = [Check("settings", "pass", f"project type {settings.project_type.value}, "
                                         f"store {settings.store}, {settings.topic_partitions} partitions")]
    try:
        build_mapping_config(settings)
        where = settings.transformations_file or "none configured"
        results.append(Check("transformations", "pass", f"rules load ({where})"))
    except ConfigError as exc:
        results.append(Check("transformations", "fail", str(exc), "correct the rule named above"))
    results.extend(await _kafka_checks(settings))
    if settings.schema_registry_url:
        results.append(await _registry_check(settings.schema_registry_url))
    results.append(await _iterable_check(settings))
    return results


async def _kafka_checks(settings: Any) -> list[Check]:
    from aiokafka.admin import AIOKafkaAdminClient  # type: ignore[import-untyped]

    from streams.wiring import aiokafka_security

    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap, request_timeout_ms=10_000,
                                **aiokafka_security(settings))
    try:
        await asyncio.wait_for(admin.start(), timeout=20)
    except Exception as exc:  # any connection failure is the finding, whatever its class
        return [Check("kafka", "fail", f"cannot connect to {settings.kafka_bootstrap}: {type(exc).__name__}",
                      "check FPI_KAFKA_BOOTSTRAP and the FPI_KAFKA_SECURITY_* / SASL settings")]
    try:
        names = set(await admin.list_topics())
        results = [Check("kafka", "pass", f"connected to {settings.kafka_bootstrap}")]
        wanted = {
            settings.by_person_topic: "internal",
            settings.requests_topic: "internal",
            settings.dead_letter_topic: "internal",
            f"{settings.app_id}-by-device": "internal",
            f"{settings.app_id}-aliases-changelog": "changelog",
            f"{settings.app_id}-identities-changelog": "changelog",
        }
        present = [name for name in (settings.source_topic, *wanted) if name in names]
        partitions: dict[str, int] = {}
        if present:
            for description in await admin.describe_topics(present):
                partitions[description["topic"]] = len(description["partitions"])
        if settings.source_topic in partitions:
            results.append(Check(f"topic {settings.source_topic}", "pass",
                                 f"{partitions[settings.source_topic]} partitions (source)"))
        else:
            results.append(Check(f"topic {settings.source_topic}", "fail", "source topic does not exist",
                                 "create it, or set FPI_SOURCE_TOPIC to the topic your producers write"))
        for name, kind in wanted.items():
            count = partitions.get(name)
            if count is None:
                results.append(Check(f"topic {name}", "warn", f"{kind} topic missing",
                                     "the worker creates it on start; pre-create it where topic creation "
                                     "is not allowed (k8s/base topics job)"))
            elif count != settings.topic_partitions:
                results.append(Check(f"topic {name}", "fail",
                                     f"{count} partitions, expected {settings.topic_partitions} "
                                     "(co-partitioning)",
                                     "recreate it with FPI_TOPIC_PARTITIONS partitions, or set "
                                     "FPI_TOPIC_PARTITIONS to match"))
            else:
                results.append(Check(f"topic {name}", "pass", f"{count} partitions ({kind})"))
        return results
    finally:
        await admin.close()


async def _registry_check(url: str) -> Check:
    import httpx

    try:
        async with httpx.AsyncClient(timeout=10) as http:
            response = await http.get(f"{url.rstrip('/')}/subjects")
    except httpx.HTTPError as exc:
        return Check("schema registry", "fail", f"cannot reach {url}: {type(exc).__name__}",
                     "check FPI_SCHEMA_REGISTRY_URL (Confluent-compatible API root)")
    if response.status_code == 200:
        return Check("schema registry", "pass", f"{url} answers ({len(response.json())} subjects)")
    return Check("schema registry", "fail", f"{url}/subjects answered HTTP {response.status_code}",
                 "point FPI_SCHEMA_REGISTRY_URL at the registry's Confluent-compatible API root")


async def _iterable_check(settings: Any) -> Check:
    from streams.errors import BadApiKey, DeliveryError
    from streams.iterable.client import IterableClient, new_http_client

    if settings.iterable_api_key is None:
        return Check("iterable", "fail", "no API key configured",
                     "set FPI_ITERABLE_API_KEY (a server-side key) from a secret")
    verify = not settings.iterable_insecure_skip_tls_verify
    async with new_http_client(request_timeout=15, verify=verify) as http:
        client = IterableClient(http, settings.iterable_url, settings.iterable_api_key)
        try:
            await client.check_key()
        except BadApiKey:
            return Check("iterable", "fail", f"{settings.iterable_url} rejected the API key (401)",
                         "create a server-side key in Iterable and update the secret")
        except DeliveryError as exc:
            return Check("iterable", "fail", f"{settings.iterable_url}: {exc.reason.value} ({exc.status})",
                         "check FPI_ITERABLE_REGION / FPI_ITERABLE_BASE_URL and egress to Iterable")
    return Check("iterable", "pass", f"{settings.iterable_url} accepted the key")


@click.command()
def check() -> None:
    """Check settings, transformations, Kafka topics, the schema registry and the Iterable key.

    Prints a table with a fix for each failure and exits 1 if any check failed.
    """
    from pydantic import ValidationError
    from rich.console import Console
    from rich.table import Table

    from streams.settings import Settings

    try:
        settings = Settings()
    except ValidationError as exc:
        raise click.ClickException(f"invalid settings:\n{exc}") from exc
    results = asyncio.run(run_checks(settings))
    table = Table(title="freshpaint-iterable check", title_justify="left")
    for column in ("check", "status", "detail", "fix"):
        table.add_column(column)
    colours = {"pass": "green", "warn": "yellow", "fail": "red"}
    for result in results:
        table.add_row(result.name, f"[{colours[result.status]}]{result.status}[/]", result.detail, result.fix)
    Console(width=200).print(table)
    if any(result.status == "fail" for result in results):
        raise SystemExit(1)
