"""The benchmark reports must survive what a smoke run measures: tiny windows and CPU readings of zero."""
from __future__ import annotations

import pytest

from bench import _harness as h
from bench._slices import slices
from bench.bench_ceiling import CEILING, share_of_ceiling
from bench.bench_e2e import report


def test_window_is_never_zero_when_every_record_arrives_at_once() -> None:
    assert h.window_seconds(5.0, 5.0) == h.MIN_WINDOW_SECONDS
    assert h.window_seconds(5.0, 7.5) == 2.5


def test_a_burst_inside_the_allowance_is_not_read_as_above_the_ceiling() -> None:
    assert share_of_ceiling(600, h.window_seconds(1.0, 1.0), CEILING) < 1.0
    assert share_of_ceiling(int(CEILING * 9), 8.0, CEILING) == pytest.approx(1.0)


def e2e_result(cpu_ms_per_1000: float, points: list[tuple[float, float]], size: int) -> dict[str, object]:
    worker = {"events_per_s": 1000.0, "seconds": 1.0, "iterable_records_per_s": 1100.0,
              "cpu_ms_per_1000": cpu_ms_per_1000, "peak_rss_mb": 100.0, "emulator_cpu_s": 0.1, "duplicates": 0,
              "slice_size": size, "slices": slices(points, size)}
    naive = {"events_per_s": 100.0, "seconds": 2.0, "consumed": 200, "requests": 200, "failed": 0,
             "cpu_ms_per_1000": 900.0}
    floor = {"records": 1000, "events_per_s": 5000.0, "cpu_us_per_event": 90.0}
    bare = {"records": 1000, "events_per_s": 50000.0, "cpu_us_per_event": 4.5}
    return {"events": 1000, "produce_seconds": 0.3, "worker": worker, "naive": naive, "ratio": 10.0,
            "floor": floor, "floor_inline": floor, "bare": bare, "load_before": "0", "load_after": "0"}


def test_e2e_report_prints_when_the_worker_cpu_reads_zero(capsys: pytest.CaptureFixture[str]) -> None:
    # a smoke run: everything delivered by the first poll, the CPU at /proc's 10 ms resolution reads nothing
    report(e2e_result(0.0, [(1000.0, 0.3)], 100), smoke=True)
    printed = capsys.readouterr().out
    assert "n/a" in printed and "10.0x the naive forwarder" in printed
    assert "aiokafka getmany + commit per batch, no work, same topic: 50,000 records/s, CPU 4.5 us/record" in printed
    assert "slices : worker CPU us per source event, slices of ~100 events delivered: n/a" in printed
    assert "goal 5 : n/a: fewer than 2 slices" in printed


def test_e2e_report_prints_and_records_the_slices_and_the_goal_5_verdict(
        capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    recorded: list[str] = []
    monkeypatch.setattr(h, "record", lambda title, body, *, smoke: recorded.append(body))
    cpu = [0.0, 30, 50, 70, 90, 115, 140, 145]  # 300 200 200 200 250 250 50 µs per event
    report(e2e_result(200.0, [(n * 100_000.0, c) for n, c in enumerate(cpu)], 100_000), smoke=False)
    printed = capsys.readouterr().out
    line = "300 (fill, 0-100,000) 200 200 200 250 250 50 (drain, 600,000-700,000)"
    verdict = ("last 2 slices 250.0 us/event against first 2 slices after the fill 200.0: 1.25x, NOT within 10% "
               "(steady slices 200-250; valid only while the stages keep pace with delivery)")
    assert f"slices : worker CPU us per source event, slices of ~100,000 events delivered: {line}" in printed
    assert f"goal 5 : {verdict}" in printed
    assert f"{line}." in recorded[0] and f"**{verdict}**" in recorded[0]
