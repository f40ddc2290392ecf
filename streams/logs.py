"""Structured JSON logs with secrets and emails redacted.

Every record becomes one JSON object per line (time, level, logger, message, and any ``extra``
such as ``message_id`` or ``topic``/``partition``/``offset`` for correlation). A filter on the
handler redacts the Iterable API key and SASL password wherever they appear, and email addresses
in records at INFO and above (they stay visible at DEBUG for local diagnosis only).
"""

from __future__ import annotations

import logging
import re
import time
from datetime import UTC, datetime
from typing import Any

import orjson

__all__ = ["JsonFormatter", "RedactingFilter", "StartupNoiseFilter", "logging_config"]

_EMAIL = re.compile(r"[^\s@\"'<>(),;:]+@[^\s@\"'<>(),;:]+\.[^\s@\"'<>(),;:]+")
_CLIENT_LOGGERS_WITH_STARTUP_NOISE = ("aiokafka.consumer.group_coordinator", "aiokafka.consumer.fetcher",
                                      "aiokafka.cluster")
_STANDARD_ATTRS = frozenset(vars(logging.makeLogRecord({})).keys()) | {"message", "asctime"}


class RedactingFilter(logging.Filter):
    """Rewrites a record's message so no secret (any level) and no email (INFO+) leaves the process."""

    secrets: tuple[str, ...] = ()

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if record.exc_info and record.exc_info[1] is not None:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
            record.exc_info = None
        text = self._redact(message, record.levelno)
        if record.exc_text:
            record.exc_text = self._redact(record.exc_text, record.levelno)
        record.msg, record.args = text, None
        return True

    def _redact(self, text: str, level: int) -> str:
        for secret in self.secrets:
            if secret:
                text = text.replace(secret, "[REDACTED]")
        if level >= logging.INFO:
            text = _EMAIL.sub("[email]", text)
        return text


class StartupNoiseFilter(logging.Filter):
    """Demotes the Kafka client's expected start-up errors to INFO for the first ``grace_seconds``.

    On a fresh cluster or fresh topics, aiokafka logs at ERROR what it then retries by itself: the
    broker creates ``__consumer_offsets`` when the first group asks for its coordinator
    ("GroupCoordinatorNotAvailableError"), faust's leader topic is not yet in the metadata, and
    partitions created a moment ago have no leader yet ("NotLeaderForPartitionError"). An operator's
    first sight of a healthy worker was a screen of error lines. Past the grace period the same lines
    keep their ERROR level, since a coordinator or leader that stays missing is a real fault.
    """

    expected = ("GroupCoordinatorNotAvailableError", "NotCoordinatorForGroupError", "CoordinatorLoadInProgressError",
                "NotLeaderForPartitionError", "LeaderNotAvailableError", "not found in cluster metadata")

    def __init__(self, grace_seconds: float = 60.0) -> None:
        super().__init__()
        self.until = time.monotonic() + grace_seconds

    def filter(self, record: logging.LogRecord) -> bool:
        if (record.levelno >= logging.ERROR and time.monotonic() < self.until
                and any(name in record.getMessage() for name in self.expected)):
            record.levelno, record.levelname = logging.INFO, logging.getLevelName(logging.INFO)
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per line."""

    def format(self, record: logging.LogRecord) -> str:
        payload: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, value in vars(record).items():
            if key not in _STANDARD_ATTRS and not key.startswith("_"):
                payload[key] = value
        if record.exc_text:
            payload["exception"] = record.exc_text
        return orjson.dumps(payload, default=str).decode()


def logging_config(level: str, secrets: tuple[str, ...], fmt: str = "json") -> dict[str, Any]:
    """A ``logging.config.dictConfig`` for the worker (also passed to faust's Worker)."""
    RedactingFilter.secrets = tuple(s for s in secrets if s)
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "filters": {"redact": {"()": RedactingFilter}, "startup_noise": {"()": StartupNoiseFilter}},
        "formatters": {
            "json": {"()": JsonFormatter},
            "text": {"format": "[%(asctime)s] %(levelname)s %(name)s: %(message)s"},
        },
        "handlers": {
            "default": {
                "class": "logging.StreamHandler",
                "stream": "ext://sys.stdout",
                "formatter": fmt,
                "filters": ["redact"],
                "level": level.upper(),
            }
        },
        "root": {"level": level.upper(), "handlers": ["default"]},
        # A logger's own filters run before its handlers' level checks, so a demoted record can be
        # left out at WARNING; the handler's filters run too late for that.
        "loggers": {name: {"filters": ["startup_noise"]} for name in _CLIENT_LOGGERS_WITH_STARTUP_NOISE},
    }
