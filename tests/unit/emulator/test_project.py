"""Iterable's rules as the emulated project applies them (iterable-api.md §3, §5, §6)."""

from __future__ import annotations

from typing import Any

import pytest

from streams.emulator import Project, value_type
from streams.model import ProjectType


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def project(
    kind: ProjectType = ProjectType.EMAIL, visible_after: float = 0.0, clock: Clock | None = None
) -> Project:
    return Project(kind, clock=clock or Clock(), user_visible_after=lambda: visible_after)


class TestValueType:
    @pytest.mark.parametrize(
        ("value", "expected"),
        [
            ("2024-03-05", "date"),
            ("2024-03-05 14:07:00", "date"),
            ("2024-03-05 14:07:00 +00:00", "date"),
            ("2024-03-05T14:07:00.000-07:00", "date"),
            ("2024-03-05T14:07:00.000Z", "date"),
            ("2020-04-13 13:37:19.039", "string"),  # known bad form (§6.2)
            ("1234", "string"),
            (1717171717, "long"),
            (1.5, "double"),
            (True, "boolean"),
            ({"a": 1}, "object"),
            (["x", "y"], "string"),
            (None, None),
        ],
    )
    def test_first_value_types(self, value: Any, expected: str | None) -> None:
        assert value_type("f", value) == expected


