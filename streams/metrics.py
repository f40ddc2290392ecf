"""Prometheus metrics of the worker, defined once; every layer imports the series it moves.

Series names start with ``fpi_``. Labels are low-cardinality codes only: never an email,
user id, event id or the API key.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from prometheus_client import Counter, Gauge, Histogram

__all__ = [
    "BATCH_SIZE",
    "CART_UPDATES_COALESCED",
    "CONSUMER_LAG",
    "DEAD_LETTERS",
    "DECODE_FAILURES",
    "EVENTS_DROPPED",
    "EVENTS_IN",
    "HELD_EVENTS",
    "HELD_NOW",
    "ITERABLE_LATENCY",
    "ITERABLE_REQUESTS",
    "ITERABLE_RETRIES",
    "PROJECT_PAUSED",
    "PROJECT_REQUESTS",
    "RATE_LIMITED",
    "RATE_LIMITER_WAIT",
    "REQUESTS_OUT",
    "SENDER_PAUSED",
    "SOURCE_PAUSED_SECONDS",
    "LagSampler",
    "add_counts",
]

EVENTS_IN = Counter("fpi_events_in_total", "Freshpaint events decoded, by event type.", ["type"])
EVENTS_DROPPED = Counter("fpi_events_dropped_total", "Events not sent to Iterable, by reason.", ["reason"])
DEAD_LETTERS = Counter("fpi_dead_letters_total", "Records written to the dead-letter topic, by reason.",
                       ["reason"])
DECODE_FAILURES = Counter("fpi_decode_failures_total",
                          "Source messages that did not decode into an event (poison), by reason.",
                          ["reason"])
HELD_EVENTS = Counter("fpi_anonymous_held_total",
                      "Anonymous events held for their device's link (FPI_HOLD_ANONYMOUS_SECONDS), by outcome: "
                      "held, released (sent as the person's), expired (dropped anonymous), overflow (not held: "
                      "a bound was reached).", ["outcome"])
HELD_NOW = Gauge("fpi_anonymous_held_now", "Anonymous events this worker holds now.")
REQUESTS_OUT = Counter("fpi_iterable_requests_mapped_total",
                       "Iterable requests produced by the mapping core, by endpoint.", ["endpoint"])
CART_UPDATES_COALESCED = Counter("fpi_cart_updates_coalesced_total",
                                 "commerce/updateCart requests not sent because a later one of the same person in the "
                                 "same apply batch carries the whole cart (FPI_CARTS).")
ITERABLE_REQUESTS = Counter("fpi_iterable_http_requests_total",
                            "HTTP calls to Iterable, by endpoint, HTTP status and Iterable code.",
                            ["endpoint", "status", "code"])
ITERABLE_LATENCY = Histogram("fpi_iterable_http_seconds", "Latency of HTTP calls to Iterable.", ["endpoint"],
                             buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30))
BATCH_SIZE = Histogram("fpi_iterable_batch_items", "Items per Iterable call.", ["endpoint"],
                       buckets=(1, 5, 10, 50, 100, 250, 500, 750, 1000))
ITERABLE_RETRIES = Counter("fpi_iterable_retries_total", "Retried Iterable calls, by endpoint and reason.",
                           ["endpoint", "reason"])
RATE_LIMITED = Counter("fpi_iterable_429_total", "HTTP 429 answers from Iterable, by endpoint.", ["endpoint"])
RATE_LIMITER_WAIT = Histogram("fpi_rate_limiter_wait_seconds", "Time spent waiting for a rate token.",
                              ["endpoint"], buckets=(0.001, 0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10))
SENDER_PAUSED = Gauge("fpi_sender_paused", "1 while the sender is paused by a bad API key.")
PROJECT_REQUESTS = Counter("fpi_project_requests_total",
                           "With a routing file (FPI_PROJECTS_FILE): Iterable requests with an outcome, by project "
                           "and outcome (delivered, or the dead letter's reason).", ["project", "outcome"])
PROJECT_PAUSED = Gauge("fpi_project_paused", "1 while a project's sender is paused by a bad API key "
                       "(FPI_PROJECTS_FILE).", ["project"])
SOURCE_PAUSED_SECONDS = Counter("fpi_source_paused_seconds_total",
                                "Seconds the first stage did not read the source because the stages after it were "
                                "behind (FPI_SOURCE_BACKLOG_RECORDS); the backlog waited in the source topic.")
CONSUMER_LAG = Gauge("fpi_consumer_lag", "Messages behind the end of each assigned partition (high watermark "
                     "minus committed offset), sampled every few seconds.", ["topic", "partition"])


def add_counts(series: Counter, counts: Mapping[str, int]) -> None:
    """Add a batch's tallies to a counter with one label: one label lookup per label, not per event."""
    for label, amount in counts.items():
        series.labels(label).inc(amount)


class LagSampler:
    """Sets ``fpi_consumer_lag`` from one sample of the consumed partitions, and only those.

    A partition this worker no longer owns keeps no series: its last sample would stay frozen beside
    the new owner's, and the lag alert and the autoscaler take the larger of the two.
    """

    def __init__(self, gauge: Gauge = CONSUMER_LAG) -> None:
        self.gauge = gauge
        self.sampled: set[tuple[str, str]] = set()

    def sample(self, partitions: Iterable[tuple[str, int, int, int | None]]) -> None:
        """``partitions``: (topic, partition, high watermark, committed offset or ``None``) of each
        partition the agents consume; changelogs are not among them (faust never commits those)."""
        now: set[tuple[str, str]] = set()
        for topic, partition, highwater, committed in partitions:
            labels = (topic, str(partition))
            self.gauge.labels(*labels).set(max(highwater - (committed or 0), 0))
            now.add(labels)
        for labels in self.sampled - now:
            self.gauge.remove(*labels)
        self.sampled = now
