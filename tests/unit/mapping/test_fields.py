from __future__ import annotations

import calendar
import math
import re
from datetime import UTC, date, datetime, timedelta, timezone
from enum import StrEnum
from types import MappingProxyType
from typing import Any

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from streams.mapping.fields import (
    MANAGED_PROFILE_FIELDS,
    clean_data_fields,
    created_at,
    datetime_from_epoch,
    format_datetime,
    normalize_date_string,
    normalize_value,
    parse_timestamp,
    safe_key,
)

ITERABLE_FORMAT = re.compile(r"\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2} \+00:00")


class TestNormalizeDateString:
    @pytest.mark.parametrize(
        ("text", "expected"),
        [
            ("2024-03-05T14:07:00Z", "2024-03-05 14:07:00 +00:00"),
            ("2024-03-05T14:07:00.123Z", "2024-03-05 14:07:00 +00:00"),
            ("2024-03-05T14:07:00.123456789+00:00", "2024-03-05 14:07:00 +00:00"),
            ("2024-03-05T15:07:00+01:00", "2024-03-05 14:07:00 +00:00"),
            ("2024-03-05T09:07:00-0500", "2024-03-05 14:07:00 +00:00"),
            ("2024-03-05 14:07:00", "2024-03-05 14:07:00 +00:00"),
            ("2020-04-13 13:37:19.039", "2020-04-13 13:37:19 +00:00"),  # known-bad form, §6.2
            ("2024-03-05 14:07:00 +00:00", "2024-03-05 14:07:00 +00:00"),
            ("2024-03-05T14:07", "2024-03-05 14:07:00 +00:00"),
            ("2024-03-06T00:30:00+02:00", "2024-03-05 22:30:00 +00:00"),
        ],
    )
    def test_datetimes_become_iterable_format(self, text: str, expected: str) -> None:
        assert normalize_date_string(text) == expected

    @pytest.mark.parametrize("text", ["2024-03-05", "1990-07-14", "2000-02-29"])
    def test_date_only_stays(self, text: str) -> None:
        assert normalize_date_string(text) == text

    @pytest.mark.parametrize(
        "text",
        [
            "1234",
            "20240305",
            "1717171717",
            "2024",
            "2024-03",
            "2024-02-30",
            "2023-02-29",
            "2024-13-01",
            "2024-03-05T25:00:00Z",
            "2024-03-05T14:07:00+25:00",
            "March 5, 2024",
            "",
            "pro",
            "12:00",
            " 2024-03-05",
            "2024-03-05T14:07:00ZZ",
        ],
    )
    def test_non_dates_are_left_alone(self, text: str) -> None:
        assert normalize_date_string(text) is None

    @given(st.integers(min_value=0, max_value=10**12))
    def test_digit_strings_are_never_dates(self, number: int) -> None:
        assert normalize_date_string(str(number)) is None

    @given(st.from_regex(r"[0-9]{1,12}", fullmatch=True))
    def test_any_numeric_looking_string_is_not_a_date(self, text: str) -> None:
        assert normalize_value(text) == text

    @given(
        st.datetimes(
            min_value=datetime(1900, 1, 1),
            max_value=datetime(2200, 1, 1),
            timezones=st.sampled_from(
                [UTC, timezone(timedelta(hours=5, minutes=30)), timezone(timedelta(hours=-7))]
            ),
        )
    )
    def test_isoformat_round_trips_to_the_same_instant(self, value: datetime) -> None:
        formatted = normalize_date_string(value.isoformat())
        assert formatted is not None and ITERABLE_FORMAT.fullmatch(formatted)
        back = datetime.strptime(formatted, "%Y-%m-%d %H:%M:%S +00:00").replace(tzinfo=UTC)
        assert back == value.replace(microsecond=0)

    @given(st.dates())
    def test_date_only_is_unchanged(self, value: object) -> None:
        text = value.isoformat()  # type: ignore[attr-defined]
        assert normalize_date_string(text) == text

    @given(st.text(max_size=30))
    def test_output_is_none_date_only_or_iterable_format(self, text: str) -> None:
        result = normalize_date_string(text)
        assert result is None or result == text or ITERABLE_FORMAT.fullmatch(result)