class TestUsers:
    def test_update_creates_then_merges(self) -> None:
        p = project()
        assert p.users_update({"email": "a@x.com", "dataFields": {"x": 1, "o": {"a": 1}}})[0] == 200
        p.users_update(
            {"email": "a@x.com", "dataFields": {"y": 2, "o": {"b": 2}}, "mergeNestedObjects": True}
        )
        _status, body = p.get_user(email="a@x.com")
        assert body["user"]["dataFields"] == {"x": 1, "y": 2, "o": {"a": 1, "b": 2}}
        assert p.get_user(email="b@x.com") == (200, {})

    def test_field_type_is_locked_by_first_value(self) -> None:
        p = project()
        p.users_update({"email": "a@x.com", "dataFields": {"age": 3}})
        status, body = p.users_update({"email": "b@x.com", "dataFields": {"age": "three"}})
        assert status == 400 and body["code"] == "RequestFieldsTypesMismatched"
        error = body["params"]["validationErrors"]["emulated:::age"]
        assert error["expectedType"] == "long" and error["_type"] == "UnexpectedType"
        assert p.get_user(email="b@x.com") == (200, {})

    def test_one_bad_record_fails_the_whole_bulk_request(self) -> None:
        p = project()
        p.users_update({"email": "a@x.com", "dataFields": {"d": "2024-03-05"}})
        users = [
            {"email": "b@x.com", "dataFields": {"d": "2024-03-06"}},
            {"email": "c@x.com", "dataFields": {"d": "soon"}},
        ]
        status, body = p.users_bulk_update({"users": users})
        assert status == 400 and body["code"] == "RequestFieldsTypesMismatched"
        assert len(p.users) == 1

    def test_bulk_update_reports_failures_by_identifier(self) -> None:
        p = project()
        users = [{"email": "ok@x.com"}, {"email": "not-an-email"}, {"userId": "nobody"}]
        status, body = p.users_bulk_update({"users": users})
        assert status == 200
        assert body["successCount"] == 1 and body["failCount"] == 2
        assert body["failedUpdates"]["invalidEmails"] == ["not-an-email"]
        assert body["failedUpdates"]["notFoundUserIds"] == ["nobody"]
        assert body["invalidEmails"] == ["not-an-email"]
        assert set(body["failedUpdates"]) >= {"conflictEmails", "forgottenUserIds", "invalidDataEmails"}

    def test_email_project_prefer_user_id_creates_placeholder(self) -> None:
        p = project()
        assert p.users_update({"userId": "u1"})[0] == 400
        assert p.users_update({"userId": "u1", "preferUserId": True})[0] == 200
        assert p.get_user(user_id="u1")[1]["user"]["email"].endswith("@placeholder.email")

    def test_hybrid_conflict_is_409(self) -> None:
        p = project(ProjectType.HYBRID)
        p.users_update({"email": "a@x.com"})
        p.users_update({"userId": "u2"})
        status, _body = p.users_update({"email": "a@x.com", "userId": "u2"})
        assert status == 409

    def test_user_id_project_requires_user_id(self) -> None:
        p = project(ProjectType.USER_ID)
        assert p.users_update({"email": "a@x.com"})[0] == 400
        assert p.users_update({"userId": "u1", "email": "a@x.com"})[0] == 200

    def test_update_email_moves_the_profile(self) -> None:
        p = project()
        p.users_update({"email": "old@x.com", "dataFields": {"k": 1}})
        p.users_update({"email": "taken@x.com"})
        assert p.update_email({"currentEmail": "old@x.com", "newEmail": "taken@x.com"})[1]["code"] == (
            "EmailAlreadyExists"
        )
        assert p.update_email({"currentEmail": "old@x.com", "newEmail": "new@x.com"})[0] == 200
        assert p.get_user(email="new@x.com")[1]["user"]["dataFields"] == {"k": 1}
        assert p.get_user(email="old@x.com") == (200, {})

    def test_update_email_moves_events_and_purchases(self) -> None:
        p = project()
        p.users_update({"email": "old@x.com"})
        p.events_track({"email": "old@x.com", "eventName": "E", "id": "ev-1"})
        p.track_purchase({"id": "o-1", "user": {"email": "old@x.com"}, "total": 1,
                          "items": [{"id": "i", "name": "n", "price": 1, "quantity": 1}]})
        assert p.update_email({"currentEmail": "old@x.com", "newEmail": "new@x.com"})[0] == 200
        assert [e["id"] for e in p.user_events(email="new@x.com")[1]["events"]] == ["ev-1"]
        assert p.events["ev-1"]["email"] == p.purchases["o-1"]["email"] == "new@x.com"
        assert p.user_events(email="old@x.com")[1] == {"events": []}

    def test_update_email_already_applied_is_email_already_exists(self) -> None:
        # Iterable documents EmailAlreadyExists whenever newEmail exists (§2.7), also on a replay.
        p = project()
        p.users_update({"email": "old@x.com"})
        assert p.update_email({"currentEmail": "old@x.com", "newEmail": "new@x.com"})[0] == 200
        status, answer = p.update_email({"currentEmail": "old@x.com", "newEmail": "new@x.com"})
        assert (status, answer["code"]) == (400, "EmailAlreadyExists")

    @pytest.mark.parametrize(
        ("body", "code"),
        [
            ({"currentEmail": "ghost@x.com", "newEmail": "new@x.com"}, "UnknownEmailError"),
            ({"currentUserId": "ghost", "newEmail": "new@x.com"}, "UnknownUserIdError"),
            ({"newEmail": "new@x.com"}, "BadParams"),
            ({"currentEmail": "old@x.com", "newEmail": "new@x"}, "InvalidEmailAddressError"),
        ],
    )
    def test_update_email_refusals(self, body: dict[str, str], code: str) -> None:
        p = project()
        p.users_update({"email": "old@x.com"})
        assert p.update_email(body)[1]["code"] == code
        assert p.get_user(email="old@x.com")[1]["user"]["email"] == "old@x.com"

    def test_update_email_of_a_user_not_yet_visible_is_unknown(self) -> None:
        clock = Clock()
        p = project(visible_after=5.0, clock=clock)
        p.users_update({"email": "old@x.com"})
        assert p.update_email({"currentEmail": "old@x.com", "newEmail": "new@x.com"})[1]["code"] == (
            "UnknownEmailError"
        )
        clock.now = 6.0
        assert p.update_email({"currentEmail": "old@x.com", "newEmail": "new@x.com"})[0] == 200


