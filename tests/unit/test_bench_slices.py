"""bench/_slices.py: a run's CPU per event in slices, and the goal 5 verdict from them."""
from __future__ import annotations

import pytest

from bench._slices import PIPELINE, Slice, slice_size, slices, slices_line, verdict, verdict_line


def run(us_per_event: list[float], size: int = 100_000, step: int = 25_000) -> list[tuple[float, float]]:
    """Points every ``step`` events, each slice of ``size`` events at its own cost."""
    points, cpu = [(0.0, 0.0)], 0.0
    for cost in us_per_event:
        for _ in range(size // step):
            cpu += cost * step / 1e6
            points.append((points[-1][0] + step, cpu))
    return points


def test_slice_size_is_100000_from_a_million_events_on_else_a_tenth() -> None:
    assert slice_size(1_000_000) == slice_size(3_000_000) == 100_000
    assert slice_size(100_000) == 10_000
    assert slice_size(5) == 1


def test_slices_give_each_stretch_its_own_cpu_per_event_and_mark_the_ends() -> None:
    cut = slices(run([300, 200, 210, 190, 100]), 100_000)
    assert [round(s.us_per_event) for s in cut] == [300, 200, 210, 190, 100]
    assert [s.mark for s in cut] == ["fill", "", "", "", "drain"]
    assert [(s.first / 1000, s.last / 1000) for s in cut] == [(0, 100), (100, 200), (200, 300), (300, 400), (400, 500)]


def test_in_a_short_run_every_slice_holding_the_first_or_last_pipeline_events_is_fill_or_drain() -> None:
    assert PIPELINE == 30_000
    cut = slices(run([330, 300, 260, 200, 210, 190, 205, 150, 50, 30], 10_000, 2_500), 10_000)
    assert [s.mark for s in cut] == ["fill"] * 3 + [""] * 4 + ["drain"] * 3
    v = verdict(cut)
    assert v is not None and v.compared == 2 and v.early_us == pytest.approx(205) and v.within


def test_a_slice_ends_at_the_first_point_past_its_boundary_and_the_rest_is_the_last_slice() -> None:
    points = [(100.0, 0.0), (700.0, 0.06), (1300.0, 0.12), (1300.0, 0.5), (1800.0, 0.17), (2100.0, 0.20),
              (2300.0, 0.22)]
    cut = slices(points, 1000)
    assert [(s.first, s.last) for s in cut] == [(100, 1300), (1300, 2100), (2100, 2300)]
    assert cut[1].cpu_s == pytest.approx(0.08)
    assert slices([*points, (2300.0, 0.25)], 1000)[-1].cpu_s == pytest.approx(0.05)  # CPU with nothing delivered counts
    assert len(slices([(0.0, 0.0), (1000.0, 0.1), (1000.0, 0.2)], 1000)) == 1  # no slice without events
    assert slices([(5.0, 1.0)], 1000) == [] and slices([], 1000) == []


def test_flat_run_is_within_and_a_run_that_grows_is_not() -> None:
    flat = verdict(slices(run([400, 200, 210, 190, 205, 215, 60]), 100_000))
    assert flat is not None and flat.compared == 2 and flat.within
    assert flat.early_us == pytest.approx(205) and flat.late_us == pytest.approx(210)
    grows = verdict(slices(run([400, 200, 200, 200, 230, 230, 60]), 100_000))
    assert grows is not None and grows.ratio == pytest.approx(230 / 200) and not grows.within
    assert verdict_line(grows).endswith(
        "1.15x, NOT within 10% (steady slices 200-230; valid only while the stages keep pace with delivery)")


def test_the_verdict_weighs_slices_by_their_events_and_leaves_fill_and_drain_out() -> None:
    cut = [Slice(0, 100, 1.0, "fill"), Slice(100, 200, 0.020), Slice(200, 500, 0.090), Slice(500, 600, 0.030),
           Slice(600, 700, 0.030), Slice(700, 710, 1.0, "drain")]
    v = verdict(cut)
    assert v is not None and v.compared == 2
    assert v.early_us == pytest.approx(110_000 / 400) and v.late_us == pytest.approx(300)


def test_too_few_steady_slices_give_no_verdict() -> None:
    assert verdict(slices(run([300, 200, 100]), 100_000)) is None
    assert [s.mark for s in slices(run([300]), 100_000)] == ["fill"]  # a smoke run delivered in one stretch
    assert verdict([]) is None
    assert verdict_line(None).startswith("n/a")


def test_the_line_shows_every_slice_in_order_with_the_odd_ones_spelled_out() -> None:
    cut = slices([(2000.0, 0.0), (100_000.0, 29.4), (200_000.0, 49.4), (230_000.0, 52.4)], 100_000)
    assert slices_line(cut, 100_000) == "300 (fill, 2,000-100,000) 200 100 (drain, 200,000-230,000)"
    assert slices_line([], 100_000).startswith("n/a")
