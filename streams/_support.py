"""Helpers shared by the local run (``freshpaint-iterable dev``), the tests and the benchmarks: a free port
on loopback, a private Kafka broker, waiting for a condition, reading and parsing the worker's ``/metrics``, a
process's memory, and the settings of a worker that shares a broker with others.

They live in the package because ``dev`` ships in it and cannot import from ``tests/``.
"""

from __future__ import annotations

import os
import re
import socket
import subprocess
import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import TypeVar

__all__ = [
    "BROKER_SCRIPT",
    "LocalBroker",
    "Sample",
    "free_port",
    "isolated_worker_env",
    "metric_by",
    "metric_samples",
    "metric_sum",
    "process_memory_kib",
    "scrape_metrics",
    "wait_for",
]

T = TypeVar("T")


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on at this moment."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


BROKER_SCRIPT = Path(__file__).resolve().parent.parent / "dev" / "kafka" / "broker.sh"
"""The development broker script (in a checkout; an installed package has none)."""


class LocalBroker:
    """A private Kafka broker of ``dev/kafka/broker.sh`` on free loopback ports with its own ``run_dir``, never
    the shared one. ``with LocalBroker(run_dir) as broker:`` starts it and stops it at the end; ``run("restart")``
    restarts it on the same data. ``env`` adds or overrides the script's variables (``KAFKA_SECURE``...)."""

    def __init__(self, run_dir: Path, **env: str) -> None:
        self.port = free_port()
        self.bootstrap = f"127.0.0.1:{self.port}"
        self.env = {**os.environ, "KAFKA_PORT": str(self.port), "KAFKA_CONTROLLER_PORT": str(free_port()),
                    "KAFKA_RUN_DIR": str(run_dir), **env}

    def run(self, command: str) -> None:
        """``broker.sh <command>``; raises ``RuntimeError`` with the end of its output when it fails."""
        done = subprocess.run(["bash", str(BROKER_SCRIPT), command], env=self.env, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True)
        if done.returncode != 0:
            raise RuntimeError(f"dev/kafka/broker.sh {command} failed (exit {done.returncode}):\n"
                               f"{done.stdout[-3000:]}")

    def __enter__(self) -> LocalBroker:
        self.run("start")
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 trace: TracebackType | None) -> None:
        self.stop()

    def stop(self) -> None:
        """``broker.sh stop``: SIGTERM to this broker's own pid (SIGKILL after a timeout); never raises."""
        subprocess.run(["bash", str(BROKER_SCRIPT), "stop"], env=self.env, capture_output=True)


def process_memory_kib(pid: int, field: str = "VmHWM") -> int:
    """``VmHWM`` (peak resident set) or ``VmRSS`` (resident now) of process ``pid`` in KiB, from
    ``/proc/<pid>/status``; 0 once the process is gone."""
    try:
        text = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return 0
    found = re.search(rf"^{field}:\s+(\d+) kB", text, re.M)
    return int(found.group(1)) if found else 0


def isolated_worker_env(run: str, bootstrap: str, iterable_url: str, api_key: str, data_dir: Path,
                        partitions: int) -> dict[str, str]:
    """The ``FPI_*`` settings of a worker whose app id and topics are all named after ``run``, so it shares a
    broker with other runs and touches none of their topics, with its web port free on loopback."""
    return {
        "FPI_KAFKA_BOOTSTRAP": bootstrap,
        "FPI_APP_ID": run,
        "FPI_SOURCE_TOPIC": f"{run}.events",
        "FPI_REPLAY_TOPIC": f"{run}.replay",
        "FPI_BY_PERSON_TOPIC": f"{run}.by-person",
        "FPI_REQUESTS_TOPIC": f"{run}.requests",
        "FPI_DEAD_LETTER_TOPIC": f"{run}.dead-letter",
        "FPI_WEB_PORT": str(free_port()),
        "FPI_WEB_BIND": "127.0.0.1",
        "FPI_DATA_DIR": str(data_dir),
        "FPI_ITERABLE_BASE_URL": iterable_url,
        "FPI_ITERABLE_API_KEY": api_key,
        "FPI_TOPIC_PARTITIONS": str(partitions),
    }


def wait_for(predicate: Callable[[], T], timeout: float, interval: float = 0.2, what: str = "condition") -> T:
    """The first truthy value ``predicate`` returns within ``timeout`` seconds.

    Raises ``AssertionError`` naming ``what`` and the last value after that (tests read it as a failure).
    """
    deadline = time.monotonic() + timeout
    last: T | None = None
    while time.monotonic() < deadline:
        last = predicate()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what} (last value: {last!r})")


@dataclass(frozen=True, slots=True)
class Sample:
    """One line of Prometheus text: the sample's name (``_total``, ``_sum``... included), labels, value."""

    name: str
    labels: dict[str, str]
    value: float


def metric_samples(text: str) -> list[Sample]:
    """Every sample in Prometheus exposition ``text``."""
    from prometheus_client.parser import text_string_to_metric_families

    return [Sample(s.name, dict(s.labels), float(s.value))
            for family in text_string_to_metric_families(text) for s in family.samples]


def scrape_metrics(port: str | int, timeout: float = 5) -> list[Sample]:
    """The samples of the worker's ``/metrics`` page at ``127.0.0.1:port``; empty while it does not answer."""
    import httpx

    try:
        answer = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=timeout, trust_env=False).raise_for_status()
    except httpx.HTTPError:
        return []
    return metric_samples(answer.text)


def metric_sum(samples: Iterable[Sample], name: str, **labels: str) -> float:
    """The sum of the samples named ``name`` whose labels include ``labels``."""
    return sum(s.value for s in samples
               if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()))


def metric_by(samples: Iterable[Sample], name: str, by: str) -> Counter[str]:
    """The samples named ``name`` summed by the value of label ``by`` (as integers: counts)."""
    values: Counter[str] = Counter()
    for s in samples:
        if s.name == name:
            values[s.labels.get(by, "")] += int(s.value)
    return values
