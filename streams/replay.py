"""Replay planning: time and offset arguments, per-partition ranges, record filters, pacing.

The pure part of ``freshpaint-iterable replay`` and ``dead-letters``: no Kafka here, so every rule
(what a time means, which offsets a range covers, which events a filter keeps, how fast a replay
may go) is tested without a broker. The Kafka I/O lives in ``streams.commands.replay``.

How a replay reaches Iterable (the design, also in ``replay --help``): the worker's first stage
consumes BOTH the source topic and the replay topic (``FPI_REPLAY_TOPIC``). ``replay`` reads a
range of the source topic with its own consumer that has no consumer group (partitions assigned
by hand, positions set by seek, nothing committed) and produces the selected records unchanged
(same key, same value bytes) to the replay topic. The live consumer group's offsets are never
read or written. Safety comes from the mapping core: deterministic Iterable ids (a replayed event
updates the stored one instead of adding a copy) and the stale-identify rule (an identify older
than the person's last applied identify is dropped, so a replay cannot regress a profile).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from streams.model import Event, EventType

__all__ = [
    "DEFAULT_REPLAY_RATE",
    "REPLAY_SOURCE_HEADER",
    "EventFilter",
    "Pacer",
    "PartitionRange",
    "parse_offsets",
    "parse_time",
    "parse_types",
    "plan_ranges",
]

DEFAULT_REPLAY_RATE = 5000.0
"""Records per second a replay produces by default.

Iterable's bulk endpoints take 1000 records per call at 10 calls/s (``events/trackBulk``) and
5 calls/s (``users/bulkUpdate``), so about 10,000 events/s and 5,000 users/s per project, shared by
every sender of the project. The worker's sender throttles to those limits for live and replayed
traffic together; 5,000/s keeps a replay at about half of the event ceiling (and at the user
ceiling only for an all-identify range), so live traffic keeps its share instead of queueing
behind a replay backlog.
"""

REPLAY_SOURCE_HEADER = "fpi-source"
"""Header naming ``topic:partition:offset`` of the original record (``streams.app.SOURCE_HEADER``):
dead letters of a replayed record then point at the source record it copies."""

_RELATIVE = re.compile(r"^(\d+(?:\.\d+)?)\s*([smhdw])$")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


def parse_time(text: str, now: datetime) -> datetime:
    """A point in time from ISO 8601 (``2026-05-01T12:00:00Z``; no zone means UTC), epoch
    milliseconds (13 digits or more), or a duration ago (``90s``, ``15m``, ``2h``, ``3d``, ``1w``).

    Raises ``ValueError`` for anything else.
    """
    value = text.strip()
    match = _RELATIVE.match(value)
    if match:
        return now - timedelta(**{_UNITS[match.group(2)]: float(match.group(1))})
    if value.isdigit() and len(value) >= 13:
        return datetime.fromtimestamp(int(value) / 1000, UTC)
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(
            f"{text!r} is not an ISO 8601 time, epoch milliseconds or a duration like 15m / 2h / 3d"
        ) from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def parse_offsets(text: str) -> dict[int, int]:
    """``"0:120,3:4000"`` -> ``{0: 120, 3: 4000}`` (partition: first offset to replay).

    Raises ``ValueError`` for a malformed pair, a negative number or a partition named twice.
    """
    offsets: dict[int, int] = {}
    for pair in text.split(","):
        if not pair.strip():
            continue
        partition, sep, offset = pair.strip().partition(":")
        if not sep or not partition.strip().isdigit() or not offset.strip().isdigit():
            raise ValueError(f"{pair.strip()!r} is not partition:offset (e.g. 0:120)")
        number = int(partition)
        if number in offsets:
            raise ValueError(f"partition {number} is named twice")
        offsets[number] = int(offset)
    if not offsets:
        raise ValueError("no partition:offset pairs given")
    return offsets


def parse_types(text: str) -> frozenset[EventType]:
    """``"identify,track"`` -> the event types. Raises ``ValueError`` naming an unknown type."""
    types: set[EventType] = set()
    for name in text.split(","):
        name = name.strip().lower()
        if not name:
            continue
        try:
            types.add(EventType(name))
        except ValueError:
            known = ", ".join(t.value for t in EventType)
            raise ValueError(f"unknown event type {name!r} (known: {known})") from None
    return frozenset(types)


@dataclass(frozen=True, slots=True)
class EventFilter:
    """Which decoded events a replay keeps: all, or those of ``types`` and/or of one ``user``.

    ``user`` matches an event whose user id, email or anonymous (device) id equals it.
    """

    types: frozenset[EventType] = frozenset()
    user: str | None = None

    @property
    def active(self) -> bool:
        """Whether the filter can reject anything (undecodable records then cannot be kept)."""
        return bool(self.types) or self.user is not None

    def matches(self, event: Event) -> bool:
        if self.types and event.type not in self.types:
            return False
        return self.user is None or self.user in (event.user_id, event.email, event.anonymous_id)


@dataclass(frozen=True, slots=True)
class PartitionRange:
    """Offsets ``[start, end)`` of one partition to replay."""

    partition: int
    start: int
    end: int

    @property
    def size(self) -> int:
        return max(0, self.end - self.start)


def plan_ranges(
    partitions: Iterable[int],
    beginnings: Mapping[int, int],
    ends: Mapping[int, int],
    starts: Mapping[int, int | None],
    stops: Mapping[int, int | None] | None = None,
) -> tuple[PartitionRange, ...]:
    """The non-empty ranges to replay, by partition.

    ``beginnings``/``ends``: the partitions' log start and end offsets when the replay starts (the
    end is fixed then: records produced later are live traffic, not replay). ``starts``: where each
    partition's range begins (offsets-for-times of ``--from-time``, or ``--from-offsets``); a
    partition missing from ``starts`` is not replayed, and ``None`` means no record at or after
    the time, so nothing. ``stops``: exclusive ends (offsets-for-times of ``--to-time``); missing or
    ``None`` means the end offset. Starts before the log start (deleted by retention) are moved up.
    """
    planned: list[PartitionRange] = []
    for partition in sorted(partitions):
        if partition not in starts or starts[partition] is None:
            continue
        start = starts[partition]
        assert start is not None
        end = ends.get(partition, 0)
        stop = (stops or {}).get(partition)
        if stop is not None:
            end = min(end, stop)
        start = max(start, beginnings.get(partition, 0))
        if end > start:
            planned.append(PartitionRange(partition, start, end))
    return tuple(planned)


class Pacer:
    """Spaces records ``1 / rate`` seconds apart on average (no bursts above one record).

    ``delay()`` returns how long to wait before the next record and counts it as sent. ``clock``
    is injected (``time.monotonic`` in the command) so the rule is tested without sleeping.
    """

    def __init__(self, rate: float | None, clock: Callable[[], float]) -> None:
        if rate is not None and rate <= 0:
            raise ValueError("rate must be positive")
        self.rate = rate
        self.clock = clock
        self.started = clock()
        self.sent = 0

    def delay(self) -> float:
        due = 0.0
        if self.rate is not None:
            due = max(0.0, self.started + self.sent / self.rate - self.clock())
        self.sent += 1
        return due
