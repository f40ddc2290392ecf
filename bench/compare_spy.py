"""Compare two raw py-spy profiles of the worker by function: µs per event in each run, and what grew.

    python -m bench.compare_spy SHORT.spy:EVENTS[:US] LONG.spy:EVENTS[:US] [--top 30] [--sort self|incl]
                                [--by function|line|file|part] [--match TEXT]

Each file is what ``py-spy record --format raw`` wrote (``bench_e2e`` keeps it with ``BENCH_KEEP_SPY=path``):
one line per distinct stack, ``frame;frame;...;leaf count``, each frame ``function (path:line)``. Several
runs of the same length may be pooled with ``+`` (``a.spy:100000:237+b.spy:100000:224``): each run is
scaled by its own figures and the runs are weighted by their events.

A function's cost per event is its share of the samples times the run's CPU per event: with ``US`` (the
measured worker µs per event that ``bench_e2e`` prints) the shares are scaled to it, as the budget is;
without it, each sample counts 1/``--rate`` s of CPU. "self" counts the samples whose leaf is the function,
"incl" those with the function anywhere on the stack (once per stack, however deep the recursion).
Rows are sorted by the growth of ``--sort`` (self or incl) from the first run to the second, in µs per event;
``±`` is one standard deviation of that difference from the sample counts alone (Poisson), so a growth
within two of it is noise; run-to-run spread (load on a shared machine) comes on top and is not in it.
``--by part`` groups by the budget's parts (``bench/_budget.py``), as ``bench_e2e``'s budget line does.
"""

from __future__ import annotations

import argparse
import math
import re
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass

from bench._budget import part_of

_FRAME = re.compile(r"^(?P<function>.*?) \((?P<path>.*):(?P<line>\d+)\)$")
_SHORT = re.compile(r"^.*/(site-packages|lib/python3\.\d+)/")


def _key(frame: str, by: str) -> str:
    match = _FRAME.match(frame.strip())
    if match is None:
        return frame.strip()
    path = _SHORT.sub("", match["path"])
    if by == "file":
        return path
    if by == "line":
        return f"{path}:{match['line']} {match['function']}"
    return f"{path}:{match['function']}"


@dataclass
class Profile:
    """µs per event and its Poisson variance, per key, of one run or of several runs of the same length."""

    events: int
    samples: int
    total: float
    self_: dict[str, tuple[float, float]]
    incl: dict[str, tuple[float, float]]


def stacks(lines: Iterable[str]) -> Iterable[tuple[list[str], int]]:
    for line in lines:
        stack, _, count = line.rstrip().rpartition(" ")
        if stack and count.isdigit():
            yield stack.split(";"), int(count)


def _count(name: str, by: str) -> tuple[int, Counter[str], Counter[str]]:
    self_: Counter[str] = Counter()
    incl: Counter[str] = Counter()
    total = 0
    with open(name) as handle:
        for frames, count in stacks(handle):
            total += count
            if by == "part":
                self_[part_of(";".join(frames))[0]] += count
                continue
            self_[_key(frames[-1], by)] += count
            for key in {_key(frame, by) for frame in frames}:
                incl[key] += count
    return total, self_, (self_.copy() if by == "part" else incl)


def load(spec: str, by: str, rate: float) -> Profile:
    """``a.spy:EVENTS[:US][+b.spy:EVENTS[:US]...]``: runs of the same length are pooled weighted by their
    events, each scaled by its own measured µs per event."""
    runs = []
    for part in spec.split("+"):
        name, _, rest = part.partition(":")
        events_text, _, us_text = rest.partition(":")
        if not events_text:
            raise SystemExit(f"{part}: give the run's source events, file.spy:EVENTS[:US]")
        events = int(events_text.replace(",", "").replace("_", ""))
        total, self_, incl = _count(name, by)
        per_sample = float(us_text) / total if us_text else 1e6 / rate / events  # µs per event of one sample
        runs.append((events, total, per_sample, self_, incl))
    events = sum(run[0] for run in runs)

    def pool(which: int) -> dict[str, tuple[float, float]]:
        out: dict[str, tuple[float, float]] = {}
        for run_events, _total, per_sample, *counters in runs:
            weight = run_events / events
            for key, n in counters[which].items():
                value, variance = out.get(key, (0.0, 0.0))
                out[key] = (value + n * per_sample * weight, variance + n * (per_sample * weight) ** 2)
        return out

    return Profile(
        events, sum(run[1] for run in runs), sum(run[1] * run[2] * run[0] / events for run in runs), pool(0), pool(1)
    )


def compare(a: Profile, b: Profile, sort: str, top: int, width: int, match: str | None) -> list[str]:
    keys = set(a.incl) | set(b.incl) | set(a.self_) | set(b.self_)
    if match:
        keys = {key for key in keys if match in key}
    zero = (0.0, 0.0)

    def row(key: str) -> tuple[float, ...]:
        (s_a, v_sa), (s_b, v_sb) = a.self_.get(key, zero), b.self_.get(key, zero)
        (i_a, v_ia), (i_b, v_ib) = a.incl.get(key, zero), b.incl.get(key, zero)
        return s_a, s_b, i_a, i_b, math.sqrt(v_sa + v_sb), math.sqrt(v_ia + v_ib)

    rows = {key: row(key) for key in keys}
    index = 0 if sort == "self" else 2
    other = 2 - index
    ordered = sorted(
        rows, key=lambda k: (rows[k][index + 1] - rows[k][index], rows[k][other + 1] - rows[k][other]), reverse=True
    )
    head = (
        f"{'function':<{width}} {'self A':>7} {'self B':>7} {'Δself':>7} {'±':>5}   "
        f"{'incl A':>7} {'incl B':>7} {'Δincl':>7} {'±':>5}"
    )
    lines = [
        f"A: {a.events:,} events, {a.samples:,} samples, {a.total:.1f} us/event; "
        f"B: {b.events:,} events, {b.samples:,} samples, {b.total:.1f} us/event; "
        f"B - A = {b.total - a.total:+.1f} us/event (columns in us per event, sorted by the growth of {sort})",
        head,
        "-" * len(head),
    ]
    for key in ordered[:top]:
        s_a, s_b, i_a, i_b, e_s, e_i = rows[key]
        name = key if len(key) <= width else "…" + key[-(width - 1) :]
        lines.append(
            f"{name:<{width}} {s_a:7.1f} {s_b:7.1f} {s_b - s_a:+7.1f} {e_s:5.1f}   "
            f"{i_a:7.1f} {i_b:7.1f} {i_b - i_a:+7.1f} {e_i:5.1f}"
        )
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("short", help="FILE.spy:EVENTS[:US][+FILE.spy:EVENTS[:US]...] of the shorter run(s)")
    parser.add_argument("long", help="the same for the longer run")
    parser.add_argument("--by", choices=("function", "line", "file", "part"), default="function")
    parser.add_argument("--sort", choices=("self", "incl"), default="self")
    parser.add_argument("--top", type=int, default=30)
    parser.add_argument("--rate", type=float, default=100.0, help="py-spy's --rate, when no US is given")
    parser.add_argument("--width", type=int, default=78)
    parser.add_argument("--match", help="only keys containing this text")
    args = parser.parse_args()
    a, b = load(args.short, args.by, args.rate), load(args.long, args.by, args.rate)
    print("\n".join(compare(a, b, args.sort, args.top, args.width, args.match)))


if __name__ == "__main__":
    main()
