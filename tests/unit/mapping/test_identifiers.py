from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from streams.mapping.identifiers import iterable_id, valid_email, valid_user_id

SAFE = re.compile(r"[A-Za-z0-9-]+")


class TestIterableId:
    @pytest.mark.parametrize("source", ["abc-123", "a1pageview00001", "A" * 512])
    def test_safe_ids_are_kept(self, source: str) -> None:
        assert iterable_id(source) == source

    @pytest.mark.parametrize("source", ["msg:1", "a_b", "é", "A" * 513, "", "a b"])
    def test_unsafe_ids_are_derived(self, source: str) -> None:
        derived = iterable_id(source)
        assert derived != source and SAFE.fullmatch(derived) and len(derived) == 36

    def test_pinned_value(self) -> None:
        # Changing ID_NAMESPACE would break idempotency of replays; this pins it.
        assert iterable_id("msg:bob/0004") == "cff8359c-1f77-574c-9c6e-2aff6b9f03c0"

    @given(st.text(max_size=600))
    def test_always_valid_and_deterministic(self, source: str) -> None:
        derived = iterable_id(source)
        assert SAFE.fullmatch(derived) and len(derived.encode()) <= 512
        assert derived == iterable_id(source)

    @given(st.text(min_size=1, max_size=50), st.text(min_size=1, max_size=50))
    def test_distinct_sources_give_distinct_ids(self, a: str, b: str) -> None:
        if a != b:
            assert iterable_id(a) != iterable_id(b)


class TestValidation:
    @pytest.mark.parametrize(
        ("value", "ok"),
        [
            ("j@x.io", True),
            ("j.d+tag@sub.x.co", True),
            ("j@x", False),
            ("j x@x.io", False),
            ("@x.io", False),
            ("j@.io", False),
        ],
    )
    def test_email(self, value: str, ok: bool) -> None:
        assert valid_email(value) is ok

    @pytest.mark.parametrize(
        ("value", "ok"), [("u-1", True), ("u" * 52, True), ("u" * 53, False), (" ", False)]
    )
    def test_user_id(self, value: str, ok: bool) -> None:
        assert valid_user_id(value) is ok
