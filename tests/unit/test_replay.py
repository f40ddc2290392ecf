"""Replay planning (``streams/replay.py``): times, offsets, types, filters, ranges, pacing."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from streams import replay
from streams.model import EventType
from tests.unit.builders import event

NOW = datetime(2026, 5, 1, 12, 0, tzinfo=UTC)


class TestParseTime:
    @pytest.mark.parametrize(
        ("text", "expected"),
        [
            ("2026-04-30T08:00:00Z", datetime(2026, 4, 30, 8, tzinfo=UTC)),
            ("2026-04-30T08:00:00+02:00", datetime(2026, 4, 30, 6, tzinfo=UTC)),
            ("2026-04-30 08:00", datetime(2026, 4, 30, 8, tzinfo=UTC)),  # no zone: UTC
            ("2026-04-30", datetime(2026, 4, 30, tzinfo=UTC)),
            ("1777536000000", datetime(2026, 4, 30, 8, tzinfo=UTC)),  # epoch milliseconds
            ("90s", NOW - timedelta(seconds=90)),
            ("15m", NOW - timedelta(minutes=15)),
            ("2h", NOW - timedelta(hours=2)),
            ("1.5d", NOW - timedelta(hours=36)),
            ("1w", NOW - timedelta(days=7)),
        ],
    )
    def test_accepted_forms(self, text: str, expected: datetime) -> None:
        assert replay.parse_time(text, NOW) == expected

    @pytest.mark.parametrize("text", ["yesterday", "2h ago", "-5m", "12345", ""])
    def test_rejects_anything_else(self, text: str) -> None:
        with pytest.raises(ValueError):
            replay.parse_time(text, NOW)


class TestParseOffsets:
    def test_pairs(self) -> None:
        assert replay.parse_offsets("0:120, 3:4000,") == {0: 120, 3: 4000}

    @pytest.mark.parametrize("text", ["", "0", "0:-1", "a:1", "0:1,0:2", "1:2:3"])
    def test_rejects_malformed(self, text: str) -> None:
        with pytest.raises(ValueError):
            replay.parse_offsets(text)


class TestParseTypes:
    def test_known_types_any_case(self) -> None:
        assert replay.parse_types("identify, Track,") == {EventType.IDENTIFY, EventType.TRACK}

    def test_unknown_type_is_named(self) -> None:
        with pytest.raises(ValueError, match="'purchase'"):
            replay.parse_types("track,purchase")


class TestEventFilter:
    def test_empty_filter_keeps_everything_and_is_inactive(self) -> None:
        f = replay.EventFilter()
        assert not f.active
        assert f.matches(event(EventType.PAGE))

    @pytest.mark.parametrize(
        ("f", "kept"),
        [
            (replay.EventFilter(types=frozenset({EventType.IDENTIFY})), False),
            (replay.EventFilter(types=frozenset({EventType.TRACK})), True),
            (replay.EventFilter(user="u-1"), True),
            (replay.EventFilter(user="jane@example.com"), True),
            (replay.EventFilter(user="dev-1"), True),
            (replay.EventFilter(user="u-2"), False),
            (replay.EventFilter(types=frozenset({EventType.TRACK}), user="u-2"), False),
        ],
    )
    def test_types_and_user(self, f: replay.EventFilter, kept: bool) -> None:
        ev = event(user_id="u-1", email="jane@example.com", anonymous_id="dev-1")
        assert f.active
        assert f.matches(ev) is kept


class TestPlanRanges:
    def test_time_range_per_partition(self) -> None:
        planned = replay.plan_ranges(
            [0, 1, 2],
            beginnings={0: 0, 1: 0, 2: 0},
            ends={0: 100, 1: 50, 2: 10},
            starts={0: 40, 1: None, 2: 3},  # partition 1: nothing at or after the time
            stops={0: 70, 1: None, 2: None},  # partitions 1 and 2: up to the end offset
        )
        assert planned == (replay.PartitionRange(0, 40, 70), replay.PartitionRange(2, 3, 10))

    def test_partitions_without_a_start_are_not_replayed(self) -> None:
        planned = replay.plan_ranges([0, 1], {0: 0, 1: 0}, {0: 5, 1: 5}, {1: 2})
        assert planned == (replay.PartitionRange(1, 2, 5),)

    def test_start_before_retention_moves_up_and_empty_ranges_vanish(self) -> None:
        planned = replay.plan_ranges([0, 1], {0: 30, 1: 9}, {0: 40, 1: 9}, {0: 0, 1: 0})
        assert planned == (replay.PartitionRange(0, 30, 40),)

    def test_stop_beyond_the_end_offset_is_clamped(self) -> None:
        # Records produced after the replay started are live traffic, not part of the range.
        assert replay.plan_ranges([0], {0: 0}, {0: 10}, {0: 0}, {0: 99}) == (replay.PartitionRange(0, 0, 10),)

    def test_size(self) -> None:
        assert replay.PartitionRange(0, 5, 12).size == 7
        assert replay.PartitionRange(0, 12, 5).size == 0


class TestPacer:
    def test_spaces_records_at_the_rate(self) -> None:
        now = [100.0]
        pacer = replay.Pacer(10.0, lambda: now[0])
        delays = [pacer.delay() for _ in range(4)]
        assert delays == pytest.approx([0.0, 0.1, 0.2, 0.3])
        now[0] += 1.0  # time passed: the next record is already late, no wait
        assert pacer.delay() == 0.0

    def test_unbounded(self) -> None:
        pacer = replay.Pacer(None, lambda: 0.0)
        assert [pacer.delay() for _ in range(3)] == [0.0, 0.0, 0.0]

    def test_rejects_non_positive_rate(self) -> None:
        with pytest.raises(ValueError):
            replay.Pacer(0, lambda: 0.0)


def test_default_rate_leaves_live_traffic_half_of_the_bulk_event_ceiling() -> None:
    from streams.emulator.config import DEFAULT_RATE_LIMITS

    event_ceiling = DEFAULT_RATE_LIMITS["/api/events/trackBulk"] * 1000
    assert event_ceiling / 2 >= replay.DEFAULT_REPLAY_RATE
