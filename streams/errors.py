"""The one error tree of the processor.

Every error we raise on purpose is a ``StreamsError``. Each class carries a stable ``reason``
code (dead letters and metrics key on it; nothing branches on message text) and ``retriable``
(whether trying the same thing again later can succeed)::

    StreamsError
    ├── ConfigError                 settings, schemas or transformation rules are invalid (fail at start-up;
    │   │                           commands exit 2)
    │   ├── UnsupportedDependencies faust-streaming, mode-streaming or aiokafka is not the set the faust
    │   │                           patches were written for
    │   └── TopicMissing            a topic the command or the worker needs does not exist
    ├── BrokerUnavailable           Kafka could not be reached (commands exit 1)
    ├── DecodeError                 bytes on a topic could not become a record
    │   ├── UnknownMagicByte
    │   ├── UnknownSchemaId
    │   └── TruncatedRecord
    ├── RegistryUnavailable         the schema registry could not be asked (retriable; never a dead letter;
    │                               commands exit 1)
    ├── InvalidEvent                a record is not a Freshpaint event we understand (names the field)
    └── DeliveryError               Iterable did not accept a request
        ├── RetriableDelivery       5xx, timeouts, refused connections: try again later
        │   ├── RateLimited         429; carries retry_after
        │   └── UserNotYetVisible   the user was just created; the event is retried after a delay
        ├── BadApiKey               401: pause everything until the key works again (the operator fixes it)
        └── Rejected                4xx for this item: it goes to the dead letter with Iterable's answer

Drops that are expected outcomes (anonymous users, filtered events, incomplete purchases) are not
errors: the mapping core returns them as ``Decision`` values with a ``DropReason``. The command line
(``streams.cli``) is the one border where an error that ends a command becomes one line for the operator.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any

__all__ = [
    "BadApiKey",
    "BrokerUnavailable",
    "ConfigError",
    "DecodeError",
    "DeliveryError",
    "InvalidEvent",
    "RateLimited",
    "Reason",
    "RegistryUnavailable",
    "Rejected",
    "RetriableDelivery",
    "StreamsError",
    "TopicMissing",
    "TruncatedRecord",
    "UnknownMagicByte",
    "UnknownSchemaId",
    "UnsupportedDependencies",
    "UserNotYetVisible",
]


class Reason(StrEnum):
    """Stable snake_case codes for dead letters, metrics and logs."""

    CONFIG_INVALID = "config_invalid"
    UNSUPPORTED_DEPENDENCIES = "unsupported_dependencies"
    BROKER_UNAVAILABLE = "broker_unavailable"
    UNDECODABLE = "undecodable"
    UNKNOWN_MAGIC_BYTE = "unknown_magic_byte"
    UNKNOWN_SCHEMA = "unknown_schema"
    TRUNCATED = "truncated"
    REGISTRY_UNAVAILABLE = "registry_unavailable"
    INVALID_EVENT = "invalid_event"
    TOO_LARGE = "too_large"
    MAPPING_FAILED = "mapping_failed"
    ITERABLE_UNAVAILABLE = "iterable_unavailable"
    RATE_LIMITED = "rate_limited"
    USER_NOT_FOUND = "user_not_found"
    BAD_API_KEY = "bad_api_key"
    ITERABLE_REJECTED = "iterable_rejected"
    FIELD_TYPE_MISMATCH = "field_type_mismatch"
    EMAIL_ALREADY_EXISTS = "email_already_exists"
    """users/updateEmail: the new address has a profile of its own; merge them by hand (users/merge)."""
    FORGOTTEN = "forgotten"
    """Iterable answered that the person is GDPR-forgotten (409 ``ForgottenUserError``, or a bulk
    ``forgotten*`` list): final, not retried; the dead letter keeps no request body."""
    INVALID_DELETION_REQUEST = "invalid_deletion_request"
    """A deletion-topic record (``FPI_DELETION_TOPIC``) that is not a request ``streams.deletions`` can do."""


class StreamsError(Exception):
    """Root of every error the processor raises on purpose."""

    reason: Reason = Reason.MAPPING_FAILED
    retriable: bool = False

    def __init__(self, message: str, *, reason: Reason | None = None) -> None:
        super().__init__(message)
        self.message = message
        if reason is not None:
            self.reason = reason

    def __str__(self) -> str:
        return self.message


class ConfigError(StreamsError):
    """Raised when settings or transformation rules are invalid; fix the configuration and restart."""

    reason = Reason.CONFIG_INVALID


class UnsupportedDependencies(ConfigError):
    """Raised at worker start-up when the installed faust-streaming, mode-streaming or aiokafka is not the
    set ``streams.faust_patches`` was written for; install ``constraints.txt``, or re-check the patches."""

    reason = Reason.UNSUPPORTED_DEPENDENCIES


class TopicMissing(ConfigError):
    """Raised when a topic the command or the worker needs does not exist; create it
    (``freshpaint-iterable topics create``) or correct the topic setting."""


class BrokerUnavailable(StreamsError):
    """Raised when no Kafka broker answers (refused, unknown host, TLS or SASL handshake failed); check
    FPI_KAFKA_BOOTSTRAP, that the brokers are up, and the FPI_KAFKA_SECURITY_* / SASL settings."""

    reason = Reason.BROKER_UNAVAILABLE
    retriable = True


class DecodeError(StreamsError):
    """Raised when bytes from Kafka are not a record of a known schema; the message is dead-lettered."""

    reason = Reason.UNDECODABLE


class UnknownMagicByte(DecodeError):
    """Raised when a Confluent-framed message does not start with magic byte 0."""

    reason = Reason.UNKNOWN_MAGIC_BYTE


class UnknownSchemaId(DecodeError):
    """Raised when the schema id in a message is not known to the registry (or not yet fetched)."""

    reason = Reason.UNKNOWN_SCHEMA

    def __init__(self, message: str, *, schema_id: int) -> None:
        super().__init__(message)
        self.schema_id = schema_id


class TruncatedRecord(DecodeError):
    """Raised when an Avro body ends before the record does."""

    reason = Reason.TRUNCATED


class RegistryUnavailable(StreamsError):
    """Raised when the schema registry cannot be reached or answers with a server error; the
    message is not at fault, so retry it later (do not dead-letter it)."""

    reason = Reason.REGISTRY_UNAVAILABLE
    retriable = True


class InvalidEvent(StreamsError):
    """Raised when a record is not a Freshpaint event we understand; ``field`` names what was wrong."""

    reason = Reason.INVALID_EVENT

    def __init__(self, message: str, *, field: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field


class DeliveryError(StreamsError):
    """Raised when Iterable did not accept a request; ``status`` and ``response`` say how it answered."""

    reason = Reason.ITERABLE_REJECTED

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        code: str | None = None,
        response: Any = None,
        reason: Reason | None = None,
    ) -> None:
        super().__init__(message, reason=reason)
        self.status = status
        self.code = code
        self.response = response


class RetriableDelivery(DeliveryError):
    """Raised for 5xx, timeouts and connection errors: the sender retries with backoff, never drops."""

    reason = Reason.ITERABLE_UNAVAILABLE
    retriable = True


class RateLimited(RetriableDelivery):
    """Raised on HTTP 429; ``retry_after`` (seconds) comes from the Retry-After header when present."""

    reason = Reason.RATE_LIMITED

    def __init__(self, message: str, *, retry_after: float | None = None, **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        self.retry_after = retry_after


class UserNotYetVisible(RetriableDelivery):
    """Raised when Iterable does not yet know the user of an event; retried a bounded number of times."""

    reason = Reason.USER_NOT_FOUND


class BadApiKey(DeliveryError):
    """Raised on 401 BadApiKey: the sender pauses and /readyz turns red; fix or rotate the key. The sender
    resumes by itself once a probe call with the key succeeds; no restart is needed."""

    reason = Reason.BAD_API_KEY
    retriable = True


class Rejected(DeliveryError):
    """Raised when Iterable rejects this item (4xx); it goes to the dead-letter topic with the answer."""

    reason = Reason.ITERABLE_REJECTED
