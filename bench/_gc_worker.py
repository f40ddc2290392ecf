"""``python -m streams worker`` with the garbage collector's CPU time counted (``gc.callbacks``).

A sampling profiler charges a collection to whatever Python line allocated when it began, so GC shows
up nowhere by name; this wrapper measures it directly and writes ``{"gc_seconds", "cpu_seconds"}`` (both
cumulative since start) to ``$BENCH_GC_FILE`` at most twice a second, for ``bench_e2e``'s CPU budget.
"""

from __future__ import annotations

import gc
import os
import runpy
import sys
import time
from pathlib import Path
from typing import Any

_OUT = Path(os.environ["BENCH_GC_FILE"])
_state = {"started": 0.0, "total": 0.0, "written": 0.0}


def _on_gc(phase: str, info: dict[str, Any]) -> None:
    now = time.process_time()
    if phase == "start":
        _state["started"] = now
        return
    _state["total"] += now - _state["started"]
    wall = time.monotonic()
    if wall - _state["written"] >= 0.5:
        _state["written"] = wall
        _OUT.write_text(f'{{"gc_seconds": {_state["total"]}, "cpu_seconds": {now}}}')


def main() -> None:
    gc.callbacks.append(_on_gc)
    sys.argv = ["streams", "worker"]
    runpy.run_module("streams", run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    main()
