"""``python -m streams worker`` with the garbage collector's CPU time counted (``gc.callbacks``).

A sampling profiler charges a collection to whatever Python line allocated when it began, so GC shows
up nowhere by name; this wrapper measures it directly and writes to ``$BENCH_GC_FILE`` at most twice a
second (all cumulative since start): ``gc_seconds`` and ``cpu_seconds`` for ``bench_e2e``'s CPU budget,
and per generation ``collections``, ``seconds`` and, for generation 2, the tracked objects it scanned at
its last collection (``gen2_objects``: what a full collection walks, frozen objects excluded) — what tells
a cost per event that grows with the run's length from one that does not. ``BENCH_GC_TYPES=1`` adds
the commonest types among those objects (``gen2_types``); ``BENCH_GC_LOG=path`` appends one line per
collection: CPU time, generation, milliseconds, objects collected, objects left in each generation
(and, with both set, the commonest types in the young generation before every tenth young collection).
"""

from __future__ import annotations

import gc
import json
import os
import runpy
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

_OUT = Path(os.environ["BENCH_GC_FILE"])
_TYPES = bool(os.environ.get("BENCH_GC_TYPES"))  # also the 15 commonest types a full collection walks
_types: dict[str, int] = {}
_state = {"started": 0.0, "total": 0.0, "written": 0.0, "gen2_objects": 0.0}
_collections = [0, 0, 0]
_seconds = [0.0, 0.0, 0.0]
_collected = [0, 0, 0]
_LOG = Path(os.environ["BENCH_GC_LOG"]) if os.environ.get("BENCH_GC_LOG") else None


def _on_gc(phase: str, info: dict[str, Any]) -> None:
    now = time.process_time()
    if phase == "start":
        _state["started"] = now
        if info["generation"] == 2:
            # Every generation, the frozen objects left out: what this collection will walk.
            tracked = gc.get_objects()
            _state["gen2_objects"] = float(len(tracked))
            if _TYPES:
                _types.clear()
                _types.update(Counter(type(o).__qualname__ for o in tracked).most_common(15))
            del tracked
            _state["started"] = time.process_time()  # counting them is not the collector's time
        elif _LOG is not None and _TYPES and _collections[0] % 10 == 0:
            young = Counter(type(o).__qualname__ for o in gc.get_objects(0)).most_common(12)
            with _LOG.open("a") as log:
                log.write(json.dumps(["young", _collections[0], young]) + "\n")
            _state["started"] = time.process_time()
        return
    spent = now - _state["started"]
    _state["total"] += spent
    generation = info["generation"]
    _collections[generation] += 1
    _seconds[generation] += spent
    _collected[generation] += info["collected"]
    if _LOG is not None:
        with _LOG.open("a") as log:
            log.write(json.dumps([round(now, 2), generation, round(spent * 1e3, 2), info["collected"],
                                  [len(gc.get_objects(g)) for g in range(3)]]) + "\n")
    wall = time.monotonic()
    if wall - _state["written"] >= 0.5 or generation == 2:
        _state["written"] = wall
        _OUT.write_text(json.dumps({"gc_seconds": _state["total"], "cpu_seconds": now,
                                    "collections": _collections, "seconds": _seconds, "collected": _collected,
                                    "gen2_objects": int(_state["gen2_objects"]), "gen2_types": _types}))


def main() -> None:
    gc.callbacks.append(_on_gc)
    sys.argv = ["streams", "worker"]
    runpy.run_module("streams", run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    main()
