"""``streams._support``: the helpers dev, the tests and the benchmarks share."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
from collections import Counter
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from streams._support import (
    free_port,
    metric_by,
    metric_samples,
    metric_sum,
    process_memory_kib,
    scrape_metrics,
    wait_for,
)

METRICS = """\
# HELP fpi_dead_letters_total Dead letters
# TYPE fpi_dead_letters_total counter
fpi_dead_letters_total{reason="anonymous"} 3.0
fpi_dead_letters_total{reason="too_large"} 1.0
# HELP fpi_iterable_http_requests_total Calls
# TYPE fpi_iterable_http_requests_total counter
fpi_iterable_http_requests_total{code="",endpoint="events/trackBulk",status="200"} 5.0
fpi_iterable_http_requests_total{code="",endpoint="users/bulkUpdate",status="200"} 2.0
fpi_iterable_http_requests_total{code="",endpoint="users/bulkUpdate",status="500"} 1.0
"""


def test_free_port_can_be_bound() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", free_port()))


def test_wait_for_returns_the_first_truthy_value() -> None:
    values = iter([0, None, "ready"])
    assert wait_for(lambda: next(values), 5, interval=0) == "ready"


def test_wait_for_names_what_it_waited_for() -> None:
    with pytest.raises(AssertionError, match=r"waiting for the broker \(last value: 0\)"):
        wait_for(lambda: 0, 0.01, interval=0, what="the broker")


def test_metric_sum_and_metric_by() -> None:
    samples = metric_samples(METRICS)
    assert metric_sum(samples, "fpi_iterable_http_requests_total") == 8
    assert metric_sum(samples, "fpi_iterable_http_requests_total", endpoint="users/bulkUpdate", status="200") == 2
    assert metric_sum(samples, "fpi_iterable_http_requests") == 0
    assert metric_by(samples, "fpi_dead_letters_total", "reason") == Counter(anonymous=3, too_large=1)
    assert metric_by(samples, "fpi_iterable_http_requests_total", "endpoint") == Counter(
        {"events/trackBulk": 5, "users/bulkUpdate": 3})


class _Pages(BaseHTTPRequestHandler):
    """``/metrics`` answers ``METRICS``; any other path 404."""

    def do_GET(self) -> None:
        found = self.path == "/metrics"
        body = METRICS.encode() if found else b"not found"
        self.send_response(200 if found else 404)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def metrics_server() -> Iterator[ThreadingHTTPServer]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Pages)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()
    thread.join(5)


def test_scrape_metrics_reads_a_worker_page_and_is_empty_while_none_answers(
    metrics_server: ThreadingHTTPServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HTTP_PROXY", f"http://127.0.0.1:{free_port()}")  # loopback is read directly
    samples = scrape_metrics(metrics_server.server_address[1])
    assert metric_by(samples, "fpi_dead_letters_total", "reason") == Counter(anonymous=3, too_large=1)
    assert scrape_metrics(free_port()) == []


def test_process_memory_of_a_live_and_of_a_gone_process() -> None:
    peak, now = process_memory_kib(os.getpid()), process_memory_kib(os.getpid(), "VmRSS")
    assert 0 < now <= peak
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True,
                          check=True)
    assert process_memory_kib(int(gone.stdout)) == 0
