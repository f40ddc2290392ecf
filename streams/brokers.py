"""Kafka clients for the commands and the worker's start-up: their options from ``Settings`` (brokers,
TLS, SASL) and their start, with the failures an operator must fix translated into our errors.

The border between aiokafka's connection errors and the error tree: a client that cannot start is
closed again (no "Unclosed AIOKafkaProducer" warnings) and ``BrokerUnavailable`` says what to check.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from collections.abc import Mapping
from typing import Any

from streams.errors import BrokerUnavailable, ConfigError, TopicMissing
from streams.settings import Settings
from streams.wiring import aiokafka_security

__all__ = ["client_options", "partitions_of", "start_client"]


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
    closed again), saying what went wrong where it can tell: refused SASL credentials, an untrusted
    broker certificate, a TLS listener asked in plaintext (or the reverse), a client certificate
    the listener requires.
    """
    from aiokafka.errors import KafkaError  # type: ignore[import-untyped]

    try:
        await asyncio.wait_for(client.start(), timeout)
    except (KafkaError, OSError, TimeoutError) as exc:
        with contextlib.suppress(Exception):
            await (client.close() if hasattr(client, "close") else client.stop())
        finding = None
        with contextlib.suppress(Exception):  # a diagnosis that fails leaves the general line
            finding = await _diagnose(client)
        raise BrokerUnavailable(finding or (
            f"cannot reach Kafka at {bootstrap} ({type(exc).__name__}): check "
            "FPI_KAFKA_BOOTSTRAP, that the brokers are up, and FPI_KAFKA_SECURITY_PROTOCOL / the SASL settings"
        )) from None


async def partitions_of(options: Mapping[str, Any], topic: str) -> list[int]:
    """The partition numbers of ``topic``. Raises ``TopicMissing`` when it does not exist (checked
    against the topic list first: a metadata request for one topic would create it on brokers with
    auto-creation on), ``BrokerUnavailable`` when Kafka cannot be reached."""
    from aiokafka.admin import AIOKafkaAdminClient  # type: ignore[import-untyped]

    admin = AIOKafkaAdminClient(**options)
    await start_client(admin, options["bootstrap_servers"])
    try:
        if topic not in await admin.list_topics():
            raise TopicMissing(f"topic {topic!r} does not exist")
        described = await admin.describe_topics([topic])
    finally:
        await admin.close()
    return sorted(p["partition"] for d in described if d["topic"] == topic for p in d["partitions"])


async def _diagnose(client: Any) -> str | None:
    """One line naming the cause and the FPI_ setting to change, or None when no broker tells us more.

    aiokafka logs each broker's failure and raises only "Unable to bootstrap", so this connects once
    more to each bootstrap broker with the client's own options and reads the real error.
    """
    from aiokafka.conn import collect_hosts, create_conn  # type: ignore[import-untyped]
    from aiokafka.errors import (
        KafkaConnectionError,
        SaslAuthenticationFailed,
        UnsupportedSaslMechanismError,
    )

    # aiokafka 0.14 keeps the connection options on the inner AIOKafkaClient (producer: .client).
    inner = getattr(client, "_client", None) or getattr(client, "client", None)
    if inner is None:
        return None
    protocol: str = inner._security_protocol
    mechanism: str | None = inner._sasl_mechanism
    for host, port, _ in collect_hosts(inner._bootstrap_servers):
        where = f"Kafka at {host}:{port}"
        try:
            conn = await asyncio.wait_for(create_conn(
                host, port, request_timeout_ms=10_000, ssl_context=inner._ssl_context, security_protocol=protocol,
                sasl_mechanism=mechanism, sasl_plain_username=inner._sasl_plain_username,
                sasl_plain_password=inner._sasl_plain_password), 15)
        except SaslAuthenticationFailed:
            return (f"{where} refused the SASL credentials of user {inner._sasl_plain_username!r} ({mechanism}): "
                    "check FPI_KAFKA_SASL_USERNAME and FPI_KAFKA_SASL_PASSWORD, and that FPI_KAFKA_SASL_MECHANISM "
                    "is the mechanism the user was created for")
        except UnsupportedSaslMechanismError:
            return (f"{where} does not offer SASL mechanism {mechanism}: set FPI_KAFKA_SASL_MECHANISM to one the "
                    "listener enables (PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512)")
        except ssl.SSLCertVerificationError as exc:
            return (f"{where} presented a TLS certificate this client does not trust ({exc.verify_message}): set "
                    "FPI_KAFKA_SSL_CAFILE to the CA bundle that signed the brokers' certificates")
        except (KafkaConnectionError, ssl.SSLError, ConnectionError, TimeoutError) as exc:
            finding = await _tls_finding(where, host, port, protocol, exc)
            if finding:
                return finding
        except OSError:
            continue  # refused or unknown host: the general line says to check FPI_KAFKA_BOOTSTRAP
        else:
            conn.close()
    return None


