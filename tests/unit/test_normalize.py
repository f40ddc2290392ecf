from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from streams.errors import InvalidEvent
from streams.model import EventType
from streams.normalize import derive_message_id, normalize, normalize_json_line


def dest(**fields: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "type": "track",
        "messageId": "m-1",
        "timestamp": "2024-03-05T14:07:00Z",
        "anonymousId": "anon-1",
        "event": "Viewed",
    }
    base.update(fields)
    return base


def raw(event: str = "Viewed", **props: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "distinct_id": "dev-1",
        "$device_id": "dev-1",
        "time": 1709647620.5,
        "$insert_id": "ins1",
        "token": "env",
    }
    base.update(props)
    return {"event": event, "properties": base}


class TestDestinationDialect:
    def test_track(self) -> None:
        ev = normalize(
            dest(userId="u-1", properties={"plan": "pro"}, context={"traits": {"email": "a@b.co"}})
        )
        assert ev.type is EventType.TRACK
        assert (ev.message_id, ev.anonymous_id, ev.user_id, ev.email) == ("m-1", "anon-1", "u-1", "a@b.co")
        assert ev.event_name == "Viewed" and ev.properties == {"plan": "pro"}
        assert ev.timestamp == datetime(2024, 3, 5, 14, 7, tzinfo=UTC)

    def test_identify_traits_and_email(self) -> None:
        ev = normalize(dest(type="identify", userId="u-1", traits={"email": "j@x.io", "plan": "pro"}))
        assert ev.type is EventType.IDENTIFY and ev.email == "j@x.io" and ev.traits["plan"] == "pro"

    def test_page_context(self) -> None:
        ev = normalize(
            dest(
                type="page",
                name="Home",
                context={"page": {"url": "https://x/", "path": "/", "title": "X", "referrer": "r"}},
            )
        )
        assert ev.type is EventType.PAGE and ev.event_name == "Home"
        assert ev.page is not None and (ev.page.url, ev.page.path, ev.page.title, ev.page.referrer) == (
            "https://x/",
            "/",
            "X",
            "r",
        )

    def test_alias(self) -> None:
        ev = normalize(dest(type="alias", userId="new@x.io", previousId="u-1"))
        assert ev.type is EventType.ALIAS and ev.user_id == "new@x.io" and ev.previous_id == "u-1"

    @pytest.mark.parametrize(
        ("change", "field"),
        [
            ({"type": "boom"}, "type"),
            ({"messageId": None}, "messageId"),
            ({"messageId": ["x"]}, "messageId"),
            ({"timestamp": "yesterday"}, "timestamp"),
            ({"timestamp": 1709647620}, "timestamp"),
            ({"anonymousId": None}, "anonymousId"),
            ({"event": None}, "event"),
            ({"properties": []}, "properties"),
            ({"userId": True}, "userId"),
            ({"context": {"traits": {"email": 5.5}}}, "context.traits.email"),
            ({"type": "alias", "userId": None, "previousId": "u"}, "userId"),
        ],
    )
    def test_bad_input_names_the_field(self, change: dict[str, Any], field: str) -> None:
        with pytest.raises(InvalidEvent) as info:
            normalize(dest(**change))
        assert info.value.field == field


