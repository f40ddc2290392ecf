"""Helpers shared by the local run (``freshpaint-iterable dev``), the tests and the benchmarks: a free port
on loopback, waiting for a condition, and reading the worker's ``/metrics`` text.

They live in the package because ``dev`` ships in it and cannot import from ``tests/``.
"""

from __future__ import annotations

import socket
import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TypeVar

__all__ = ["Sample", "free_port", "metric_by", "metric_samples", "metric_sum", "wait_for"]

T = TypeVar("T")


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on at this moment."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


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
