"""The Faust app: topics, tables and agents, wired from one ``Settings`` object.

The shell layer: the only module (with ``cli.py``) that imports faust and everything below it.
"""

from __future__ import annotations

from typing import Any

import faust

from streams.settings import Settings

__all__ = ["build_app"]


def _broker_credentials(settings: Settings) -> Any:
    if settings.kafka_security_protocol == "PLAINTEXT":
        return None
    ssl_context = None
    if settings.kafka_security_protocol in ("SSL", "SASL_SSL"):
        ssl_context = faust.auth.ssl.create_default_context(  # type: ignore[attr-defined]
            cafile=str(settings.kafka_ssl_cafile) if settings.kafka_ssl_cafile else None
        )
        if settings.kafka_ssl_certfile:
            ssl_context.load_cert_chain(
                str(settings.kafka_ssl_certfile),
                str(settings.kafka_ssl_keyfile) if settings.kafka_ssl_keyfile else None,
            )
    if settings.kafka_security_protocol == "SSL":
        return faust.SSLCredentials(ssl_context)
    password = settings.kafka_sasl_password.get_secret_value() if settings.kafka_sasl_password else ""
    if settings.kafka_sasl_mechanism in ("SCRAM-SHA-256", "SCRAM-SHA-512"):
        return faust.SASLCredentials(
            username=settings.kafka_sasl_username,
            password=password,
            mechanism=settings.kafka_sasl_mechanism,
            ssl_context=ssl_context,
        )
    return faust.SASLCredentials(
        username=settings.kafka_sasl_username, password=password, ssl_context=ssl_context
    )


def build_app(settings: Settings) -> faust.App:
    """Create the Faust app with our settings; topics and agents are attached below it."""
    app = faust.App(
        settings.app_id,
        broker=[f"kafka://{host.strip()}" for host in settings.kafka_bootstrap.split(",")],
        broker_credentials=_broker_credentials(settings),
        store=settings.store,
        datadir=str(settings.data_dir),
        topic_partitions=settings.topic_partitions,
        topic_replication_factor=settings.topic_replication_factor,
        table_standby_replicas=settings.table_standby_replicas,
        consumer_group_instance_id=settings.consumer_instance_id,
        processing_guarantee="at_least_once",
        consumer_auto_offset_reset="earliest",
        web_port=settings.web_port,
        web_bind=settings.web_bind,
        # /table and /router would serve identity data (PII) over HTTP.
        web_tables_enabled=False,
        web_router_enabled=False,
        autodiscover=False,
    )
    source = app.topic(settings.source_topic, key_type=bytes, value_type=bytes, value_serializer="raw",
                       key_serializer="raw")
    by_person = app.topic(settings.by_person_topic, key_type=bytes, value_type=bytes,
                          value_serializer="raw", key_serializer="raw",
                          partitions=settings.topic_partitions)

    @app.agent(source)
    async def resolve(stream: Any) -> None:
        async for event in stream.events():
            await by_person.send(key=event.key, value=event.value)

    return app
