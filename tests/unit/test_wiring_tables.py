"""The values of the two tables, as stored in their changelog topics."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from streams.identity import Link
from streams.wiring import identity_from_bytes, identity_to_bytes, link_from_bytes, link_to_bytes
from tests.unit.builders import person


class TestLinkBytes:
    @pytest.mark.parametrize(
        "link",
        [
            Link("u-1", datetime(2026, 5, 1, 12, 0, 0, 123456, tzinfo=UTC)),
            Link("jane@example.com", datetime(2026, 5, 1, 12, 0, tzinfo=timezone(timedelta(hours=-7)))),
            Link("ünï-\x00-key"),
        ],
    )
    def test_round_trip(self, link: Link) -> None:
        assert link_from_bytes(link_to_bytes(link)) == link

    def test_a_bare_person_key_from_older_versions_is_a_link_of_unknown_age(self) -> None:
        assert link_from_bytes(b"u-1") == Link("u-1", None)


def test_identity_round_trip() -> None:
    identity = person()
    assert identity_from_bytes(identity_to_bytes(identity)) == identity
