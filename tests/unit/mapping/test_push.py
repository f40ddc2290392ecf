"""Push device tokens (issue 21 part 2): ``streams.mapping.push`` and the registration rule of ``apply_event``."""

from __future__ import annotations

from typing import Any

import pytest

from streams.iterable.ratelimit import DEFAULT_LIMITS
from streams.mapping import MappingConfig, Registered, apply_event
from streams.mapping.push import KEPT, PushToken, push_token
from streams.model import Endpoint, EventType, Identity
from streams.steps import apply_step
from tests.unit.builders import NOW, event, person

APP = "com.example.shop"


def push_run(ev: Any, registered: Registered | None = None, identity: Identity | None = None,
             **config: Any) -> Any:
    config.setdefault("push_app_name", APP)
    who = identity if identity is not None else person()
    return apply_event(ev, who.person_key, who, MappingConfig(**config), NOW, None, registered)


def ios(token: str = "tok-1", **fields: Any) -> Any:
    return event(context={"device": {"token": token, "type": "ios"}}, **fields)


class TestPushToken:
    @pytest.mark.parametrize(("context", "properties", "expected"), [
        ({"device": {"token": "t", "type": "ios"}}, {}, PushToken("t", "APNS")),
        ({"device": {"token": "t"}, "os": {"name": "Android"}}, {}, PushToken("t", "GCM")),
        ({"device": {"token": "t", "type": "iPadOS"}}, {}, PushToken("t", "APNS")),
        ({}, {"$device_token": "t", "$os": "Android"}, PushToken("t", "GCM")),
        ({}, {"device_token": "t", "$os": "iOS"}, PushToken("t", "APNS")),
        ({"device": {"token": "t", "type": "windows"}}, {}, None),
        ({"device": {"token": " ", "type": "ios"}}, {}, None),
        ({}, {"$device_token": "t"}, None),
        ({}, {}, None),
    ])
    def test_found_in_both_dialects(self, context: dict[str, Any], properties: dict[str, Any],
                                    expected: PushToken | None) -> None:
        assert push_token(context, properties, "APNS") == expected

    def test_ios_platform_by_setting(self) -> None:
        assert push_token({"device": {"token": "t", "type": "ios"}}, {}, "APNS_SANDBOX") == PushToken(
            "t", "APNS_SANDBOX")

    def test_the_registry_is_bounded_and_keeps_no_token(self) -> None:
        registered = Registered()
        for n in range(KEPT + 3):
            registered = registered.add(PushToken(f"secret-token-{n}", "GCM").digest(APP))
        assert len(registered.digests) == KEPT
        assert not any("secret" in digest for digest in registered.digests)


class TestRegistration:
    def test_first_sight_registers_after_the_events_requests(self) -> None:
        applied = push_run(ios())
        endpoints = [r.endpoint for r in applied.decision.requests]
        assert endpoints == [Endpoint.EVENTS_TRACK, Endpoint.USERS_REGISTER_DEVICE_TOKEN]
        assert dict(applied.decision.requests[-1].body) == {
            "email": "jane@example.com", "device": {"token": "tok-1", "platform": "APNS", "applicationName": APP}}
        assert applied.devices is not None and len(applied.devices.digests) == 1

    def test_one_identifier_only(self) -> None:
        from streams.model import ProjectType

        applied = push_run(ios(), project_type=ProjectType.HYBRID)
        body = dict(applied.decision.requests[-1].body)
        assert ("email" in body) != ("userId" in body)

    def test_a_registered_token_costs_no_call(self) -> None:
        first = push_run(ios())
        again = push_run(ios(message_id="m-2"), first.devices)
        assert [r.endpoint for r in again.decision.requests] == [Endpoint.EVENTS_TRACK]
        assert again.devices is None
        other_app = push_run(ios(message_id="m-3"), first.devices, push_app_name="com.other")
        assert other_app.decision.requests[-1].endpoint is Endpoint.USERS_REGISTER_DEVICE_TOKEN

    def test_off_without_an_app_name(self) -> None:
        applied = push_run(ios(), push_app_name="")
        assert [r.endpoint for r in applied.decision.requests] == [Endpoint.EVENTS_TRACK]

    def test_no_registration_for_a_dropped_event(self) -> None:
        ev = ios()
        applied = apply_event(ev, "k", None, MappingConfig(push_app_name=APP), NOW, None, None)
        assert not applied.decision.sends and applied.devices is None

    def test_identify_registers_under_the_new_identity(self) -> None:
        ev = event(EventType.IDENTIFY, traits={"email": "new@example.com"}, email="new@example.com",
                   context={"device": {"token": "t", "type": "android"}})
        applied = apply_event(ev, "new@example.com", None, MappingConfig(push_app_name=APP), NOW)
        assert dict(applied.decision.requests[-1].body)["email"] == "new@example.com"

    def test_a_thousand_events_with_one_token_make_one_call(self) -> None:
        who = person()
        identities = {who.person_key: who}
        devices: dict[str, Registered] = {}
        calls = 0
        for n in range(1000):
            decision = apply_step(ios(message_id=f"m-{n}"), who.person_key, identities,
                                  MappingConfig(push_app_name=APP), NOW, devices=devices)
            calls += sum(r.endpoint is Endpoint.USERS_REGISTER_DEVICE_TOKEN for r in decision.requests)
        assert calls == 1

    def test_the_endpoint_is_limited_to_500_a_second(self) -> None:
        assert DEFAULT_LIMITS[Endpoint.USERS_REGISTER_DEVICE_TOKEN] == 500.0
