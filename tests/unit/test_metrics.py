from __future__ import annotations

from prometheus_client import CollectorRegistry, Gauge

from streams.metrics import LagSampler


def _series(registry: CollectorRegistry) -> dict[tuple[str, str], float]:
    return {(s.labels["topic"], s.labels["partition"]): s.value
            for metric in registry.collect() for s in metric.samples}


def test_lag_is_high_watermark_minus_committed_and_never_committed_counts_from_0() -> None:
    registry = CollectorRegistry()
    sampler = LagSampler(Gauge("lag", "test", ["topic", "partition"], registry=registry))
    sampler.sample([("events", 0, 120, 100), ("events", 1, 7, None), ("replay", 0, 0, None)])
    assert _series(registry) == {("events", "0"): 20, ("events", "1"): 7, ("replay", "0"): 0}


def test_a_partition_given_away_in_a_rebalance_loses_its_series() -> None:
    registry = CollectorRegistry()
    sampler = LagSampler(Gauge("lag", "test", ["topic", "partition"], registry=registry))
    sampler.sample([("events", 0, 500, 100), ("events", 1, 500, 100)])
    sampler.sample([("events", 1, 500, 500)])
    assert _series(registry) == {("events", "1"): 0}
