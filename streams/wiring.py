"""Turns ``Settings`` into the objects the agents use: decoder, mapping config, sender and Kafka
credentials. The glue between settings and the layers below.
"""

from __future__ import annotations

import dataclasses
import os
import ssl
from collections.abc import Mapping
from typing import Any

from pydantic import SecretStr

from streams.codecs import EventDecoder
from streams.errors import ConfigError
from streams.iterable import SenderConfig
from streams.mapping import MappingConfig
from streams.projects import Routing, load_routing
from streams.settings import ITERABLE_BASE_URLS, Settings
from streams.transforms import Transformations, load_transformations

__all__ = [
    "aiokafka_security",
    "broker_credentials",
    "build_event_decoder",
    "build_mapping_config",
    "build_project_sender_configs",
    "build_routing",
    "build_sender_config",
    "project_keys",
]


def _ssl_context(settings: Settings) -> ssl.SSLContext:
    """The TLS context for the brokers: the configured CA, and a client certificate for mutual TLS."""
    context = ssl.create_default_context(
        cafile=str(settings.kafka_ssl_cafile) if settings.kafka_ssl_cafile else None
    )
    if settings.kafka_ssl_certfile:
        context.load_cert_chain(
            str(settings.kafka_ssl_certfile),
            str(settings.kafka_ssl_keyfile) if settings.kafka_ssl_keyfile else None,
        )
    return context


def broker_credentials(settings: Settings) -> Any:
    """faust credentials for TLS / SASL (PLAIN, SCRAM), or None for PLAINTEXT."""
    import faust

    protocol = settings.kafka_security_protocol
    if protocol == "PLAINTEXT":
        return None
    ssl_context = _ssl_context(settings) if protocol in ("SSL", "SASL_SSL") else None
    if protocol == "SSL":
        return faust.SSLCredentials(ssl_context)
    password = settings.kafka_sasl_password.get_secret_value() if settings.kafka_sasl_password else ""
    mechanism = settings.kafka_sasl_mechanism or "PLAIN"
    return faust.SASLCredentials(
        username=settings.kafka_sasl_username,
        password=password,
        mechanism=mechanism,
        ssl_context=ssl_context,
    )


def build_mapping_config(settings: Settings) -> MappingConfig:
    """The mapping core's view of the settings; transformation rules load (and fail) here."""
    transformations = (
        load_transformations(settings.transformations_file)
        if settings.transformations_file is not None
        else Transformations()
    )
    return dataclasses.replace(settings.mapping_config(), transformations=transformations)


def build_event_decoder(settings: Settings) -> EventDecoder:
    return EventDecoder(settings.avro_format)


def build_sender_config(settings: Settings, **overrides: Any) -> SenderConfig:
    limits_off = settings.iterable_rate_limits_off
    return SenderConfig.from_settings(settings, **({"limits": {}} if limits_off else {}), **overrides)


def build_routing(settings: Settings, mapping: MappingConfig, environ: Mapping[str, str] = os.environ, *,
                  need_keys: bool = True) -> Routing | None:
    """The routing file of ``FPI_PROJECTS_FILE`` over ``mapping`` (the FPI_* mapping), or ``None`` without one.

    Raises ``ConfigError`` (one line naming FPI_PROJECTS_FILE and what to fix) for a file that is not valid,
    or (``need_keys``: not for ``explain``, which calls no project) a project whose key variable is unset or empty.
    """
    path = settings.projects_file
    if path is None:
        return None
    try:
        routing = load_routing(path, mapping)
    except ConfigError as exc:
        raise ConfigError(f"FPI_PROJECTS_FILE={path}: {exc}; fix the routing file") from None
    for project in routing.projects if need_keys else ():
        if not environ.get(project.api_key_env):
            raise ConfigError(f"FPI_PROJECTS_FILE={path}: [projects.{project.name}] api_key_env = "
                              f"{project.api_key_env!r}, but that variable is unset or empty: set it (from a "
                              "secret) to the project's server-side key")
    return routing


def build_project_sender_configs(settings: Settings, routing: Routing, environ: Mapping[str, str] = os.environ,
                                 **overrides: Any) -> dict[str, SenderConfig]:
    """One ``SenderConfig`` per project of ``routing``: its own key (read from its variable) and URL."""
    base = build_sender_config(settings, **overrides)
    return {
        project.name: dataclasses.replace(
            base, api_key=SecretStr(environ.get(project.api_key_env, "")),
            base_url=project.base_url or ITERABLE_BASE_URLS[project.region])
        for project in routing.projects
    }


def project_keys(routing: Routing | None, environ: Mapping[str, str] = os.environ) -> tuple[str, ...]:
    """The projects' API keys (read from their variables), for the log filter that keeps them out of every record."""
    if routing is None:
        return ()
    return tuple(key for project in routing.projects if (key := environ.get(project.api_key_env)))


def aiokafka_security(settings: Settings) -> dict[str, Any]:
    """Keyword arguments that give an aiokafka client the worker's TLS / SASL settings."""
    protocol = settings.kafka_security_protocol
    if protocol == "PLAINTEXT":
        return {}
    options: dict[str, Any] = {"security_protocol": protocol}
    if protocol in ("SSL", "SASL_SSL"):
        options["ssl_context"] = _ssl_context(settings)
    if protocol.startswith("SASL"):
        options["sasl_mechanism"] = settings.kafka_sasl_mechanism or "PLAIN"
        options["sasl_plain_username"] = settings.kafka_sasl_username
        options["sasl_plain_password"] = (
            settings.kafka_sasl_password.get_secret_value() if settings.kafka_sasl_password else None
        )
    return options
