"""JSON text helpers of the codecs."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta, timezone
from types import MappingProxyType
from typing import Any

import pytest

from streams.codecs._jsontext import dumps_object, json_default, loads_object


class TestJsonDefault:
    @pytest.mark.parametrize(
        ("value", "expected"),
        [
            (MappingProxyType({"a": 1}), {"a": 1}),
            ((1, 2), [1, 2]),
            (frozenset({3}), [3]),
            (datetime(2024, 1, 1, 0, 0, 0, 5, tzinfo=timezone(timedelta(seconds=90))),
             "2024-01-01T00:00:00.000005+00:01:30"),
        ],
    )
    def test_converts(self, value: Any, expected: Any) -> None:
        assert json_default(value) == expected

    def test_refuses_the_rest(self) -> None:
        with pytest.raises(TypeError, match="object"):
            json_default(object())


class TestDumpsObject:
    def test_big_integers_stay_integers(self) -> None:
        assert dumps_object({"big": 2**70, "f": 1.0}) == '{"big":1180591620717411303424,"f":1.0}'

    def test_datetimes_with_big_integers(self) -> None:
        text = dumps_object({"big": 2**70, "at": datetime(2024, 1, 1, tzinfo=UTC)})
        assert text == '{"big":1180591620717411303424,"at":"2024-01-01T00:00:00+00:00"}'

    def test_nan_is_null(self) -> None:
        assert dumps_object({"x": math.nan}) == '{"x":null}'

    def test_unserializable(self) -> None:
        with pytest.raises(TypeError):
            dumps_object({"x": object()})


class TestLoadsObject:
    def test_object(self) -> None:
        assert loads_object('{"a": [1, 1.5, null, "ü"]}') == {"a": [1, 1.5, None, "ü"]}

    def test_nan_literal_is_read_by_the_standard_library(self) -> None:
        assert math.isnan(loads_object('{"x": NaN}')["x"])

    @pytest.mark.parametrize("text", ["[1]", '"x"', "{nope", ""])
    def test_not_an_object(self, text: str) -> None:
        with pytest.raises(ValueError):
            loads_object(text)