class TestEvents:
    def test_same_id_updates_instead_of_duplicating(self) -> None:
        p = project()
        p.users_update({"email": "a@x.com"})
        for n in range(3):
            assert (
                p.events_track({"email": "a@x.com", "eventName": "E", "id": "ev-1", "dataFields": {"n": n}})[
                    0
                ]
                == 200
            )
        c = p.counters
        assert (c.unique_event_ids, c.duplicate_event_ids, len(p.events)) == (1, 2, 1)
        assert p.user_events(email="a@x.com")[1]["events"][0]["dataFields"] == {"n": 2}

    def test_unknown_user_in_email_project_is_not_found(self) -> None:
        p = project()
        status, body = p.events_track({"email": "ghost@x.com", "eventName": "E"})
        assert (status, body["code"]) == (400, "UnknownEmailError")
        _, bulk = p.events_track_bulk({"events": [{"email": "ghost@x.com", "eventName": "E"}]})
        assert bulk["failedUpdates"]["notFoundEmails"] == ["ghost@x.com"] and bulk["failCount"] == 1

    def test_new_user_becomes_visible_after_the_delay(self) -> None:
        clock = Clock()
        p = project(visible_after=5.0, clock=clock)
        p.users_update({"email": "a@x.com"})
        assert p.events_track({"email": "a@x.com", "eventName": "E"})[0] == 400
        clock.now = 5.0
        assert p.events_track({"email": "a@x.com", "eventName": "E"})[0] == 200

    def test_user_id_project_creates_users_on_track(self) -> None:
        p = project(ProjectType.USER_ID)
        assert p.events_track({"userId": "u9", "eventName": "E"})[0] == 200
        assert p.get_user(user_id="u9")[1]["user"]["userId"] == "u9"

    @pytest.mark.parametrize(
        ("event", "param"),
        [
            ({"eventName": "E", "createdAt": "yesterday"}, "obj.events[0].createdAt"),
            ({"eventName": "E", "id": "has spaces"}, "obj.events[0].id"),
            ({"createdAt": 1}, "obj.events[0].eventName"),
        ],
    )
    def test_bad_shapes_fail_the_bulk_request(self, event: dict[str, Any], param: str) -> None:
        p = project()
        p.users_update({"email": "a@x.com"})
        status, body = p.events_track_bulk(
            {"events": [{"email": "a@x.com", "eventName": "ok"}, {"email": "a@x.com", **event}]}
        )
        assert status == 400
        assert param.replace("[0]", "[1]") in body["params"]
        assert p.counters.unique_event_ids == 0

    def test_event_field_types_are_per_event_name(self) -> None:
        p = project()
        p.users_update({"email": "a@x.com"})
        p.events_track({"email": "a@x.com", "eventName": "A", "dataFields": {"v": 1}})
        assert p.events_track({"email": "a@x.com", "eventName": "B", "dataFields": {"v": "x"}})[0] == 200
        assert p.events_track({"email": "a@x.com", "eventName": "A", "dataFields": {"v": "x"}})[0] == 400

    def test_disallowed_names_in_bulk(self) -> None:
        p = Project(ProjectType.EMAIL, clock=Clock(), blocked_event_names=lambda: frozenset({"No"}))
        p.users_update({"email": "a@x.com"})
        _, body = p.events_track_bulk(
            {"events": [{"email": "a@x.com", "eventName": "No"}, {"email": "a@x.com", "eventName": "Yes"}]}
        )
        assert body["disallowedEventNames"] == ["No"] and body["successCount"] == 1 and body["failCount"] == 1
        status, single = p.events_track({"email": "a@x.com", "eventName": "No"})
        assert status == 200 and "disallowed from tracking" in single["msg"]


