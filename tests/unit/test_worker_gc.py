"""The worker's start-up settings for CPython's cyclic garbage collector (issue 19 goal 5)."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest

from streams.commands.worker import YOUNG_THRESHOLD, _collect_garbage_less_often

# Live objects in flight under a backlog, counted by bench/_gc_worker.py (BENCH_GC_LOG) in bench_e2e.
MEASURED_WORKING_SET = 50_000


@pytest.fixture
def restore_gc() -> Iterator[None]:
    threshold = gc.get_threshold()
    try:
        yield
    finally:
        gc.unfreeze()
        gc.set_threshold(*threshold)


@pytest.mark.usefixtures("restore_gc")
def test_start_up_freezes_the_heap_and_raises_the_young_threshold() -> None:
    survivor = [object()]  # a container alive at start-up: frozen, out of every later collection's walk
    assert gc.is_tracked(survivor)
    gc.unfreeze()
    assert gc.get_freeze_count() == 0

    _collect_garbage_less_often()

    assert gc.get_freeze_count() > 0
    assert not any(o is survivor for o in gc.get_objects())
    assert gc.get_threshold() == (YOUNG_THRESHOLD, 50, 100)


def test_young_threshold_is_above_the_working_set() -> None:
    """At or below the live objects in flight, every young collection walks the whole batch and frees nothing."""
    assert YOUNG_THRESHOLD >= 2 * MEASURED_WORKING_SET
