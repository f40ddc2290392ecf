"""Issue 19 goal 5 inside one run: the worker's CPU per source event in consecutive slices of the run, and whether
the late slices cost what the early ones did.

Two runs of the same length differ by 27-29% on a shared machine (bench/RESULTS.md, "what grows, by function"),
so one run per length cannot show a 10% growth; the slices of one run share its machine and its load.

The input is a series of ``(source events delivered so far, worker CPU seconds)`` points, from the first
delivery on, as ``bench_e2e`` polls the emulator. A slice ends at the first point at or past each multiple of
``size`` events, so slices are "about" ``size``: a point every 0.5 s at ~4,000 events/s puts each cut within
~2,000 events of its multiple. The first slice is marked ``fill`` (the work on records still in the pipeline when
it ends is charged to it) and the last ``drain`` (it gets that work back), and so is any slice holding one of the
first or last ``PIPELINE`` events; the verdict leaves them out.

Slices are cut by delivered events, but the CPU is spent where the work is done: when the upstream stages run
ahead of delivery (a run of 2026-12-01 had about 300,000 events decoded and mapped but not yet delivered), the
early slices carry the late events' upstream work and the verdict reads a fall that is not there. The line
says so; it holds only while the stages keep pace with delivery.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

WITHIN = 0.10  # goal 5: within 10%
FULL_RUN = 1_000_000
SLICE = 100_000
# Events in flight between the source and the emulator: in a 100,000 run (2026-12-01, slices of 10,000) the last
# ~16,000-25,000 delivered cost 33-44 µs each against ~200, their work done before the source ran out.
PIPELINE = 30_000


@dataclass(frozen=True)
class Slice:
    first: float  # source events delivered when the slice began
    last: float  # ... and when it ended
    cpu_s: float  # worker CPU seconds in between
    mark: str = ""  # "fill" (the first slice), "drain" (the last one), else ""

    @property
    def events(self) -> float:
        return self.last - self.first

    @property
    def us_per_event(self) -> float:
        return self.cpu_s / self.events * 1e6


def slice_size(events: int) -> int:
    """100,000 events for a run of 1,000,000 or more, else a tenth of the run (at least 1)."""
    return SLICE if events >= FULL_RUN else max(events // 10, 1)


def slices(points: Sequence[tuple[float, float]], size: float) -> list[Slice]:
    """Cut ``(events, cpu_s)`` points into slices ending at the first point at or past each multiple of ``size``;
    the remainder after the last multiple is the last slice (if it has events)."""
    if not points:
        return []
    out: list[tuple[float, float, float]] = []
    start, end = points[0], points[-1]
    boundary = (start[0] // size + 1) * size
    for point in points[1:]:
        if point[0] >= boundary:
            out.append((start[0], point[0], point[1] - start[1]))
            start, boundary = point, (point[0] // size + 1) * size
    if end[0] > start[0]:
        out.append((start[0], end[0], end[1] - start[1]))
    begin, finish = points[0][0] + PIPELINE, end[0] - PIPELINE
    return [Slice(first, last, cpu, "fill" if n == 0 or first < begin else
                  "drain" if n == len(out) - 1 or last > finish else "")
            for n, (first, last, cpu) in enumerate(out)]


@dataclass(frozen=True)
class Verdict:
    early_us: float  # CPU per event over the first half of the steady slices (events-weighted)
    late_us: float  # ... over the last half
    compared: int  # slices on each side
    low: float  # the cheapest steady slice, µs per event
    high: float  # the dearest

    @property
    def ratio(self) -> float:
        return self.late_us / self.early_us

    @property
    def within(self) -> bool:
        return abs(self.ratio - 1) <= WITHIN


def verdict(cut: Sequence[Slice]) -> Verdict | None:
    """The last half of the steady slices (neither fill nor drain) against the first half; None with fewer
    than two steady slices (a run too short to have them, or a smoke run delivered in one poll)."""
    steady = [s for s in cut if not s.mark]
    half = len(steady) // 2
    if half == 0:
        return None
    early, late = steady[:half], steady[-half:]
    costs = [s.us_per_event for s in steady]
    return Verdict(_us(early), _us(late), half, min(costs), max(costs))


def _us(cut: Sequence[Slice]) -> float:
    return sum(s.cpu_s for s in cut) / sum(s.events for s in cut) * 1e6


def slices_line(cut: Sequence[Slice], size: float) -> str:
    """``262 (fill, 1,843-101,020) 240 193 ... 150 (drain, 900,410-1,000,000)``: µs per event, in order."""
    if not cut:
        return "n/a: no records delivered between two polls"
    shown = []
    for s in cut:
        text = f"{s.us_per_event:.0f}"
        if s.mark or abs(s.events - size) > size / 4:
            what = ", ".join(filter(None, [s.mark, f"{s.first:,.0f}-{s.last:,.0f}"]))
            text += f" ({what})"
        shown.append(text)
    return " ".join(shown)


def verdict_line(v: Verdict | None) -> str:
    if v is None:
        return "n/a: fewer than 2 slices outside the fill and the drain"
    side = "slice" if v.compared == 1 else f"{v.compared} slices"
    return (f"last {side} {v.late_us:.1f} us/event against first {side} after the fill {v.early_us:.1f}: "
            f"{v.ratio:.2f}x, {'within' if v.within else 'NOT within'} {WITHIN:.0%} "
            f"(steady slices {v.low:.0f}-{v.high:.0f}; valid only while the stages keep pace with delivery)")
