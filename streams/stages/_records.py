"""What a stage reads: faust's events and frames as the stages see them, and the hook that makes one
of them current for table writes."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
from typing import Any, Protocol

__all__ = ["Coordinates", "EnterRecord", "InputRecord", "let_others_run", "nothing_to_enter"]


class Coordinates(Protocol):
    @property
    def topic(self) -> str: ...

    @property
    def partition(self) -> int: ...

    @property
    def offset(self) -> int: ...


class InputRecord(Protocol):
    """A consumed Kafka record: faust's ``Event`` is one (its ``message`` carries the coordinates)."""

    @property
    def key(self) -> bytes | None: ...

    @property
    def value(self) -> bytes | None: ...

    @property
    def headers(self) -> Mapping[str, bytes] | None: ...

    @property
    def message(self) -> Coordinates: ...


EnterRecord = Callable[[Any], None]
"""Called with each record before the stage handles it. In the worker it makes the record faust's
current event, through which a table write finds its changelog partition; tests need nothing."""


def nothing_to_enter(record: Any) -> None:
    """The ``EnterRecord`` of a stage outside faust."""


async def let_others_run() -> None:
    """Hands the event loop to the worker's other tasks between frames. The sender's calls are issued and answered
    on the same loop as the stages; under a backlog, a take of eight full frames held the loop for most of a
    second at a time, and Iterable's budget went unused meanwhile (bench_ceiling, issue 19 goal 3)."""
    await asyncio.sleep(0)
