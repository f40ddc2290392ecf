from __future__ import annotations

import io
import logging
import logging.config

import orjson
import pytest

from streams.logs import logging_config


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
