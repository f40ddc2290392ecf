"""Kafka clients for the commands and the worker's start-up: their options from ``Settings`` (brokers,
TLS, SASL) and their start, with the failures an operator must fix translated into our errors.

The border between aiokafka's connection errors and the error tree: a client that cannot start is
closed again (no "Unclosed AIOKafkaProducer" warnings) and ``BrokerUnavailable`` says what to check.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from typing import Any

from streams.errors import BrokerUnavailable, ConfigError
from streams.settings import Settings
from streams.wiring import aiokafka_security

__all__ = ["client_options", "start_client"]


def client_options(settings: Settings) -> dict[str, Any]:
    """aiokafka keyword arguments for the configured brokers and security protocol.

    Raises ``ConfigError`` when a TLS file cannot be used (missing, unreadable, not PEM, key not matching).
    """
    try:
        return {"bootstrap_servers": settings.kafka_bootstrap, **aiokafka_security(settings)}
    except (OSError, ssl.SSLError) as exc:
        files = ", ".join(f"FPI_KAFKA_SSL_{name.upper()}={getattr(settings, f'kafka_ssl_{name}')}"
                          for name in ("cafile", "certfile", "keyfile")
                          if getattr(settings, f"kafka_ssl_{name}") is not None)
        reason = exc.reason if isinstance(exc, ssl.SSLError) else None  # OpenSSL's code, without its file:line
        detail = reason or exc.strerror or type(exc).__name__
        raise ConfigError(f"cannot use the TLS files ({files or 'none set'}): {detail}; give PEM files "
                          "this user can read, and a key that matches the certificate") from None


async def start_client(client: Any, bootstrap: str, timeout: float = 60.0) -> None:
    """Start an aiokafka producer, consumer or admin client of the brokers ``bootstrap``.

    Raises ``BrokerUnavailable`` when no broker answers within ``timeout`` seconds (the client is
    closed again).
    """
    from aiokafka.errors import KafkaError  # type: ignore[import-untyped]

    try:
        await asyncio.wait_for(client.start(), timeout)
    except (KafkaError, OSError, TimeoutError) as exc:
        with contextlib.suppress(Exception):
            await (client.close() if hasattr(client, "close") else client.stop())
        raise BrokerUnavailable(
            f"cannot reach Kafka at {bootstrap} ({type(exc).__name__}): check "
            "FPI_KAFKA_BOOTSTRAP, that the brokers are up, and FPI_KAFKA_SECURITY_PROTOCOL / the SASL settings"
        ) from None
