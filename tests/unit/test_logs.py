from __future__ import annotations

import io
import logging
import logging.config

import orjson
import pytest

from streams.logs import StartupNoiseFilter, logging_config


@pytest.fixture()
def capture() -> io.StringIO:
    stream = io.StringIO()
    config = logging_config("debug", secrets=("sk-live-123",))
    config["handlers"]["default"]["stream"] = stream
    config["loggers"] = {"fpi.test": {"level": "DEBUG", "handlers": ["default"], "propagate": False}}
    logging.config.dictConfig(config)
    return stream


def lines(stream: io.StringIO) -> list[dict[str, object]]:
    return [orjson.loads(line) for line in stream.getvalue().splitlines()]


class TestLogging:
    def test_records_are_json_with_extra_fields(self, capture: io.StringIO) -> None:
        logging.getLogger("fpi.test").info("sent %d items", 3, extra={"message_id": "m-1"})
        [record] = lines(capture)
        assert record["message"] == "sent 3 items"
        assert record["level"] == "info"
        assert record["message_id"] == "m-1"

    def test_api_key_is_redacted_at_every_level(self, capture: io.StringIO) -> None:
        logger = logging.getLogger("fpi.test")
        logger.debug("header Api-Key: %s", "sk-live-123")
        logger.error("key was sk-live-123")
        assert "sk-live-123" not in capture.getvalue()
        assert capture.getvalue().count("[REDACTED]") == 2

    def test_emails_are_redacted_at_info_but_kept_at_debug(self, capture: io.StringIO) -> None:
        logger = logging.getLogger("fpi.test")
        logger.info("identify for ada@example.com")
        logger.debug("identify for bob@example.com")
        info, debug = lines(capture)
        assert info["message"] == "identify for [email]"
        assert debug["message"] == "identify for bob@example.com"

    def test_exception_text_is_redacted(self, capture: io.StringIO) -> None:
        try:
            raise ValueError("bad email carol@example.com with key sk-live-123")
        except ValueError:
            logging.getLogger("fpi.test").exception("failed")
        [record] = lines(capture)
        assert "carol@example.com" not in str(record["exception"])
        assert "sk-live-123" not in str(record["exception"])


class TestStartupNoise:
    @staticmethod
    def _emit(grace_seconds: float, message: str) -> list[dict[str, object]]:
        stream = io.StringIO()
        config = logging_config("warning", secrets=())
        config["handlers"]["default"]["stream"] = stream
        config["filters"]["startup_noise"] = {"()": StartupNoiseFilter, "grace_seconds": grace_seconds}
        coordinator = logging.getLogger("aiokafka.consumer.group_coordinator")
        for name in ("aiokafka.consumer.group_coordinator", "aiokafka.consumer.fetcher", "aiokafka.cluster"):
            logging.getLogger(name).filters.clear()  # dictConfig adds a logger's filters to those it already has
        logging.config.dictConfig(config)
        coordinator.error("Group Coordinator Request failed: %s", message)
        return lines(stream)

    def test_a_coordinator_not_yet_available_at_start_up_is_not_an_error_line(self) -> None:
        assert self._emit(60, "[Error 15] GroupCoordinatorNotAvailableError") == []

    def test_the_same_failure_after_the_grace_period_is_still_an_error(self) -> None:
        [record] = self._emit(0, "[Error 15] GroupCoordinatorNotAvailableError")
        assert record["level"] == "error"

    def test_other_coordinator_failures_keep_their_level(self) -> None:
        [record] = self._emit(60, "[Error 30] GroupAuthorizationFailedError")
        assert record["level"] == "error"
