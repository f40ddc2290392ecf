"""The rules of ``streams.mapping.apply_event``, one class per rule (bad input included)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from streams.mapping import DEFAULT_IDENTIFY_RENAMES, apply_event
from streams.mapping.config import MappingConfig
from streams.model import DropReason, Endpoint, EventType, Identity, PageContext, ProjectType
from streams.normalize import normalize
from streams.transforms import parse_transformations
from tests.unit.builders import NOW, T0, body, event, person, run

EMAIL, USER_ID, HYBRID = ProjectType.EMAIL, ProjectType.USER_ID, ProjectType.HYBRID


def identify(**fields: Any) -> Any:
    return event(EventType.IDENTIFY, **fields)


class TestRequireIdentifyFirst:
    def test_event_of_never_identified_person_is_dropped(self) -> None:
        applied = run(event(user_id="u-1", email="j@x.io"), None, HYBRID)
        assert applied.decision.drop_reason is DropReason.ANONYMOUS

    def test_setting_off_uses_the_events_own_identifiers(self) -> None:
        applied = run(event(user_id="u-1"), None, USER_ID, require_identify_first=False)
        assert body(applied)["userId"] == "u-1"
        assert applied.identity is None

    def test_setting_off_still_needs_the_project_identifier(self) -> None:
        applied = run(event(user_id="u-1"), None, EMAIL, require_identify_first=False)
        assert applied.decision.drop_reason is DropReason.MISSING_IDENTIFIER


class TestProjectTypes:
    @pytest.mark.parametrize(
        ("project", "user_id", "email", "expected"),
        [
            (EMAIL, "u-1", "j@x.io", {"email": "j@x.io"}),
            (USER_ID, "u-1", "j@x.io", {"userId": "u-1"}),
            (HYBRID, "u-1", "j@x.io", {"email": "j@x.io", "userId": "u-1"}),
            (HYBRID, None, "j@x.io", {"email": "j@x.io"}),
            (HYBRID, "u-1", None, {"userId": "u-1"}),
        ],
    )
    def test_track_identifiers(
        self, project: ProjectType, user_id: str | None, email: str | None, expected: dict[str, str]
    ) -> None:
        sent = body(run(event(anonymous_id="a"), person(user_id, email), project))
        assert {k: sent[k] for k in ("email", "userId") if k in sent} == expected

    @pytest.mark.parametrize(
        ("project", "user_id", "email", "named"),
        [(EMAIL, "u-1", None, "email"), (USER_ID, None, "j@x.io", "userId")],
    )
    def test_missing_identifier_is_named(
        self, project: ProjectType, user_id: str | None, email: str | None, named: str
    ) -> None:
        applied = run(event(), person(user_id, email), project)
        assert applied.decision.drop_reason is DropReason.MISSING_IDENTIFIER
        assert applied.decision.detail is not None and named in applied.decision.detail

    def test_user_id_longer_than_52_characters_is_not_an_identifier(self) -> None:
        applied = run(event(), person("u" * 53, None), USER_ID)
        assert applied.decision.drop_reason is DropReason.MISSING_IDENTIFIER

    @pytest.mark.parametrize(
        "bad", ["jane", "jane@", "jane@example", "a b@x.io", "j@@x.io", "x" * 250 + "@x.io"]
    )
    def test_invalid_email_is_never_sent(self, bad: str) -> None:
        applied = run(identify(email=bad), None, EMAIL)
        assert applied.decision.drop_reason is DropReason.INVALID_EMAIL

    def test_hybrid_invalid_email_falls_back_to_user_id(self) -> None:
        sent = body(run(identify(user_id="u-1", email="jane@example"), None, HYBRID))
        assert sent["userId"] == "u-1" and "email" not in sent and "email" not in sent["dataFields"]


class TestIdentify:
    def test_users_update_with_traits(self) -> None:
        applied = run(
            identify(
                user_id="u-1",
                anonymous_id="a",
                email="j@x.io",
                traits={"email": "j@x.io", "userId": "u-1", "plan": "pro"},
            ),
            None,
            HYBRID,
        )
        request = applied.decision.requests[0]
        assert request.endpoint is Endpoint.USERS_UPDATE
        assert request.body == {
            "email": "j@x.io",
            "userId": "u-1",
            "dataFields": {"plan": "pro"},
            "mergeNestedObjects": False,
        }
        assert (request.person_key, request.source_event_id, request.first_seen_at) == ("u-1", "m-1", NOW)

    def test_creates_identity(self) -> None:
        applied = run(identify(user_id="u-1", email="j@x.io"), None, HYBRID)
        assert applied.identity == Identity("u-1", "u-1", "j@x.io", T0, T0)

    def test_unchanged_identity_is_not_stored_again(self) -> None:
        assert run(identify(user_id="u-1", email="jane@example.com"), person(), HYBRID).identity is None

    def test_email_project_puts_user_id_in_data_fields(self) -> None:
        sent = body(run(identify(user_id="u-1", email="j@x.io"), None, EMAIL))
        assert sent["email"] == "j@x.io" and "userId" not in sent and sent["dataFields"]["userId"] == "u-1"

    def test_user_id_project_puts_email_in_data_fields(self) -> None:
        sent = body(run(identify(user_id="u-1", email="j@x.io"), None, USER_ID))
        assert sent["userId"] == "u-1" and "email" not in sent and sent["dataFields"]["email"] == "j@x.io"

    def test_merge_nested_objects_setting(self) -> None:
        assert body(run(identify(user_id="u-1"), None, USER_ID, merge_nested_objects=True))[
            "mergeNestedObjects"
        ]

    def test_first_email_is_remembered_for_later_events(self) -> None:
        first = run(identify(user_id="u-1"), None, EMAIL)
        assert first.decision.drop_reason is DropReason.MISSING_IDENTIFIER
        assert first.identity is not None
        second = run(
            identify(user_id="u-1", email="j@x.io", timestamp=T0 + timedelta(1)), first.identity, EMAIL
        )
        assert second.identity is not None and second.identity.email == "j@x.io"
        assert body(run(event(user_id="u-1"), second.identity, EMAIL))["email"] == "j@x.io"

    def test_anonymous_identify_of_linked_device_updates_the_person(self) -> None:
        applied = run(identify(anonymous_id="a", traits={"plan": "x"}), person(), HYBRID)
        assert body(applied) == {
            "email": "jane@example.com",
            "userId": "u-1",
            "dataFields": {"plan": "x"},
            "mergeNestedObjects": False,
        }


class TestReplaySafety:
    def test_older_identify_is_dropped(self) -> None:
        stored = person(last_identified_at=T0 + timedelta(hours=1))
        applied = run(identify(user_id="u-1", traits={"plan": "old"}), stored, HYBRID)
        assert applied.decision.drop_reason is DropReason.STALE_IDENTIFY
        assert applied.identity is None

    def test_same_timestamp_is_sent_again(self) -> None:
        assert run(identify(user_id="u-1", traits={"plan": "p"}), person(), HYBRID).decision.sends

    def test_newer_identify_moves_last_identified_at(self) -> None:
        later = T0 + timedelta(minutes=5)
        applied = run(identify(user_id="u-1", timestamp=later), person(), HYBRID)
        assert applied.identity is not None
        assert (applied.identity.first_identified_at, applied.identity.last_identified_at) == (T0, later)


class TestDefaultIdentifyTransformations:
    TRAITS = {
        "first_name": "J",
        "last_name": "D",
        "phone_number": "+1",
        "date_of_birth": "1990-07-14",
        "zip_code": "02139",
        "nick_name": "JJ",
    }

    def test_exactly_the_five_renames(self) -> None:
        data = body(
            run(
                identify(user_id="u-1", traits=self.TRAITS),
                None,
                USER_ID,
                default_identify_transformations=True,
            )
        )["dataFields"]
        assert data == {
            "firstName": "J",
            "lastName": "D",
            "phoneNumber": "+1",
            "dateOfBirth": "1990-07-14",
            "zipCode": "02139",
            "nick_name": "JJ",
        }
        assert len(DEFAULT_IDENTIFY_RENAMES) == 5

    def test_off_by_default(self) -> None:
        data = body(run(identify(user_id="u-1", traits=self.TRAITS), None, USER_ID))["dataFields"]
        assert data == self.TRAITS

    def test_only_identify_is_renamed(self) -> None:
        data = body(
            run(
                event(properties={"first_name": "J"}),
                person(),
                USER_ID,
                default_identify_transformations=True,
            )
        )["dataFields"]
        assert data == {"first_name": "J"}

    def test_explicit_target_wins(self) -> None:
        data = body(
            run(
                identify(user_id="u-1", traits={"first_name": "a", "firstName": "b"}),
                None,
                USER_ID,
                default_identify_transformations=True,
            )
        )["dataFields"]
        assert data == {"firstName": "b"}


class TestTrack:
    def test_events_track_body(self) -> None:
        applied = run(
            event(message_id="abc-123", properties={"plan": "pro", "$browser": "FF"}), person(), EMAIL
        )
        request = applied.decision.requests[0]
        assert request.endpoint is Endpoint.EVENTS_TRACK
        assert request.body == {
            "email": "jane@example.com",
            "eventName": "Viewed Pricing",
            "id": "abc-123",
            "createdAt": int(T0.timestamp()),
            "dataFields": {"plan": "pro", "browser": "FF"},
        }

    def test_id_is_derived_for_unsafe_message_ids(self) -> None:
        first = body(run(event(message_id="msg:1/2"), person()))["id"]
        again = body(run(event(message_id="msg:1/2"), person()))["id"]
        assert first == again and first != "msg:1/2" and set(first) <= set("0123456789abcdef-")

    def test_created_at_is_seconds(self) -> None:
        sent = body(run(event(timestamp=T0 + timedelta(milliseconds=999)), person()))
        assert sent["createdAt"] == int(T0.timestamp())

    def test_integer_attribution_goes_top_level(self) -> None:
        sent = body(run(event(properties={"campaignId": 5, "templateId": 6, "x": 1}), person()))
        assert (sent["campaignId"], sent["templateId"], sent["dataFields"]) == (5, 6, {"x": 1})

    def test_autotrack_clicks_are_not_sent(self) -> None:
        applied = run(event(event_name="$web_event", properties={"$event_type": "click"}), person())
        assert applied.decision.drop_reason is DropReason.UNSUPPORTED_TYPE

    def test_group_is_not_sent(self) -> None:
        assert run(event(EventType.GROUP), person()).decision.drop_reason is DropReason.UNSUPPORTED_TYPE


ITEM = {"id": "sku-1", "name": "Mug", "price": 19.0, "quantity": 2}
ORDER = {"campaignId": 1, "templateId": 2, "total": 38.0, "items": [ITEM]}


def order(**properties: Any) -> Any:
    return event(event_name="Order Completed", properties=properties)


class TestPurchase:
    def test_track_purchase_body(self) -> None:
        props = {
            **ORDER,
            "order_id": "ord-1",
            "coupon": "X",
            "items": [{**ITEM, "category": "Kitchen", "image_url": "https://i", "color": "red", "sku": 7}],
        }
        applied = run(order(**props), person(), HYBRID)
        request = applied.decision.requests[0]
        assert request.endpoint is Endpoint.COMMERCE_TRACK_PURCHASE
        assert request.body == {
            "id": "ord-1",
            "user": {"email": "jane@example.com", "userId": "u-1"},
            "items": [
                {
                    "id": "sku-1",
                    "sku": "7",
                    "name": "Mug",
                    "price": 19.0,
                    "quantity": 2,
                    "categories": ["Kitchen"],
                    "imageUrl": "https://i",
                    "dataFields": {"color": "red"},
                }
            ],
            "total": 38.0,
            "createdAt": int(T0.timestamp()),
            "campaignId": 1,
            "templateId": 2,
            "dataFields": {"coupon": "X"},
        }

    def test_purchase_id_from_message_id_without_order_id(self) -> None:
        assert body(run(order(**ORDER), person()))["id"] == "m-1"

    def test_unsafe_order_id_is_made_safe(self) -> None:
        first = body(run(order(**ORDER, order_id="#1001/A"), person()))["id"]
        assert first == body(run(order(**ORDER, order_id="#1001/A"), person()))["id"] and "#" not in first

    @pytest.mark.parametrize(
        ("change", "named"),
        [
            ({"campaignId": None}, ["campaignId (missing)"]),
            ({"templateId": "2"}, ["templateId (not an integer)"]),
            ({"templateId": True}, ["templateId (not an integer)"]),
            ({"items": None}, ["items (missing)"]),
            ({"items": []}, ["items (not a non-empty array of objects)"]),
            ({"items": ["sku-1"]}, ["items (not a non-empty array of objects)"]),
            ({"total": "38"}, ["total (not a number)"]),
            (
                {"campaignId": None, "templateId": None, "items": None, "total": None},
                ["campaignId (missing)", "templateId (missing)", "items (missing)", "total (missing)"],
            ),
            ({"items": [{"id": "a"}]}, ["items[0].name", "items[0].price", "items[0].quantity"]),
        ],
    )
    def test_incomplete_purchase_is_not_sent_and_every_field_is_named(
        self, change: dict[str, Any], named: list[str]
    ) -> None:
        props = {key: value for key, value in {**ORDER, **change}.items() if value is not None}
        applied = run(order(**props), person())
        assert applied.decision.drop_reason is DropReason.PURCHASE_INCOMPLETE
        assert applied.decision.requests == ()
        for text in named:
            assert text in (applied.decision.detail or "")

    def test_anonymous_purchase_is_anonymous_not_incomplete(self) -> None:
        assert run(order(), None).decision.drop_reason is DropReason.ANONYMOUS


class TestPageAndScreen:
    PAGE = PageContext(url="https://x/p", path="/p", title="P", referrer="https://r/")

    def test_page_view(self) -> None:
        sent = body(
            run(event(EventType.PAGE, event_name="Pricing", page=self.PAGE, properties={"a": 1}), person())
        )
        assert sent["eventName"] == "Page Viewed"
        assert sent["dataFields"] == {
            "a": 1,
            "url": "https://x/p",
            "path": "/p",
            "title": "P",
            "referrer": "https://r/",
            "name": "Pricing",
        }

    def test_configurable_names(self) -> None:
        page = run(event(EventType.PAGE), person(), page_event_name="Loaded a Page")
        screen = run(event(EventType.SCREEN, event_name="Home"), person(), screen_event_name="App Screen")
        assert body(page)["eventName"] == "Loaded a Page"
        assert (body(screen)["eventName"], body(screen)["dataFields"]) == ("App Screen", {"name": "Home"})

    def test_anonymous_page_is_dropped(self) -> None:
        assert run(event(EventType.PAGE), None).decision.drop_reason is DropReason.ANONYMOUS


def alias(new: str, previous: str | None = "u-1", **fields: Any) -> Any:
    return event(EventType.ALIAS, user_id=new, previous_id=previous, **fields)


class TestAlias:
    def test_email_project_uses_update_email(self) -> None:
        applied = run(alias("new@x.io"), person(), EMAIL)
        request = applied.decision.requests[0]
        assert request.endpoint is Endpoint.USERS_UPDATE_EMAIL
        assert request.body == {"currentEmail": "jane@example.com", "newEmail": "new@x.io"}
        assert applied.identity is not None and applied.identity.email == "new@x.io"

    def test_email_project_without_current_email_uses_current_user_id(self) -> None:
        assert body(run(alias("new@x.io"), person(email=None), EMAIL)) == {
            "currentUserId": "u-1",
            "newEmail": "new@x.io",
        }

    @pytest.mark.parametrize("project", [USER_ID, HYBRID])
    def test_user_id_and_hybrid_projects_use_users_update(self, project: ProjectType) -> None:
        applied = run(alias("new@x.io"), person(), project)
        assert applied.decision.requests[0].endpoint is Endpoint.USERS_UPDATE
        assert body(applied) == {"userId": "u-1", "dataFields": {"email": "new@x.io"}}

    def test_new_email_from_traits(self) -> None:
        assert body(run(alias("u-1", email="new@x.io"), person(), EMAIL))["newEmail"] == "new@x.io"

    def test_same_email_is_unchanged(self) -> None:
        assert run(alias("jane@example.com"), person()).decision.drop_reason is DropReason.UNCHANGED

    def test_invalid_new_email(self) -> None:
        assert run(alias("new@x"), person()).decision.drop_reason is DropReason.INVALID_EMAIL

    def test_new_user_id(self) -> None:
        applied = run(alias("u-2"), person(), HYBRID)
        assert body(applied) == {"userId": "u-1", "dataFields": {"userId": "u-2"}}
        assert applied.identity is not None and applied.identity.user_id == "u-2"
        assert body(run(alias("u-2"), person(), EMAIL)) == {
            "email": "jane@example.com",
            "dataFields": {"userId": "u-2"},
        }

    def test_alias_of_unknown_person_is_anonymous(self) -> None:
        assert run(alias("new@x.io"), None).decision.drop_reason is DropReason.ANONYMOUS


def segment_identify(email: str, user_id: str = "u-1") -> Any:
    return normalize({"type": "identify", "messageId": "m-2", "timestamp": "2024-03-05T15:00:00Z",
                      "userId": user_id, "traits": {"email": email, "plan": "team"}})


def raw_identify(email: str, user_id: str = "u-1") -> Any:
    return normalize({"event": "$identify", "properties": {
        "distinct_id": user_id, "$device_id": "dev-1", "$anon_distinct_id": "dev-1", "time": 1709650800,
        "$insert_id": "m-2", "$user_props": {"email": email, "plan": "team"}}})


DIALECTS = pytest.mark.parametrize("identify_with", [segment_identify, raw_identify], ids=["segment", "raw"])


class TestIdentifyEmailChange:
    """An identify with a new email for a known person (issue 22): the profile moves, then is updated."""

    @DIALECTS
    def test_email_project_moves_the_profile_then_updates_it(self, identify_with: Any) -> None:
        applied = run(identify_with("new@x.io"), person(), EMAIL)
        move, update = applied.decision.requests
        assert (move.endpoint, dict(move.body)) == (
            Endpoint.USERS_UPDATE_EMAIL, {"currentEmail": "jane@example.com", "newEmail": "new@x.io"}
        )
        assert update.endpoint is Endpoint.USERS_UPDATE
        assert dict(update.body) == {
            "email": "new@x.io", "dataFields": {"plan": "team", "userId": "u-1"}, "mergeNestedObjects": False
        }
        assert move.person_key == update.person_key == "u-1"
        assert applied.identity is not None and applied.identity.email == "new@x.io"

    @DIALECTS
    def test_later_events_go_to_the_new_address(self, identify_with: Any) -> None:
        moved = run(identify_with("new@x.io"), person(), EMAIL).identity
        assert body(run(event(user_id="u-1"), moved, EMAIL))["email"] == "new@x.io"

    @DIALECTS
    @pytest.mark.parametrize("project", [USER_ID, HYBRID])
    def test_user_id_and_hybrid_projects_update_as_before(self, identify_with: Any, project: ProjectType) -> None:
        applied = run(identify_with("new@x.io"), person(), project)
        (update,) = applied.decision.requests
        assert update.endpoint is Endpoint.USERS_UPDATE and update.body["userId"] == "u-1"
        new_email = update.body["email"] if project is HYBRID else update.body["dataFields"]["email"]
        assert new_email == "new@x.io"
        assert applied.identity is not None and applied.identity.email == "new@x.io"

    @DIALECTS
    @pytest.mark.parametrize("email", ["jane@example.com", "not-an-email"])
    def test_same_or_invalid_email_is_no_move(self, identify_with: Any, email: str) -> None:
        (update,) = run(identify_with(email), person(), EMAIL).decision.requests
        assert update.endpoint is Endpoint.USERS_UPDATE and update.body["email"] == "jane@example.com"

    def test_first_email_of_a_person_is_no_move(self) -> None:
        (update,) = run(segment_identify("new@x.io"), person(email=None), EMAIL).decision.requests
        assert update.endpoint is Endpoint.USERS_UPDATE and update.body["email"] == "new@x.io"

    def test_replayed_change_after_the_table_followed_is_a_plain_update(self) -> None:
        moved = run(segment_identify("new@x.io"), person(), EMAIL).identity
        (update,) = run(segment_identify("new@x.io"), moved, EMAIL).decision.requests
        assert update.endpoint is Endpoint.USERS_UPDATE and update.body["email"] == "new@x.io"

    def test_stale_identify_with_an_old_email_moves_nothing(self) -> None:
        applied = run(segment_identify("old@x.io"), person(last_identified_at=T0 + timedelta(days=1)), EMAIL)
        assert applied.decision.drop_reason is DropReason.STALE_IDENTIFY and applied.identity is None


class TestTransformations:
    def config(self, *rules: dict[str, Any]) -> MappingConfig:
        return MappingConfig(project_type=HYBRID, transformations=parse_transformations(list(rules)))

    def test_drop_rule_filters(self) -> None:
        config = self.config({"action": "drop", "event": "Viewed Pricing"})
        applied = apply_event(event(), "u-1", person(), config, NOW)
        assert applied.decision.drop_reason is DropReason.FILTERED

    def test_rules_run_before_mapping(self) -> None:
        config = self.config({"action": "rename_event", "event": "Viewed Pricing", "to": "Order Completed"})
        applied = apply_event(event(properties=ORDER), "u-1", person(), config, NOW)
        assert applied.decision.requests[0].endpoint is Endpoint.COMMERCE_TRACK_PURCHASE