class TestParseTimestamp:
    def test_rfc3339(self) -> None:
        assert parse_timestamp("2022-12-28T21:16:50Z") == datetime(2022, 12, 28, 21, 16, 50, tzinfo=UTC)

    def test_offset_is_converted_to_utc(self) -> None:
        parsed = parse_timestamp("2022-12-28T23:16:50.5+02:00")
        assert parsed == datetime(2022, 12, 28, 21, 16, 50, 500000, tzinfo=UTC)
        assert parsed.tzinfo is UTC

    @pytest.mark.parametrize("text", ["yesterday", "1672262210", ""])
    def test_rejects(self, text: str) -> None:
        with pytest.raises(ValueError):
            parse_timestamp(text)


class TestEpoch:
    def test_seconds_float(self) -> None:
        assert datetime_from_epoch(1709647620.125) == datetime(2024, 3, 5, 14, 7, 0, 125000, tzinfo=UTC)

    def test_milliseconds_detected(self) -> None:
        assert datetime_from_epoch(1709647620000) == datetime(2024, 3, 5, 14, 7, tzinfo=UTC)

    @pytest.mark.parametrize("value", [True, math.nan, math.inf, 10**20])
    def test_rejects(self, value: float) -> None:
        with pytest.raises(ValueError):
            datetime_from_epoch(value)

    @given(
        st.datetimes(min_value=datetime(1971, 1, 1), max_value=datetime(2999, 1, 1), timezones=st.just(UTC))
    )
    @example(datetime(2515, 1, 1, 0, 0, 0, 999999, tzinfo=UTC))  # a float timestamp rounds it up a second
    def test_created_at_is_unix_seconds(self, value: datetime) -> None:
        seconds = created_at(value)
        assert isinstance(seconds, int)
        assert datetime.fromtimestamp(seconds, UTC) == value.replace(microsecond=0)

    @given(st.datetimes(min_value=datetime(2, 1, 1), max_value=datetime(9998, 12, 31),
                        timezones=st.none() | st.timezones()))
    def test_created_at_is_the_calendar_seconds(self, value: datetime) -> None:
        assert created_at(value) == calendar.timegm(value.utctimetuple())  # naive: read as UTC, as timegm does


class TestFormatDatetime:
    def test_naive_is_utc(self) -> None:
        assert format_datetime(datetime(2000, 1, 1)) == "2000-01-01 00:00:00 +00:00"

    def test_aware_is_converted(self) -> None:
        value = datetime(2000, 1, 1, tzinfo=timezone(timedelta(hours=-4)))
        assert format_datetime(value) == "2000-01-01 04:00:00 +00:00"


class TestSafeKey:
    @pytest.mark.parametrize(
        ("key", "expected"),
        [
            ("$current_url", "current_url"),
            ("a.b", "a_b"),
            ("$$x.y.z", "x_y_z"),
            ("plain", "plain"),
            ("$", "unnamed"),
        ],
    )
    def test_renames(self, key: str, expected: str) -> None:
        assert safe_key(key) == expected

    def test_cache_is_bounded(self) -> None:
        assert safe_key.cache_info().maxsize == 65_536


