"""The worker's stop on an expected failure after start-up: one line, not a traceback."""

from __future__ import annotations

import subprocess
import sys


def test_a_reader_that_loses_the_brokers_stops_the_worker_with_one_line() -> None:
    """``streams.app._fail``, which the source reader's task calls on a ``StreamsError``: exit 1, one log line
    naming the setting, no traceback."""
    script = (
        "import logging, sys\n"
        "logging.basicConfig(stream=sys.stderr, format='%(levelname)s %(message)s')\n"
        "from streams.app import _fail\n"
        "from streams.errors import BrokerUnavailable\n"
        "try:\n"
        "    raise BrokerUnavailable('cannot reach Kafka at k:9092 (KafkaConnectionError): '\n"
        "                            'check FPI_KAFKA_BOOTSTRAP')\n"
        "except BrokerUnavailable as exc:\n"
        "    _fail('the source reader', exc)\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert done.returncode == 1
    lines = done.stderr.strip().splitlines()
    assert lines == ["CRITICAL the source reader stopped: cannot reach Kafka at k:9092 (KafkaConnectionError): "
                     "check FPI_KAFKA_BOOTSTRAP"], done.stderr