class TestCommerce:
    def test_purchase_creates_the_user_and_clears_the_cart(self) -> None:
        p = project()
        item = {"id": "s", "name": "Mug", "price": 2.0, "quantity": 1}
        assert p.update_cart({"user": {"email": "a@x.com"}, "items": [item]})[0] == 200
        assert p.get_user(email="a@x.com")[1]["user"]["dataFields"]["shoppingCartItems"] == [item]
        assert (
            p.track_purchase({"id": "o1", "user": {"email": "a@x.com"}, "items": [item], "total": 2})[0]
            == 200
        )
        p.track_purchase({"id": "o1", "user": {"email": "a@x.com"}, "items": [item], "total": 2})
        assert "shoppingCartItems" not in p.get_user(email="a@x.com")[1]["user"]["dataFields"]
        assert (p.counters.unique_purchase_ids, p.counters.duplicate_purchase_ids) == (1, 1)
        assert p.track_purchase({"user": {"email": "a@x.com"}, "items": [{"id": "s"}], "total": 2})[0] == 400

    def test_update_cart_replaces_the_whole_cart(self) -> None:
        p = project()
        mug = {"id": "s", "name": "Mug", "price": 2.0, "quantity": 1}
        tea = {"id": "t", "name": "Tea", "price": 1.0, "quantity": 3}
        p.update_cart({"user": {"email": "a@x.com"}, "items": [mug, tea]})
        p.update_cart({"user": {"email": "a@x.com"}, "items": [tea]})
        assert p.get_user(email="a@x.com")[1]["user"]["dataFields"]["shoppingCartItems"] == [tea]
        p.update_cart({"user": {"email": "a@x.com"}, "items": []})
        assert p.get_user(email="a@x.com")[1]["user"]["dataFields"]["shoppingCartItems"] == []

    @pytest.mark.parametrize(("body", "param"), [
        ({"items": []}, "obj.user"),
        ({"user": {"email": "a@x.com"}}, "obj.items"),
        ({"user": {"email": "a@x.com"}, "items": ["x"]}, "obj.items[0]"),
        ({"user": {"email": "a@x.com"}, "items": [{"id": "s", "name": "M", "quantity": 1}]}, "obj.items[0].price"),
        ({"user": {"email": "a@x.com"}, "items": [{"id": "s", "name": "M", "price": 1, "quantity": 1.5}]},
         "obj.items[0].quantity"),
    ])
    def test_update_cart_refuses_bad_bodies(self, body: dict[str, Any], param: str) -> None:
        p = project()
        status, answer = p.update_cart(body)
        assert (status, answer["code"]) == (400, "BadJsonBody") and param in answer["params"]
        assert p.get_user(email="a@x.com") == (200, {}), "a refused body created the user"


class TestRegisterDeviceToken:
    DEVICE = {"token": "t-1", "platform": "APNS", "applicationName": "com.example"}

    def test_registers_once_per_token(self) -> None:
        p = project()
        p.users_update({"email": "a@x.com", "dataFields": {}})
        assert p.register_device_token({"email": "a@x.com", "device": self.DEVICE})[0] == 200
        assert p.register_device_token({"email": "a@x.com", "device": {**self.DEVICE, "platform": "APNS_SANDBOX"}})[
            0] == 200
        devices = p.get_user(email="a@x.com")[1]["user"]["dataFields"]["devices"]
        assert [(d["token"], d["platform"]) for d in devices] == [("t-1", "APNS_SANDBOX")]

    @pytest.mark.parametrize(("body", "code"), [
        ({"email": "a@x.com"}, "BadJsonBody"),
        ({"email": "a@x.com", "device": {**DEVICE, "platform": "WNS"}}, "BadJsonBody"),
        ({"email": "a@x.com", "device": {**DEVICE, "token": ""}}, "BadJsonBody"),
        ({"email": "a@x.com", "userId": "u", "device": DEVICE}, "BadParams"),
        ({"email": "nobody@x.com", "device": DEVICE}, "UnknownEmailError"),
    ])
    def test_refuses_bad_bodies_and_unknown_users(self, body: dict[str, Any], code: str) -> None:
        p = project()
        p.users_update({"email": "a@x.com", "dataFields": {}})
        status, answer = p.register_device_token(body)
        assert (status, answer["code"]) == (400, code)
        assert "devices" not in p.get_user(email="a@x.com")[1]["user"]["dataFields"]