async def _tls_finding(where: str, host: str, port: int, protocol: str, error: BaseException) -> str | None:
    """What a closed connection meant: does the listener speak TLS, and does it want our certificate?"""
    tls_client = protocol in ("SSL", "SASL_SSL")
    answer = await _tls_probe(host, port)
    if answer == "tls" and not tls_client:
        return (f"{where} speaks TLS, but FPI_KAFKA_SECURITY_PROTOCOL={protocol}: set it to "
                f"{'SASL_SSL' if protocol == 'SASL_PLAINTEXT' else 'SSL or SASL_SSL'} and FPI_KAFKA_SSL_CAFILE to "
                "the brokers' CA bundle")
    if answer == "not tls" and tls_client:
        return (f"{where} does not speak TLS, but FPI_KAFKA_SECURITY_PROTOCOL={protocol}: use the brokers' TLS "
                f"port in FPI_KAFKA_BOOTSTRAP, or set FPI_KAFKA_SECURITY_PROTOCOL="
                f"{'SASL_PLAINTEXT' if protocol == 'SASL_SSL' else 'PLAINTEXT'}")
    if answer == "certificate required":
        return (f"{where} requires a client certificate (mutual TLS): set FPI_KAFKA_SSL_CERTFILE and "
                "FPI_KAFKA_SSL_KEYFILE to a certificate signed by a CA the brokers trust")
    if isinstance(error, ssl.SSLError) and error.reason:
        return (f"{where}: the TLS handshake failed ({error.reason}): check FPI_KAFKA_SSL_CAFILE, "
                "FPI_KAFKA_SSL_CERTFILE / FPI_KAFKA_SSL_KEYFILE and FPI_KAFKA_SECURITY_PROTOCOL")
    return None


async def _tls_probe(host: str, port: int) -> str | None:
    """"tls", "not tls", "certificate required" (a TLS listener that wants a client certificate), or
    None when the probe cannot tell. Verifies nothing: it only asks which protocol the port speaks."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    try:
        reader, writer = await asyncio.wait_for(
            asyncio.open_connection(host, port, ssl=context, server_hostname=host), 10)
    except (ssl.SSLError, ConnectionError, TimeoutError, asyncio.IncompleteReadError):
        return "not tls"
    except OSError:
        return None
    try:
        # TLS 1.3 servers check the client certificate after the handshake and answer with an alert.
        await asyncio.wait_for(reader.read(1), 2)
    except ssl.SSLError as exc:
        # OpenSSL names the alert TLSV13_ALERT_CERTIFICATE_REQUIRED; Java brokers send bad_certificate.
        return "certificate required" if "CERTIFICATE" in str(exc.reason) else "tls"
    except (ConnectionError, TimeoutError):
        pass
    finally:
        writer.close()
        with contextlib.suppress(Exception):
            await writer.wait_closed()
    return "tls"