class TestRawDialect:
    def test_anonymous_web_event(self) -> None:
        ev = normalize(raw("Viewed", **{"$current_url": "https://x/"}))
        assert ev.type is EventType.TRACK and ev.anonymous_id == "dev-1" and ev.user_id is None
        assert ev.message_id == "ins1"
        assert ev.timestamp == datetime(2024, 3, 5, 14, 7, 0, 500000, tzinfo=UTC)
        assert ev.properties == {"$current_url": "https://x/"}  # identity, token and time removed

    def test_user_id_property_identifies(self) -> None:
        ev = normalize(raw(distinct_id="u-1", **{"$user_id": "u-1"}))
        assert (ev.anonymous_id, ev.user_id) == ("dev-1", "u-1")

    def test_server_side_distinct_id_is_the_user(self) -> None:
        ev = normalize({"event": "Paid", "properties": {"distinct_id": "u-9", "time": 1709647620}})
        assert (ev.anonymous_id, ev.user_id) == (None, "u-9")

    def test_identify_links_anonymous_id(self) -> None:
        ev = normalize(
            raw(
                "$identify",
                distinct_id="u-1",
                **{"$anon_distinct_id": "dev-1", "$user_props": {"email": "j@x.io", "a": 1}},
            )
        )
        assert ev.type is EventType.IDENTIFY
        assert (ev.anonymous_id, ev.user_id, ev.email) == ("dev-1", "u-1", "j@x.io")
        assert ev.traits == {"email": "j@x.io", "a": 1}
        assert "$user_props" not in ev.properties

    def test_identify_without_id_is_not_a_user(self) -> None:
        ev = normalize(raw("$identify", **{"$anon_distinct_id": "dev-1", "$user_props": {"a": 1}}))
        assert ev.user_id is None and ev.anonymous_id == "dev-1"

    @pytest.mark.parametrize(
        "props",
        [{"$event_type": "pageview", "$title": "T", "$current_url": "https://x/p", "$pathname": "/p"}],
    )
    def test_web_event_pageview_is_a_page(self, props: dict[str, Any]) -> None:
        ev = normalize(raw("$web_event", **props))
        assert ev.type is EventType.PAGE
        assert ev.page is not None and (ev.page.url, ev.page.path, ev.page.title) == (
            "https://x/p",
            "/p",
            "T",
        )

    def test_page_call(self) -> None:
        ev = normalize(raw("$page", **{"$name": "Pricing", "$page_props": {"step": 2}}))
        assert ev.type is EventType.PAGE and ev.event_name == "Pricing" and ev.properties["step"] == 2

    def test_legacy_track_pageview_is_a_page(self) -> None:
        ev = normalize(raw("mp_page_view", mp_page="https://x/p", mp_referrer="https://r/", mp_lib="web"))
        assert ev.type is EventType.PAGE and ev.event_name is None
        assert ev.page is not None and (ev.page.url, ev.page.referrer) == ("https://x/p", "https://r/")

    def test_current_url_wins_over_legacy_page(self) -> None:
        ev = normalize(raw("mp_page_view", mp_page="https://old/", **{"$current_url": "https://x/p"}))
        assert ev.page is not None and ev.page.url == "https://x/p"

    def test_web_event_click_stays_a_track(self) -> None:
        ev = normalize(raw("$web_event", **{"$event_type": "click"}))
        assert ev.type is EventType.TRACK and ev.event_name == "$web_event"

    def test_create_alias(self) -> None:
        ev = normalize(raw("$create_alias", distinct_id="u-old", alias="u-new"))
        assert ev.type is EventType.ALIAS and (ev.previous_id, ev.user_id) == ("u-old", "u-new")

    def test_screen_and_group(self) -> None:
        assert normalize(raw("$screen", **{"$name": "Home"})).type is EventType.SCREEN
        assert normalize(raw("$group", **{"$group_id": "g"})).type is EventType.GROUP

    def test_missing_insert_id_is_derived_deterministically(self) -> None:
        first = raw()
        del first["properties"]["$insert_id"]
        a, b = normalize(first), normalize(json.loads(json.dumps(first)))
        assert a.message_id == b.message_id and a.message_id.startswith("fp-")
        first["properties"]["plan"] = "x"
        assert normalize(first).message_id != a.message_id

    @pytest.mark.parametrize(
        ("props", "field"),
        [
            ({"time": None}, "properties.time"),
            ({"time": "1709647620"}, "properties.time"),
            ({"time": True}, "properties.time"),
            ({"time": float("nan")}, "properties.time"),
            ({"distinct_id": None, "$device_id": None}, "properties.distinct_id"),
            ({"$user_props": "x", "distinct_id": "u"}, "properties.$user_props"),
        ],
    )
    def test_bad_input_names_the_field(self, props: dict[str, Any], field: str) -> None:
        name = "$identify" if "$user_props" in props else "Viewed"
        with pytest.raises(InvalidEvent) as info:
            normalize(raw(name, **props))
        assert info.value.field == field

    def test_create_alias_without_alias(self) -> None:
        with pytest.raises(InvalidEvent) as info:
            normalize(raw("$create_alias"))
        assert info.value.field == "properties.alias"


class TestNormalizeJsonLine:
    def test_bytes(self) -> None:
        assert normalize_json_line(json.dumps(dest()).encode()).message_id == "m-1"

    @pytest.mark.parametrize(("line", "field"), [("{nope", "json"), ("[1]", "$"), ('{"x": 1}', "type")])
    def test_bad_lines(self, line: str, field: str) -> None:
        with pytest.raises(InvalidEvent) as info:
            normalize_json_line(line)
        assert info.value.field == field


class TestDeriveMessageId:
    @given(st.dictionaries(st.text(max_size=5), st.one_of(st.integers(), st.text(max_size=5)), max_size=5))
    def test_deterministic_and_key_order_free(self, props: dict[str, Any]) -> None:
        event = {"event": "x", "properties": props}
        reordered = {"properties": dict(reversed(list(props.items()))), "event": "x"}
        assert derive_message_id(event) == derive_message_id(reordered)
        assert len(derive_message_id(event)) == 35
