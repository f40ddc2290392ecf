from __future__ import annotations

from datetime import timedelta

import pytest

from streams.identity import Link, Resolution, person_key_of, resolve, routing_key
from streams.model import DropReason, EventType
from tests.unit.builders import T0, event


class TestResolve:
    @pytest.mark.parametrize(
        ("fields", "alias", "expected"),
        [
            # anonymous, never linked -> dropped (seed: Iterable has no anonymous users)
            ({"anonymous_id": "a"}, None, Resolution(None, drop=DropReason.ANONYMOUS)),
            # anonymous, linked earlier -> the linked person
            ({"anonymous_id": "a"}, Link("u-1", T0), Resolution("u-1")),
            # a link of unknown age (stored by an older version) attributes every event
            ({"anonymous_id": "a"}, Link("u-1"), Resolution("u-1")),
            # user id wins over email as person key
            (
                {"anonymous_id": "a", "user_id": "u-1", "email": "j@x.io"},
                None,
                Resolution("u-1", new_link=Link("u-1", T0)),
            ),
            ({"anonymous_id": "a", "email": "j@x.io"}, None, Resolution("j@x.io", new_link=Link("j@x.io", T0))),
            # link unchanged -> nothing to store
            ({"anonymous_id": "a", "user_id": "u-1"}, Link("u-1", T0), Resolution("u-1")),
            ({"anonymous_id": "a", "user_id": "u-1"}, Link("u-1"), Resolution("u-1")),
            # relink to the newer person
            ({"anonymous_id": "a", "user_id": "u-2"}, Link("u-1", T0), Resolution("u-2", new_link=Link("u-2", T0))),
            # no device id: nothing to link
            ({"user_id": "u-1"}, None, Resolution("u-1")),
        ],
    )
    def test_table(self, fields: dict[str, str], alias: Link | None, expected: Resolution) -> None:
        assert resolve(event(**fields), alias) == expected

    def test_identify_links_device(self) -> None:
        ev = event(EventType.IDENTIFY, anonymous_id="dev", user_id="u-1")
        assert resolve(ev, None).new_link == Link("u-1", T0)

    def test_alias_resolves_to_linked_person_and_never_relinks(self) -> None:
        ev = event(EventType.ALIAS, anonymous_id="dev", user_id="new@x.io", previous_id="u-1")
        assert resolve(ev, Link("u-1", T0)) == Resolution("u-1")
        assert resolve(ev, None) == Resolution("u-1")

    def test_alias_of_anonymous_previous_id_is_dropped(self) -> None:
        ev = event(EventType.ALIAS, anonymous_id="dev", user_id="u-9", previous_id="dev")
        assert resolve(ev, None).drop is DropReason.ANONYMOUS


class TestAnonymousByEventTime:
    """Whether an event was anonymous depends on when it happened, not on when it is processed."""

    LINK = Link("u-1", T0)

    def test_an_event_from_before_the_link_is_anonymous_even_when_processed_after_it(self) -> None:
        earlier = event(anonymous_id="dev", timestamp=T0 - timedelta(seconds=1))
        assert resolve(earlier, self.LINK) == Resolution(None, drop=DropReason.ANONYMOUS)

    def test_an_event_at_or_after_the_link_belongs_to_the_person(self) -> None:
        assert resolve(event(anonymous_id="dev", timestamp=T0), self.LINK) == Resolution("u-1")
        assert resolve(event(anonymous_id="dev", timestamp=T0 + timedelta(days=3)), self.LINK) == Resolution("u-1")

    def test_an_earlier_event_naming_the_same_person_moves_the_link_back(self) -> None:
        earlier = T0 - timedelta(minutes=5)
        ev = event(EventType.IDENTIFY, anonymous_id="dev", user_id="u-1", timestamp=earlier)
        assert resolve(ev, self.LINK) == Resolution("u-1", new_link=Link("u-1", earlier))

    def test_order_of_processing_does_not_change_the_outcome(self) -> None:
        before = event(anonymous_id="dev", message_id="m-0", timestamp=T0 - timedelta(seconds=30))
        identify = event(EventType.IDENTIFY, anonymous_id="dev", user_id="u-1", message_id="m-1", timestamp=T0)
        after = event(anonymous_id="dev", message_id="m-2", timestamp=T0 + timedelta(seconds=30))
        outcomes = []
        # every order in which the identify is seen before the later event (a redelivery of the
        # earlier one after the link, say); an event that arrives before its identify cannot be
        # attributed without holding it back, which this stage does not do
        for order in ([before, identify, after], [identify, after, before], [identify, before, after]):
            link: Link | None = None
            seen = {}
            for ev in order:
                resolution = resolve(ev, link)
                link = resolution.new_link or link
                seen[ev.message_id] = resolution.person_key
            outcomes.append(seen)
        assert outcomes == [{"m-0": None, "m-1": "u-1", "m-2": "u-1"}] * 3

class TestRoutingKey:
    def test_device_first(self) -> None:
        assert routing_key(event(anonymous_id="dev", user_id="u")) == "dev"

    def test_person_key_without_device(self) -> None:
        assert routing_key(event(user_id="u", email="j@x.io")) == "u"
        assert routing_key(event(email="j@x.io")) == "j@x.io"

    def test_nothing(self) -> None:
        assert routing_key(event()) is None
        assert person_key_of(event()) is None
