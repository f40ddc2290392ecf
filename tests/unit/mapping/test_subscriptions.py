"""Subscription preferences (issue 21 part 3): ``streams.mapping.subscriptions`` and the identify rule."""

from __future__ import annotations

from typing import Any

import pytest

from streams.explain import ExplainState, decision_record, explain_event
from streams.iterable.ratelimit import UNPUBLISHED
from streams.mapping import MappingConfig, apply_event
from streams.mapping.subscriptions import MAX_IDS, Change, Sent, SubscriptionTraits, changes, route
from streams.model import DropReason, Endpoint, EventType, Identity, ProjectType
from streams.steps import apply_step
from tests.unit.builders import NOW, T0, event, person

TRAITS = SubscriptionTraits(unsubscribed_channels="unsubscribed_channel_ids", email_lists="email_list_ids",
                            unsubscribed_message_types="unsubscribed_message_type_ids",
                            opt_outs={"email_opt_out": 12})
CONFIG = {"unsubscribed_channels_trait": "unsubscribed_channel_ids", "email_lists_trait": "email_list_ids",
          "unsubscribed_message_types_trait": "unsubscribed_message_type_ids", "opt_out_traits": {"email_opt_out": 12}}


def identify(traits: dict[str, Any], message_id: str = "i-1") -> Any:
    return event(EventType.IDENTIFY, message_id=message_id, email="jane@example.com", user_id="u-1",
                 traits={"email": "jane@example.com", **traits})


def subscribe_run(ev: Any, sent: Sent | None = None, identity: Identity | None = None,
                  project: ProjectType = ProjectType.EMAIL, **config: Any) -> Any:
    who = identity if identity is not None else person()
    values = {**CONFIG, **config}
    return apply_event(ev, who.person_key, who, MappingConfig(project_type=project, **values), NOW, None, None, sent)


def calls(applied: Any) -> list[tuple[str, dict[str, Any]]]:
    return [(r.endpoint.value.split()[0], dict(r.body)) for r in applied.decision.requests
            if r.endpoint in (Endpoint.SUBSCRIPTION_SUBSCRIBE, Endpoint.SUBSCRIPTION_UNSUBSCRIBE)]


class TestChanges:
    def test_first_sight_states_each_listed_id(self) -> None:
        found = changes({"unsubscribed_channel_ids": [5, "6"], "email_list_ids": [101], "email_opt_out": True},
                        TRAITS, Sent())
        assert found == (Change("emailList", 101, True), Change("messageChannel", 5, False),
                         Change("messageChannel", 6, False), Change("messageChannel", 12, False))

    def test_only_what_changed_is_sent(self) -> None:
        sent = Sent({"messageChannel:5": False, "emailList:101": True})
        assert changes({"unsubscribed_channel_ids": [5], "email_list_ids": [101]}, TRAITS, sent) == ()

    def test_an_id_no_longer_listed_goes_back(self) -> None:
        sent = Sent({"messageChannel:5": False, "emailList:101": True, "emailList:102": True})
        found = changes({"unsubscribed_channel_ids": [], "email_list_ids": [102]}, TRAITS, sent)
        assert found == (Change("emailList", 101, False), Change("messageChannel", 5, True))

    def test_an_absent_or_null_trait_changes_nothing(self) -> None:
        sent = Sent({"messageChannel:5": False, "emailList:101": True})
        assert changes({"unsubscribed_channel_ids": None}, TRAITS, sent) == ()

    def test_the_opt_out_boolean_wins_for_its_channel(self) -> None:
        found = changes({"unsubscribed_channel_ids": [12], "email_opt_out": False}, TRAITS, Sent())
        assert found == (Change("messageChannel", 12, True),)

    def test_message_types(self) -> None:
        sent = Sent({"messageType:77": False})
        assert changes({"unsubscribed_message_type_ids": [78]}, TRAITS, sent) == (
            Change("messageType", 77, True), Change("messageType", 78, False))

    @pytest.mark.parametrize(("traits", "named"), [
        ({"unsubscribed_channel_ids": "5"}, "unsubscribed_channel_ids"),
        ({"email_list_ids": [1, "x"]}, "email_list_ids"),
        ({"email_list_ids": [True]}, "email_list_ids"),
        ({"email_list_ids": [0]}, "email_list_ids"),
        ({"email_opt_out": "yes"}, "email_opt_out"),
        ({"email_list_ids": list(range(1, MAX_IDS + 2))}, "email_list_ids"),
    ])
    def test_bad_values_name_the_trait(self, traits: dict[str, Any], named: str) -> None:
        with pytest.raises(ValueError, match=named):
            changes(traits, TRAITS, Sent())


