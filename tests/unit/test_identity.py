from __future__ import annotations

from datetime import timedelta

import pytest

from streams.identity import Held, Link, Resolution, expired, person_key_of, resolve, routing_key, settle
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


class TestHolding:
    """Anonymous events within the window before their device's link belong to the person, by event time."""

    WINDOW = timedelta(minutes=30)
    LINK = Link("u-1", T0)

    @staticmethod
    def held(minutes: float, message_id: str = "m") -> Held[str]:
        return Held(T0 + timedelta(minutes=minutes), message_id, message_id)

    def test_resolve_attributes_an_event_within_the_window_before_the_link(self) -> None:
        inside = event(anonymous_id="dev", timestamp=T0 - self.WINDOW)
        outside = event(anonymous_id="dev", timestamp=T0 - self.WINDOW - timedelta(microseconds=1))
        assert resolve(inside, self.LINK, self.WINDOW) == Resolution("u-1")
        assert resolve(outside, self.LINK, self.WINDOW) == Resolution(None, drop=DropReason.ANONYMOUS)
        assert resolve(inside, self.LINK) == Resolution(None, drop=DropReason.ANONYMOUS), "without holding"

    def test_settle_releases_the_window_before_the_link_and_later_ones_in_event_time_order(self) -> None:
        held = [self.held(5, "after"), self.held(-31, "too-old"), self.held(-30, "edge"), self.held(-1, "just")]
        released, dropped = settle(held, self.LINK, self.WINDOW)
        assert [h.message_id for h in released] == ["edge", "just", "after"]
        assert [h.message_id for h in dropped] == ["too-old"]

    def test_settle_with_a_link_of_unknown_age_releases_everything(self) -> None:
        released, dropped = settle([self.held(-600)], Link("u-1"), self.WINDOW)
        assert len(released) == 1 and dropped == []

    def test_expired_by_the_watermark(self) -> None:
        held = [self.held(-31, "old"), self.held(-30, "edge"), self.held(0, "new")]
        kept, gone = expired(held, T0, self.WINDOW)
        assert [h.message_id for h in kept] == ["edge", "new"]
        assert [h.message_id for h in gone] == ["old"]

    def test_the_outcome_does_not_depend_on_processing_order(self) -> None:
        views = [event(anonymous_id="dev", message_id=f"p-{n}", timestamp=T0 - timedelta(minutes=m))
                 for n, m in enumerate((45, 20, 1))]
        identify = event(EventType.IDENTIFY, anonymous_id="dev", user_id="u-1", message_id="i", timestamp=T0)
        outcomes = []
        for order in ([*views, identify], [identify, *views], [views[1], identify, views[0], views[2]]):
            link: Link | None = None
            held: list[Held[str]] = []
            sent: set[str] = set()
            for ev in order:
                resolution = resolve(ev, link, self.WINDOW)
                link = resolution.new_link or link
                if resolution.person_key is not None:
                    sent.add(ev.message_id)
                elif link is None:
                    held.append(Held(ev.timestamp, ev.message_id, ev.message_id))
                if link is not None and held:
                    sent.update(h.message_id for h in settle(held, link, self.WINDOW)[0])
                    held = []
            outcomes.append(sent)
        assert outcomes == [{"i", "p-1", "p-2"}] * 3
