"""Turns ``Settings`` into the objects the agents use: decoder, mapping config, sender and Kafka
credentials. The glue between settings and the layers below.
"""

from __future__ import annotations

import ssl
from dataclasses import fields
from typing import Any

from streams.codecs import EventDecoder
from streams.iterable import SenderConfig
from streams.mapping import MappingConfig
from streams.settings import Settings
from streams.transforms import Transformations, load_transformations

__all__ = [
    "aiokafka_security",
    "broker_credentials",
    "build_event_decoder",
    "build_mapping_config",
    "build_sender_config",
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
    """The mapping core's view of the settings; transformation rules load (and fail) here.

    Every other ``MappingConfig`` field is the setting of the same name (a test holds the two together),
    so a new mapping option is declared in the core and in ``Settings`` and copied by nothing here.
    """
    transformations = (
        load_transformations(settings.transformations_file)
        if settings.transformations_file is not None
        else Transformations()
    )
    same_name = {field.name: getattr(settings, field.name) for field in fields(MappingConfig)
                 if field.name not in ("transformations", "date_fields")}
    return MappingConfig(**same_name, date_fields=frozenset(settings.date_fields), transformations=transformations)


def build_event_decoder(settings: Settings) -> EventDecoder:
    return EventDecoder(settings.avro_format)


def build_sender_config(settings: Settings, **overrides: Any) -> SenderConfig:
    limits_off = settings.iterable_rate_limits_off
    return SenderConfig.from_settings(settings, **({"limits": {}} if limits_off else {}), **overrides)


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