class TestRoute:
    def test_by_email_the_address_is_encoded(self) -> None:
        body = {"subscriptionGroup": "messageChannel", "subscriptionGroupId": 12, "email": "a+b@x.com"}
        assert route(Endpoint.SUBSCRIPTION_UNSUBSCRIBE.value, body) == (
            "DELETE", "/api/subscriptions/messageChannel/12/user/a%2Bb%40x.com")

    def test_by_user_id(self) -> None:
        body = {"subscriptionGroup": "emailList", "subscriptionGroupId": 3, "userId": "u/1"}
        assert route(Endpoint.SUBSCRIPTION_SUBSCRIBE.value, body) == (
            "PATCH", "/api/subscriptions/emailList/3/byUserId/u%2F1")

    def test_other_endpoints_are_posts(self) -> None:
        assert route(Endpoint.USERS_UPDATE.value, {"email": "a@x.com"}) is None

    def test_the_endpoints_limit_is_probed(self) -> None:
        assert {Endpoint.SUBSCRIPTION_SUBSCRIBE, Endpoint.SUBSCRIPTION_UNSUBSCRIBE} <= UNPUBLISHED


class TestIdentifyRule:
    def test_traits_become_calls_after_the_update_and_leave_data_fields(self) -> None:
        applied = subscribe_run(identify({"email_opt_out": True, "email_list_ids": [101], "plan": "pro"}))
        update = applied.decision.requests[0]
        assert update.endpoint is Endpoint.USERS_UPDATE
        assert update.body["dataFields"] == {"plan": "pro", "userId": "u-1"}
        assert calls(applied) == [
            ("PATCH", {"subscriptionGroup": "emailList", "subscriptionGroupId": 101, "email": "jane@example.com"}),
            ("DELETE", {"subscriptionGroup": "messageChannel", "subscriptionGroupId": 12,
                        "email": "jane@example.com"}),
        ]
        assert applied.subscriptions == Sent({"emailList:101": True, "messageChannel:12": False})

    def test_the_same_traits_again_cost_no_call(self) -> None:
        first = subscribe_run(identify({"email_opt_out": True}))
        again = subscribe_run(identify({"email_opt_out": True}, "i-2"), first.subscriptions)
        assert calls(again) == [] and again.subscriptions is None
        assert [r.endpoint for r in again.decision.requests] == [Endpoint.USERS_UPDATE]

    def test_user_id_project_uses_the_by_user_id_path(self) -> None:
        applied = subscribe_run(identify({"email_opt_out": False}), project=ProjectType.USER_ID)
        assert calls(applied) == [("PATCH", {"subscriptionGroup": "messageChannel", "subscriptionGroupId": 12,
                                             "userId": "u-1"})]

    def test_traits_not_configured_stay_data_fields(self) -> None:
        applied = subscribe_run(identify({"email_opt_out": True}), opt_out_traits={})
        assert calls(applied) == []
        assert applied.decision.requests[0].body["dataFields"]["email_opt_out"] is True

    def test_a_bad_trait_drops_the_identify_but_identifies_the_person(self) -> None:
        applied = apply_event(identify({"email_list_ids": "101"}), "k", None, MappingConfig(**CONFIG), NOW)
        assert applied.decision.drop_reason is DropReason.SUBSCRIPTION_INVALID
        assert "email_list_ids" in (applied.decision.detail or "")
        assert applied.identity is not None and applied.subscriptions is None

    def test_a_stale_identify_changes_no_subscription(self) -> None:
        later = person(last_identified_at=T0.replace(year=2025))
        applied = subscribe_run(identify({"email_opt_out": True}), identity=later)
        assert applied.decision.drop_reason is DropReason.STALE_IDENTIFY and applied.subscriptions is None

    def test_the_table_is_written_through_apply_step(self) -> None:
        identities: dict[str, Identity] = {}
        table: dict[str, Sent] = {}
        config = MappingConfig(**CONFIG)
        first = apply_step(identify({"email_opt_out": True}), "k", identities, config, NOW, subscriptions=table)
        assert table["k"] == Sent({"messageChannel:12": False})
        replay = apply_step(identify({"email_opt_out": True}), "k", identities, config, NOW, subscriptions=table)
        assert len(calls_of(first)) == 1 and calls_of(replay) == []


def calls_of(decision: Any) -> list[Any]:
    return [r for r in decision.requests if r.endpoint.value.startswith(("PATCH", "DELETE"))]


def test_explain_shows_method_and_path() -> None:
    state = ExplainState()
    decision = explain_event(identify({"email_opt_out": True}), MappingConfig(**CONFIG), state, NOW)
    record = decision_record("i-1", decision)
    assert record["requests"][-1] == {"method": "DELETE", "body": None,
                                      "path": "/api/subscriptions/messageChannel/12/user/jane%40example.com"}
    assert state.subscriptions  # carried to the next line
