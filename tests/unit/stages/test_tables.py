from __future__ import annotations

import tracemalloc
from datetime import UTC, datetime, timedelta, timezone

import pytest

from streams.identity import Link
from streams.model import Identity
from streams.stages import identity_from_bytes, identity_to_bytes, link_from_bytes, link_to_bytes

AT = datetime(2026, 1, 1, tzinfo=UTC)


def _identity(i: int) -> Identity:
    key = f"person-{i}"
    return Identity(person_key=key, user_id=key, email=f"{key}@example.com", first_identified_at=AT,
                    last_identified_at=AT)


class TestIdentityToBytes:
    def test_round_trips(self) -> None:
        identity = _identity(1)
        assert identity_from_bytes(identity_to_bytes(identity)) == identity

    def test_values_kept_by_a_table_cost_their_size_not_a_buffer(self) -> None:
        identities = [_identity(i) for i in range(200)]
        tracemalloc.start()
        try:
            kept = [identity_to_bytes(identity) for identity in identities]
            traced, _peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        size = sum(len(value) for value in kept)
        # Each value is ~170 bytes; orjson's own bytes would each hold a 4 KB buffer (~800 KB here).
        assert traced < 3 * size


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