class TestCleanDataFields:
    def test_renames_recursively(self) -> None:
        cleaned = clean_data_fields({"$browser": "Firefox", "address": {"geo.lat": 1.5, "$x": [{"a.b": 1}]}})
        assert cleaned == {"browser": "Firefox", "address": {"geo_lat": 1.5, "x": [{"a_b": 1}]}}

    def test_collision_keeps_explicit_key(self) -> None:
        assert clean_data_fields({"$browser": "auto", "browser": "mine"}) == {
            "fp_browser": "auto",
            "browser": "mine",
        }

    @pytest.mark.parametrize(
        ("fields", "expected"),
        [
            ({"browser": "mine", "$browser": "auto"}, {"browser": "mine", "fp_browser": "auto"}),
            ({"$a": 1, "$$a": 2}, {"a": 2}),
            ({"$a": 1, "a": 0, "$$a": 2}, {"fp_a": 2, "a": 0}),
            ({"a.b": 1, "a_b": 2, "$a.b": 3}, {"fp_a_b": 3, "a_b": 2}),
            ({"$": 1, "unnamed": 2}, {"fp_unnamed": 1, "unnamed": 2}),
        ],
    )
    def test_collisions_in_any_order(self, fields: dict[str, Any], expected: dict[str, Any]) -> None:
        cleaned = clean_data_fields(fields)
        assert cleaned == expected and list(cleaned) == list(expected)

    @pytest.mark.parametrize("field", sorted(MANAGED_PROFILE_FIELDS))
    def test_managed_fields_are_never_sent(self, field: str) -> None:
        assert clean_data_fields({field: [1], "plan": "pro"}) == {"plan": "pro"}

    def test_managed_names_inside_objects_are_kept(self) -> None:
        assert clean_data_fields({"meta": {"signupDate": "x"}}) == {"meta": {"signupDate": "x"}}

    def test_exclude(self) -> None:
        assert clean_data_fields({"email": "a@b.co", "userId": "u", "x": 1}, exclude=("email", "userId")) == {
            "x": 1
        }

    def test_dates_inside_values(self) -> None:
        cleaned = clean_data_fields({"at": "2024-03-05T14:07:00Z", "list": ["2024-03-05T14:07:00Z", "x"]})
        assert cleaned == {"at": "2024-03-05 14:07:00 +00:00", "list": ["2024-03-05 14:07:00 +00:00", "x"]}

    def test_epoch_only_in_configured_date_fields(self) -> None:
        cleaned = clean_data_fields(
            {"trial_ends": 1710252420, "seats": 1710252420}, date_fields={"trial_ends"}
        )
        assert cleaned == {"trial_ends": "2024-03-12 14:07:00 +00:00", "seats": 1710252420}

    def test_numeric_string_in_date_field_is_not_a_date(self) -> None:
        assert clean_data_fields({"trial_ends": "1234"}, date_fields={"trial_ends"}) == {"trial_ends": "1234"}

    def test_non_finite_floats_become_null(self) -> None:
        assert clean_data_fields({"x": math.nan}) == {"x": None}


JSON_SCALARS = st.one_of(
    st.booleans(), st.integers(), st.floats(allow_nan=False, allow_infinity=False), st.text()
)


class _Plan(StrEnum):
    START = "2024-03-05T14:07:00Z"


class TestNormalizeValue:
    """The exact-type fast paths and the general path give the same answers."""

    @pytest.mark.parametrize(
        ("value", "expected"),
        [
            ("2024-03-05T14:07:00Z", "2024-03-05 14:07:00 +00:00"),
            (_Plan.START, "2024-03-05 14:07:00 +00:00"),
            ("2024-03-05", "2024-03-05"),
            ("2024-3-5 10:00", "2024-3-5 10:00"),
            ("2024/03/05 10:00:00", "2024/03/05 10:00:00"),
            ("2024-03-0", "2024-03-0"),
            ("", ""),
            ((1, "2024-03-05T14:07:00+01:00"), [1, "2024-03-05 13:07:00 +00:00"]),
            (MappingProxyType({"$a": ("x",)}), {"a": ["x"]}),
            (datetime(2024, 3, 5, 14, 7, tzinfo=UTC), "2024-03-05 14:07:00 +00:00"),
            (date(2024, 3, 5), "2024-03-05"),
            (math.inf, None),
            (b"bytes", b"bytes"),
        ],
    )
    def test_values(self, value: Any, expected: Any) -> None:
        assert normalize_value(value) == expected

    @pytest.mark.parametrize(
        ("value", "expected"),
        [
            (1710252420, "2024-03-12 14:07:00 +00:00"),
            (1710252420.5, "2024-03-12 14:07:00 +00:00"),
            ([1710252420], ["2024-03-12 14:07:00 +00:00"]),
            (True, True),
            (None, None),
            (10**30, 10**30),
            ("1710252420", "1710252420"),
        ],
    )
    def test_in_a_date_field(self, value: Any, expected: Any) -> None:
        assert normalize_value(value, key="ends", date_fields={"ends"}) == expected
        assert clean_data_fields({"ends": value}, date_fields={"ends"}) == {"ends": expected}


class TestTypeStability:
    @given(JSON_SCALARS)
    def test_json_type_kept_except_date_strings(self, value: object) -> None:
        result = normalize_value(value)
        assert type(result) is type(value)
        if not isinstance(value, str):
            assert result == value
