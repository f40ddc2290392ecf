"""One typed, frozen settings object, loaded from ``FPI_*`` environment variables.

Every field has a default that works locally against ``dev/kafka/broker.sh`` and the emulator.
Secrets are ``SecretStr`` and never appear in ``as_dict()``, logs or topics; credentials inside URLs
are masked wherever a URL is shown (``redact_url``). The shell loads ``Settings`` once
(``load_settings``) and hands each layer only the fields it uses. An invalid value fails the load as
one ``ConfigError`` line that names its ``FPI_`` variable.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import os
import re
import typing
from collections.abc import Mapping
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import urlsplit

from pydantic import Field, SecretStr, ValidationError, create_model, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict, SettingsError

from streams.errors import ConfigError
from streams.identity import HoldRule
from streams.mapping import MappingConfig

__all__ = ["ITERABLE_BASE_URLS", "Settings", "load_settings", "redact_url"]

STORE_SCHEMES = ("memory", "rocksdb")
_SECRETS = frozenset({"iterable_api_key", "kafka_sasl_password", "schema_registry_password",
                      "schema_registry_user_info", "schema_registry_token"})
_OPTIONAL = ("kafka_ssl_cafile", "kafka_ssl_certfile", "kafka_ssl_keyfile", "schema_registry_cafile",
             "schema_registry_username", "transformations_file", "avro_dir", "hold_anonymous_seconds",
             "projects_file", "deletion_topic")
_USERINFO = re.compile(r"(?<=://)[^/@\s]+@")

ITERABLE_BASE_URLS = {
    "us": "https://api.iterable.com",
    "eu": "https://api.eu.iterable.com",
}


MAPPING_OPTIONS = tuple(option.name for option in dataclasses.fields(MappingConfig) if option.name != "transformations")
"""The ``MappingConfig`` options that are settings of the same name: all but the rules themselves."""


def _mapping_fields() -> dict[str, Any]:
    """A pydantic field per mapping option, as ``MappingConfig`` declares it: type, default and bounds."""
    hints = typing.get_type_hints(MappingConfig)
    found: dict[str, Any] = {}
    for option in dataclasses.fields(MappingConfig):
        if option.name in MAPPING_OPTIONS:
            default: dict[str, Any] = (
                {"default": option.default} if option.default is not dataclasses.MISSING
                else {"default_factory": option.default_factory})
            found[option.name] = (hints[option.name], Field(**default, **dict(option.metadata)))
    return found


if TYPE_CHECKING:
    _MappingSettings = BaseSettings
else:
    _MappingSettings = create_model("_MappingSettings", __base__=BaseSettings, **_mapping_fields())


class Settings(_MappingSettings):
    """Processor settings. Each field's environment variable is ``FPI_`` + its upper-cased name.

    The mapping options (``MAPPING_OPTIONS``) are fields too, but declared in ``MappingConfig``: the type
    checker does not see them here, so code reads them through ``mapping_config()``.
    """

    model_config = SettingsConfigDict(env_prefix="FPI_", frozen=True, extra="ignore")

    # --- Kafka -------------------------------------------------------------------------------
    app_id: str = "freshpaint-iterable"
    """FPI_APP_ID: Faust app id; also the consumer group and the prefix of changelog topics."""
    kafka_bootstrap: str = "127.0.0.1:19092"
    """FPI_KAFKA_BOOTSTRAP: comma-separated host:port list."""
    kafka_security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = "PLAINTEXT"
    """FPI_KAFKA_SECURITY_PROTOCOL."""
    kafka_sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] | None = None
    """FPI_KAFKA_SASL_MECHANISM."""
    kafka_sasl_username: str | None = None
    """FPI_KAFKA_SASL_USERNAME."""
    kafka_sasl_password: SecretStr | None = None
    """FPI_KAFKA_SASL_PASSWORD."""
    kafka_ssl_cafile: Path | None = None
    """FPI_KAFKA_SSL_CAFILE: CA bundle to verify the brokers."""
    kafka_ssl_certfile: Path | None = None
    """FPI_KAFKA_SSL_CERTFILE: client certificate for mutual TLS."""
    kafka_ssl_keyfile: Path | None = None
    """FPI_KAFKA_SSL_KEYFILE: client key for mutual TLS."""

    source_topic: str = "freshpaint.events"
    """FPI_SOURCE_TOPIC: Avro Freshpaint events, any key."""
    replay_topic: str = "freshpaint.replay"
    """FPI_REPLAY_TOPIC: where ``replay`` and ``dead-letters redrive`` put records for the pipeline."""
    by_person_topic: str = "freshpaint.by-person"
    """FPI_BY_PERSON_TOPIC: internal, keyed by person key."""
    requests_topic: str = "iterable.requests"
    """FPI_REQUESTS_TOPIC: internal Iterable requests, keyed by person key."""
    dead_letter_topic: str = "iterable.dead-letter"
    """FPI_DEAD_LETTER_TOPIC: everything that will not be sent, with its reason."""
    deletion_topic: str | None = None
    """FPI_DELETION_TOPIC: off by default. A topic where the platform's privacy tooling produces deletion
    requests (JSON ``{"email": ...}`` or ``{"userId": ...}``, optional ``"action": "forget" | "unforget"``);
    the worker does for each what ``freshpaint-iterable forget`` does (``streams.deletions``)."""
    topic_partitions: int = Field(default=4, ge=1)
    """FPI_TOPIC_PARTITIONS: partitions of internal and changelog topics (co-partitioned)."""
    topic_replication_factor: int = Field(default=1, ge=1)
    """FPI_TOPIC_REPLICATION_FACTOR: use 3 in production."""
    max_record_bytes: int = Field(default=900_000, ge=10_000)
    """FPI_MAX_RECORD_BYTES: larger events become dead letters (Kafka's default message limit is 1 MB)."""
    create_topics: bool = True
    """FPI_CREATE_TOPICS: create missing topics at start; false where the platform creates them."""
    source_keyed_by_device: bool = False
    """FPI_SOURCE_KEYED_BY_DEVICE: skip the first repartition hop when the source is keyed by device id."""
    store: str = "memory://"
    """FPI_STORE: ``memory://`` (local, tests) or ``rocksdb://`` (production, needs the rocksdb extra)."""
    table_standby_replicas: int = Field(default=1, ge=0)
    """FPI_TABLE_STANDBY_REPLICAS."""
    data_dir: Path = Path(".faust-data")
    """FPI_DATA_DIR: where Faust keeps RocksDB tables."""
    consumer_instance_id: str | None = None
    """FPI_CONSUMER_INSTANCE_ID: static group membership (e.g. the StatefulSet pod name)."""
    kafka_session_timeout_seconds: float = Field(default=60.0, ge=6.0)
    """FPI_KAFKA_SESSION_TIMEOUT_SECONDS: how long the group waits for a silent worker before rebalancing."""
    web_port: int = 6066
    """FPI_WEB_PORT: health, readiness and metrics endpoints."""
    web_bind: str = "0.0.0.0"
    """FPI_WEB_BIND."""

    # --- Avro --------------------------------------------------------------------------------
    avro_format: Literal["confluent", "schemaless"] = "confluent"
    """FPI_AVRO_FORMAT: Confluent wire format (magic byte, schema id) or schemaless Avro."""
    schema_registry_url: str | None = None
    """FPI_SCHEMA_REGISTRY_URL: Confluent-compatible registry; without it the bundled schemas are used."""
    schema_registry_username: str | None = None
    """FPI_SCHEMA_REGISTRY_USERNAME: basic auth user (with FPI_SCHEMA_REGISTRY_PASSWORD), e.g. an API key."""
    schema_registry_password: SecretStr | None = None
    """FPI_SCHEMA_REGISTRY_PASSWORD: basic auth password, e.g. an API secret."""
    schema_registry_user_info: SecretStr | None = None
    """FPI_SCHEMA_REGISTRY_USER_INFO: ``user:password`` in one value, as Confluent clients' basic.auth.user.info."""
    schema_registry_token: SecretStr | None = None
    """FPI_SCHEMA_REGISTRY_TOKEN: bearer token (``Authorization: Bearer``), instead of basic auth."""
    schema_registry_cafile: Path | None = None
    """FPI_SCHEMA_REGISTRY_CAFILE: CA bundle to verify an https registry (default: the system's CAs)."""
    avro_dir: Path | None = None
    """FPI_AVRO_DIR: folder of the ``.avsc`` schemas; default the ones bundled with the package (read by
    ``streams.codecs`` straight from the environment, so it also applies before settings load)."""

    # --- Iterable ----------------------------------------------------------------------------
    iterable_api_key: SecretStr | None = None
    """FPI_ITERABLE_API_KEY: server-side key. Without it the local run starts the emulator."""
    iterable_region: Literal["us", "eu"] = "us"
    """FPI_ITERABLE_REGION."""
    iterable_base_url: str | None = None
    """FPI_ITERABLE_BASE_URL: overrides the region (the emulator in dev and tests)."""
    iterable_insecure_skip_tls_verify: bool = False
    """FPI_ITERABLE_INSECURE_SKIP_TLS_VERIFY: only for test rigs; logged loudly at start-up."""
    iterable_rate_limits_off: bool = False
    """FPI_ITERABLE_RATE_LIMITS_OFF: no client-side throttling (benchmarks against the emulator)."""
    projects_file: Path | None = None
    """FPI_PROJECTS_FILE: TOML routing file for several Iterable projects (``streams.projects``): each event's
    token (or a property) picks the project, with its own key variable, region, type, mapping and rules.
    Unset: one project, FPI_ITERABLE_API_KEY."""
    project_stall_seconds: float = Field(default=60.0, gt=0)
    """FPI_PROJECT_STALL_SECONDS: with a routing file, how long a project's undelivered requests may hold a
    delivery round back before, if another project's key check passes meanwhile, they are dead-lettered so
    the other projects' events go on."""
    source_reader: Literal["aiokafka", "faust"] = "aiokafka"
    """FPI_SOURCE_READER: how the first stage reads the source and replay topics. ``aiokafka`` (a plain consumer in
    consumer group ``<FPI_APP_ID>-source``, a whole fetch at a time; ``streams.source_reader``) or ``faust`` (an
    agent in faust's group, the behaviour before 2026-12: 23-53 µs more CPU per event, kept for comparison).
    Not used with FPI_SOURCE_KEYED_BY_DEVICE, whose first stage keeps a table and stays in faust."""
    stage_batch_items: int = Field(default=2000, ge=1)
    """FPI_STAGE_BATCH_ITEMS: source records the first stage takes at a time."""
    stage_batch_seconds: float = Field(default=0.02, gt=0)
    """FPI_STAGE_BATCH_SECONDS: how long the first stage gathers a batch before handling it (with the aiokafka
    reader: once a fetch's first records arrived, how long it waits for more while it has fewer than
    FPI_STAGE_BATCH_ITEMS). Under backlog a fetch fills at once and the window does not matter; under light load
    a longer one means fuller frames (less CPU per event) and more latency: at 500 events/s, 0.1 s read p99 0.21 s
    and 0.87 ms of CPU per event, 0.02 s read p99 0.13 s and 1.09 ms (bench/RESULTS.md, 2026-12-01)."""
    source_backlog_records: int = Field(default=20_000, ge=0)
    """FPI_SOURCE_BACKLOG_RECORDS: back-pressure. The first stage (the aiokafka reader) stops reading the source
    while this worker's partitions of the internal topics (by device, by person, requests) hold more records, all
    together, than this that their stages have not processed (frames counted at the size of the topic's recent
    frames); the backlog then waits in the source topic, where the lag alert and the autoscaler see it. The
    sender's three deliveries in flight hold up to 15,000 requests (FPI_SEND_BATCH_ITEMS), so less would leave it
    waiting. 0: never stop."""
    frame_take_seconds: float = Field(default=0.01, gt=0)
    """FPI_FRAME_TAKE_SECONDS: how long the agents of the internal topics (resolve, apply) wait for more frames.
    A frame is already a batch (an upstream take for one partition), so a long wait only adds latency: under
    light load a frame is handled at once, under backlog the frames queued meanwhile fill the take."""
    consumer_fetch_bytes: int = Field(default=4 * 1024 * 1024, ge=64 * 1024)
    """FPI_CONSUMER_FETCH_BYTES: most bytes fetched per partition per request. Kafka's 1 MiB default holds about
    one frame of an internal topic and ~1,000 source events, and fetch round trips then cap a worker near 3,000
    events/s (measured with bench/faust_floor.py); 4 MiB doubled that."""
    producer_linger_ms: int = Field(default=5, ge=0)
    """FPI_PRODUCER_LINGER_MS: Kafka producer linger; a few ms turns one request per message into batches."""
    send_batch_items: int = Field(default=5000, ge=1, le=50_000)
    """FPI_SEND_BATCH_ITEMS: most requests handed to the sender in one delivery round; it folds them into
    bulk calls of up to 1,000 items, so rounds of several thousand keep those calls full."""
    send_linger_seconds: float = Field(default=0.01, gt=0)
    """FPI_SEND_LINGER_SECONDS: how long the send agent waits for more frames before delivering what it has.
    Short, because batches grow by themselves under backlog: while its three deliveries in flight wait for
    Iterable, frames queue, and the next take holds up to eight of them."""
    drain_seconds: float = Field(default=30.0, ge=0)
    """FPI_DRAIN_SECONDS: on stop, and when a rebalance takes partitions away, how long deliveries in flight may
    still finish. After that they are given up: left uncommitted, they are delivered again by the next owner of
    their partitions. Keep it below the pod's termination grace period (120 s in k8s/)."""

    # --- Mapping -----------------------------------------------------------------------------
    # Every option of the mapping core is a setting too (FPI_PROJECT_TYPE, FPI_CARTS...), declared and
    # described once, in streams.mapping.MappingConfig; _MappingSettings derives them. Its rules come from:
    transformations_file: Path | None = None
    """FPI_TRANSFORMATIONS_FILE: TOML file of event transformation rules."""

    @field_validator("opt_out_traits")
    @classmethod
    def _channel_ids(cls, value: Mapping[str, int]) -> Mapping[str, int]:
        if any(channel < 1 for channel in value.values()):
            raise ValueError("a channel id is a positive integer")
        return value

    def subscriptions_kept(self) -> bool:
        """Whether any subscription trait is set (the worker declares the ``subscriptions`` table only then)."""
        config = self.mapping_config()
        return bool(config.unsubscribed_channels_trait or config.unsubscribed_message_types_trait
                    or config.email_lists_trait or config.opt_out_traits)

    # --- Holding anonymous events ------------------------------------------------------------
    hold_anonymous_seconds: float | None = Field(default=None, gt=0)
    """FPI_HOLD_ANONYMOUS_SECONDS: keep events of devices not linked to a person yet (table ``held``); those
    that happened at most this long before their device is linked (event time) are sent as the person's,
    the rest dropped ``anonymous``. Unset: anonymous events are dropped at once."""
    hold_anonymous_per_device: int = Field(default=200, ge=1)
    """FPI_HOLD_ANONYMOUS_PER_DEVICE: most events held for one device; more are dropped ``hold_overflow``."""
    hold_anonymous_total: int = Field(default=200_000, ge=1)
    """FPI_HOLD_ANONYMOUS_TOTAL: most events one worker holds; more are dropped ``hold_overflow``."""

    @field_validator(*_SECRETS, *_OPTIONAL, mode="before")
    @classmethod
    def _empty_is_none(cls, value: Any) -> Any:
        # A variable set to "" (a ConfigMap key left blank) means unset, not the current directory.
        return None if value == "" else value

    def mapping_config(self) -> MappingConfig:
        """The mapping options as set here, without the transformation rules (``wiring.build_mapping_config``
        loads those from FPI_TRANSFORMATIONS_FILE)."""
        return MappingConfig(**{name: getattr(self, name) for name in MAPPING_OPTIONS})

    def hold_rule(self) -> HoldRule | None:
        """The resolve stage's ``HoldRule``; ``None`` when anonymous events are not held."""
        if self.hold_anonymous_seconds is None:
            return None
        return HoldRule(timedelta(seconds=self.hold_anonymous_seconds), self.hold_anonymous_per_device,
                        self.hold_anonymous_total)

    def secret_values(self) -> tuple[str, ...]:
        """The configured secrets' values, for the log filter that keeps them out of every record."""
        values = (getattr(self, name) for name in sorted(_SECRETS))
        return tuple(value.get_secret_value() for value in values if value is not None and value.get_secret_value())

    @classmethod
    def load(cls, **values: Any) -> Settings:
        """The settings from ``FPI_*`` variables, ``values`` overriding them.

        Raises ``ConfigError`` (one line naming each invalid variable) when a value has the wrong type
        or is out of range.
        """
        try:
            return cls(**values)
        except ValidationError as exc:
            raise ConfigError("; ".join(_invalid(error) for error in exc.errors())) from None
        except SettingsError as exc:
            found = re.search(r'field "(\w+)"', str(exc))
            name = f"FPI_{found.group(1).upper()}" if found else "an FPI_ variable"
            example = '{"email_opt_out": 12}' if name == "FPI_OPT_OUT_TRAITS" else '["trial_ends"]'
            kind = "object" if name == "FPI_OPT_OUT_TRAITS" else "list"
            raise ConfigError(f"invalid {name}: not valid JSON; give a JSON {kind} such as "
                              f"{example}, or unset it for the default") from None

    def problems(self) -> list[str]:
        """What makes these settings unusable although every value has the right type: an unsupported
        FPI_STORE, an invalid URL or bootstrap list, incomplete SASL settings, a TLS file that is missing
        or unreadable. One line each, naming the variable and the fix; empty when all is well."""
        found = [*self._store_problems(), *self._url_problems(), *self._registry_problems()]
        protocol = self.kafka_security_protocol
        if protocol.startswith("SASL"):
            missing = [f"FPI_KAFKA_SASL_{name.upper()}" for name in ("username", "password")
                       if not getattr(self, f"kafka_sasl_{name}")]
            if missing:
                found.append(f"FPI_KAFKA_SECURITY_PROTOCOL={protocol} needs {' and '.join(missing)}: set "
                             f"{'them' if len(missing) > 1 else 'it'} (from a secret for the password)")
        if protocol in ("SSL", "SASL_SSL"):
            found.extend(self._tls_problems())
        return found

    def _store_problems(self) -> list[str]:
        scheme, separator, _ = self.store.partition("://")
        if not separator or scheme not in STORE_SCHEMES:
            return [f"FPI_STORE={self.store!r} is not supported: use memory:// (local, tests) or rocksdb:// "
                    "(production)"]
        if scheme == "rocksdb" and importlib.util.find_spec("rocksdict") is None:
            return ["FPI_STORE=rocksdb:// needs the rocksdb extra: pip install 'freshpaint-iterable[rocksdb]', "
                    "or use memory://"]
        return []

    def _url_problems(self) -> list[str]:
        found = []
        for name in ("schema_registry_url", "iterable_base_url"):
            url = getattr(self, name)
            if url is not None and not _valid_url(url):
                found.append(f"FPI_{name.upper()}={redact_url(url)!r} is not a valid URL: use "
                             "http(s)://host[:port][/path]")
        if not all(_valid_host_port(entry.strip()) for entry in self.kafka_bootstrap.split(",")):
            found.append(f"FPI_KAFKA_BOOTSTRAP={self.kafka_bootstrap!r} is not a host:port list: use e.g. "
                         "broker-1:9092,broker-2:9092")
        return found

    def _registry_problems(self) -> list[str]:
        found = []
        basic = self.schema_registry_username is not None or self.schema_registry_password is not None
        if basic and (self.schema_registry_username is None or self.schema_registry_password is None):
            found.append("FPI_SCHEMA_REGISTRY_USERNAME and FPI_SCHEMA_REGISTRY_PASSWORD go together: set both "
                         "(the password from a secret), or neither")
        user_info = self.schema_registry_user_info
        if user_info is not None and ":" not in user_info.get_secret_value():
            found.append("FPI_SCHEMA_REGISTRY_USER_INFO is not user:password: give both, separated by a colon")
        given = [name for name, on in (("FPI_SCHEMA_REGISTRY_USERNAME/PASSWORD", basic),
                                       ("FPI_SCHEMA_REGISTRY_USER_INFO", user_info is not None),
                                       ("FPI_SCHEMA_REGISTRY_TOKEN", self.schema_registry_token is not None)) if on]
        if len(given) > 1:
            found.append(f"{' and '.join(given)} are both set: the registry takes one kind of credentials; "
                         "keep one")
        found.extend(_file_problems("FPI_SCHEMA_REGISTRY_CAFILE", self.schema_registry_cafile))
        return found

    def _tls_problems(self) -> list[str]:
        found = []
        for name in ("cafile", "certfile", "keyfile"):
            found.extend(_file_problems(f"FPI_KAFKA_SSL_{name.upper()}", getattr(self, f"kafka_ssl_{name}")))
        if self.kafka_ssl_keyfile is not None and self.kafka_ssl_certfile is None:
            found.append("FPI_KAFKA_SSL_KEYFILE is set without FPI_KAFKA_SSL_CERTFILE: set both for mutual TLS")
        return found

    @property
    def iterable_url(self) -> str:
        return self.iterable_base_url or ITERABLE_BASE_URLS[self.iterable_region]

    def as_dict(self) -> dict[str, Any]:
        """All settings with secrets masked, for logs and ``check``."""
        shown: dict[str, Any] = {}
        for name, value in self.model_dump().items():
            if isinstance(value, SecretStr):
                shown[name] = "**********" if value.get_secret_value() else ""
            elif isinstance(value, Path):
                shown[name] = str(value)
            else:
                shown[name] = value
        return shown


def load_settings(**values: Any) -> Settings:
    """``Settings.load(**values)``, refused when ``problems()`` finds anything.

    Raises ``ConfigError``: one line with every invalid value or problem and its fix.
    """
    settings = Settings.load(**values)
    found = settings.problems()
    if found:
        raise ConfigError("; ".join(found))
    return settings


def _file_problems(variable: str, path: Path | None) -> list[str]:
    if path is None:
        return []
    if not path.is_file():
        return [f"{variable}={path}: no such file; mount it there or correct the path"]
    if not os.access(path, os.R_OK):
        return [f"{variable}={path}: not readable by this user; fix its permissions"]
    return []


def redact_url(text: str) -> str:
    """``text`` with the credentials of any URL in it (``scheme://user:password@``) masked."""
    return _USERINFO.sub("***@", text)


def _invalid(error: Any) -> str:
    field = str(error["loc"][0]) if error.get("loc") else ""
    variable = f"FPI_{field.upper()}" if field else "an FPI_ variable"
    value = error.get("input")
    shown = f"={redact_url(value)!r}" if isinstance(value, str) and field not in _SECRETS else ""
    return f"invalid {variable}{shown}: {error['msg']}; correct it, or unset it for the default"


def _valid_url(url: str) -> bool:
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018  # raises ValueError for a port that is not a number in range
    except ValueError:
        return False
    return parts.scheme in ("http", "https") and bool(parts.hostname)


def _valid_host_port(entry: str) -> bool:
    host, separator, port = entry.rpartition(":")
    return bool(separator and host and "/" not in host and port.isdigit() and 0 < int(port) < 65536)