class TestSubscriptions:
    """The per-group subscription endpoints (PATCH subscribes, DELETE unsubscribes) and the state they leave."""

    @staticmethod
    def fields(p: Project, email: str = "a@x.com") -> dict[str, Any]:
        data = p.get_user(email=email)[1]["user"]["dataFields"]
        return {k: v for k, v in data.items() if k in ("emailListIds", "unsubscribedChannelIds",
                                                        "unsubscribedMessageTypeIds")}

    def test_each_group_changes_alone(self) -> None:
        p = project()
        assert p.subscription("messageChannel", "12", subscribe=False, email="a@x.com")[0] == 200  # creates
        assert p.subscription("emaillist", "101", subscribe=True, email="a@x.com")[0] == 200  # case-insensitive
        assert p.subscription("emailList", "102", subscribe=True, email="a@x.com")[0] == 200
        assert p.subscription("messageType", "77", subscribe=False, email="a@x.com")[0] == 200
        assert self.fields(p) == {"unsubscribedChannelIds": [12], "emailListIds": [101, 102],
                                  "unsubscribedMessageTypeIds": [77]}
        p.subscription("messageChannel", "12", subscribe=True, email="a@x.com")
        p.subscription("emailList", "101", subscribe=False, email="a@x.com")
        p.subscription("emailList", "101", subscribe=False, email="a@x.com")  # again: no change
        assert self.fields(p) == {"unsubscribedChannelIds": [], "emailListIds": [102],
                                  "unsubscribedMessageTypeIds": [77]}

    def test_by_user_id(self) -> None:
        p = project(ProjectType.USER_ID)
        p.users_update({"userId": "u-1", "dataFields": {}})
        assert p.subscription("messageChannel", "5", subscribe=False, user_id="u-1")[0] == 200
        assert p.get_user(user_id="u-1")[1]["user"]["dataFields"]["unsubscribedChannelIds"] == [5]

    @pytest.mark.parametrize(("group", "group_id", "who", "code"), [
        ("smsChannel", "5", {"email": "a@x.com"}, "BadParams"),
        ("messageChannel", "five", {"email": "a@x.com"}, "BadParams"),
        ("messageChannel", "0", {"email": "a@x.com"}, "BadParams"),
        ("messageChannel", "5", {"email": "not-an-email"}, "InvalidEmailAddressError"),
        ("messageChannel", "5", {"user_id": "nobody"}, "UnknownUserIdError"),
    ])
    def test_refuses_bad_groups_ids_and_users(self, group: str, group_id: str, who: dict[str, str],
                                              code: str) -> None:
        p = project()
        p.users_update({"email": "a@x.com", "dataFields": {}})
        status, answer = p.subscription(group, group_id, subscribe=False, **who)
        assert (status, answer["code"]) == (400, code)
        assert self.fields(p) == {}


class TestForget:
    """users/forget, users/unforget, users/forgotten: Iterable's answers for a GDPR-forgotten user."""

    def test_forget_deletes_the_user_and_refuses_their_data_with_409(self) -> None:
        p = project(ProjectType.HYBRID)
        p.users_update({"email": "a@x.com", "userId": "u1", "dataFields": {"plan": "pro"}})
        p.events_track({"email": "a@x.com", "eventName": "Clicked", "id": "e1"})
        assert p.forget({"email": "a@x.com"}) == (200, {"msg": "User forgotten.", "code": "Success", "params": None})
        assert p.get_user(email="a@x.com") == (200, {}) and p.events == {}
        status, body = p.users_update({"userId": "u1", "dataFields": {}})
        assert (status, body["code"]) == (409, "ForgottenUserError")
        status, body = p.events_track({"email": "a@x.com", "eventName": "Clicked"})
        assert (status, body["code"]) == (409, "ForgottenUserError")
        assert p.forgotten() == (200, {"forgottenEmails": ["a@x.com"], "forgottenUserIds": ["u1"]})

    def test_bulk_answers_list_the_forgotten(self) -> None:
        p = project()
        p.forget({"email": "a@x.com"})
        _, users = p.users_bulk_update({"users": [{"email": "a@x.com"}, {"email": "b@x.com"}]})
        assert users["failedUpdates"]["forgottenEmails"] == ["a@x.com"] and users["successCount"] == 1
        _, events = p.events_track_bulk({"events": [{"email": "a@x.com", "eventName": "E"}]})
        assert events["failedUpdates"]["forgottenEmails"] == ["a@x.com"]

    def test_unforget_accepts_new_data_and_a_request_needs_an_identifier(self) -> None:
        p = project()
        p.forget({"email": "a@x.com"})
        assert p.unforget({"email": "a@x.com"})[0] == 200
        assert p.users_update({"email": "a@x.com"})[0] == 200
        assert p.forget({})[0] == 400
