from __future__ import annotations

import pytest

from streams.iterable import Call, call_body, plan
from streams.model import Endpoint, IterableRequest
from tests.unit.iterable.builders import identify, track


def email_change(person: str) -> IterableRequest:
    return IterableRequest(
        Endpoint.USERS_UPDATE_EMAIL, {"currentEmail": "a@x.com", "newEmail": "b@x.com"}, person, "s"
    )


class TestPlan:
    def test_folds_into_bulk_and_keeps_identify_before_events(self) -> None:
        requests = [identify("a"), track("a", "1"), track("b", "2"), identify("b"), track("b", "3")]
        waves = plan(requests)
        assert waves == [
            [Call(Endpoint.USERS_BULK_UPDATE, (0,)), Call(Endpoint.EVENTS_TRACK_BULK, (2,))],
            [Call(Endpoint.EVENTS_TRACK_BULK, (1,)), Call(Endpoint.USERS_BULK_UPDATE, (3,))],
            [Call(Endpoint.EVENTS_TRACK_BULK, (4,))],
        ]

    def test_every_request_exactly_once_and_people_in_order(self) -> None:
        requests = [track("a", "1"), email_change("a"), track("a", "2"), identify("c"), track("c", "3")] * 3
        waves = plan(requests)
        seen = [i for wave in waves for call in wave for i in call.indexes]
        assert sorted(seen) == list(range(len(requests)))
        wave_of = {i: w for w, wave in enumerate(waves) for call in wave for i in call.indexes}
        for person in "ac":
            mine = [i for i, r in enumerate(requests) if r.person_key == person]
            assert [wave_of[i] for i in mine] == sorted(wave_of[i] for i in mine)

    def test_a_profiles_updates_never_share_a_wave(self) -> None:
        # Split at 2 items, one wave's users/bulkUpdate list would become concurrent calls: b's second
        # update could reach Iterable before its first.
        requests = [identify("a"), identify("b"), identify("c"), identify("b"), identify("b")]
        waves = plan(requests, max_items=2)
        wave_of = {i: w for w, wave in enumerate(waves) for call in wave for i in call.indexes}
        assert wave_of[1] < wave_of[3] < wave_of[4]
        assert wave_of[0] == wave_of[1] == wave_of[2] == 0

    def test_an_email_change_is_sequenced_between_the_profile_updates(self) -> None:
        # identify (old address), track, updateEmail, identify (new address), track: each profile
        # change of "a" waits for the one before, whatever else shares the round.
        requests = [identify("a"), identify("b"), track("a", "1"), email_change("a"), email_change("b"),
                    identify("a"), track("a", "2"), identify("c")]
        waves = plan(requests, max_items=1)
        wave_of = {i: w for w, wave in enumerate(waves) for call in wave for i in call.indexes}
        assert wave_of[0] < wave_of[2] < wave_of[3] < wave_of[5] < wave_of[6]
        assert [c.endpoint for c in waves[wave_of[3]] if 3 in c.indexes] == [Endpoint.USERS_UPDATE_EMAIL]

    def test_a_persons_events_and_purchases_share_a_wave(self) -> None:
        requests = [track("a", "1"), track("a", "2"), track("a", "3")]
        assert plan(requests, max_items=2) == [[Call(Endpoint.EVENTS_TRACK_BULK, (0, 1)),
                                                Call(Endpoint.EVENTS_TRACK_BULK, (2,))]]

    def test_splits_at_items_and_bytes(self) -> None:
        requests = [track("a", str(i), blob="x" * 100) for i in range(10)]
        by_items = plan(requests, max_items=4)
        assert [len(c.indexes) for c in by_items[0]] == [4, 4, 2]
        by_bytes = plan(requests, max_bytes=600)
        assert all(
            len(call_body(c.endpoint, [requests[i].body for i in c.indexes]).__str__()) < 1200
            for c in by_bytes[0]
        )
        assert len(by_bytes[0]) >= 3

    def test_without_batching_every_request_is_its_own_call(self) -> None:
        waves = plan([identify("a"), track("a", "1"), track("a", "2")], batching=False)
        assert waves == [
            [Call(Endpoint.USERS_UPDATE, (0,))],
            [Call(Endpoint.EVENTS_TRACK, (1,)), Call(Endpoint.EVENTS_TRACK, (2,))],
        ]


class TestCallBody:
    def test_bulk_and_single_shapes(self) -> None:
        assert call_body(Endpoint.EVENTS_TRACK_BULK, [{"a": 1}]) == {"events": [{"a": 1}]}
        assert call_body(Endpoint.USERS_BULK_UPDATE, [{"a": 1}]) == {"users": [{"a": 1}]}
        assert call_body(Endpoint.EVENTS_TRACK, [{"a": 1}]) == {"a": 1}
        with pytest.raises(ValueError):
            call_body(Endpoint.EVENTS_TRACK, [{"a": 1}, {"b": 2}])

