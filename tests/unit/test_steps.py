"""``steps.hold_step``: what happens to an event and its device's held events, over plain dicts."""

from __future__ import annotations

from datetime import timedelta

from streams.identity import Held, HoldRule, Link
from streams.model import EventType
from streams.steps import HoldOutcome, Resolved, hold_step, resolve_step
from tests.unit.builders import T0, event

RULE = HoldRule(timedelta(minutes=30), per_device=3, total=10)


class TestHoldStep:
    def setup_method(self) -> None:
        self.aliases: dict[str, Link] = {}
        self.held: dict[str, list[Held[str]]] = {}

    def step(self, minutes: float, message_id: str, holding: int = 0,
             **fields: str) -> tuple[Resolved, HoldOutcome[str]]:
        kind = EventType.IDENTIFY if "user_id" in fields else EventType.TRACK
        ev = event(kind, anonymous_id="dev", message_id=message_id, timestamp=T0 + timedelta(minutes=minutes),
                   **fields)
        resolved = resolve_step(ev, self.aliases, RULE.window)
        return resolved, hold_step(ev, resolved, message_id, self.aliases, self.held, RULE, holding)

    def test_holds_an_unlinked_event_then_releases_it_after_the_linking_event(self) -> None:
        resolved, outcome = self.step(-10, "p-1")
        assert resolved.person_key is None and outcome.held and outcome.stored
        assert [h.message_id for h in self.held["dev"]] == ["p-1"]
        resolved, outcome = self.step(0, "i-1", user_id="u-1")
        assert resolved.person_key == "u-1"
        assert [h.payload for h in outcome.released] == ["p-1"]
        assert self.held["dev"] == [], "settled: the caller deletes the key"

    def test_a_link_after_the_window_drops_the_held_events(self) -> None:
        self.step(-31, "p-1")
        _, outcome = self.step(0, "i-1", user_id="u-1")
        assert outcome.released == () and [h.message_id for h in outcome.dropped] == ["p-1"]

    def test_a_redelivered_event_is_held_once(self) -> None:
        self.step(-10, "p-1")
        _, outcome = self.step(-10, "p-1")
        assert outcome.held and not outcome.stored
        assert len(self.held["dev"]) == 1

    def test_bounds_per_device_and_in_total(self) -> None:
        for n in range(3):
            self.step(n - 10, f"p-{n}")
        _, outcome = self.step(-5, "p-3")
        assert outcome.overflow and not outcome.held
        self.held.clear()
        _, outcome = self.step(-5, "p-4", holding=RULE.total)
        assert outcome.overflow

    def test_a_later_event_of_the_device_expires_what_is_too_old_for_any_link(self) -> None:
        self.step(0, "p-1")
        _, outcome = self.step(31, "p-2")
        assert [h.message_id for h in outcome.dropped] == ["p-1"]
        assert [h.message_id for h in self.held["dev"]] == ["p-2"]

    def test_an_event_after_the_link_is_not_held(self) -> None:
        self.step(0, "i-1", user_id="u-1")
        resolved, outcome = self.step(5, "p-1")
        assert resolved.person_key == "u-1" and not outcome.held and "dev" not in self.held


class TestApplyStepForgotten:
    """``apply_step`` drops the events of a forgotten person key, user id or email, and changes nothing."""

    def test_forgotten_person_events_are_dropped_without_touching_identities(self) -> None:
        from streams.identity import forgotten_key
        from streams.mapping import MappingConfig
        from streams.model import DropReason, Identity
        from streams.steps import apply_step

        identities: dict[str, Identity] = {}
        ident = event(EventType.IDENTIFY, anonymous_id="dev", message_id="i-1", timestamp=T0, user_id="u-1",
                      email="jane@example.com")
        for forgotten in ({forgotten_key("u-1")}, {forgotten_key("jane@example.com")}):
            decision = apply_step(ident, "u-1", identities, MappingConfig(), T0, forgotten)
            assert decision.drop_reason is DropReason.FORGOTTEN and decision.requests == ()
            assert identities == {}
        assert apply_step(ident, "u-1", identities, MappingConfig(), T0, {forgotten_key("u-2")}).sends
        assert "u-1" in identities

    def test_the_marker_is_a_hash_without_the_key(self) -> None:
        from streams.identity import forgotten_key

        marker = forgotten_key("jane@example.com")
        assert "jane" not in marker and marker == forgotten_key("jane@example.com") != forgotten_key("jane@example.org")
