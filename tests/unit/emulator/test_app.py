"""The emulator's HTTP surface in process (ASGITransport): auth, envelope, limits, faults, admin."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest

from streams.emulator import EmulatorConfig, EmulatorServer, create_emulator
from streams.emulator.config import parse_limits
from streams.errors import Rejected
from streams.iterable.client import IterableClient, new_http_client
from streams.model import Endpoint

H = {"Api-Key": "k"}


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
async def http(clock: Clock) -> AsyncIterator[httpx.AsyncClient]:
    app = create_emulator(
        EmulatorConfig(api_keys=("k",), clock=clock, rate_limits={"/api/users/bulkUpdate": 2.0})
    )
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://emu") as client:
        yield client


class TestCreateEmulator:
    async def test_bad_key_is_401_with_envelope(self, http: httpx.AsyncClient) -> None:
        response = await http.post(
            "/api/users/update", json={"email": "a@x.com"}, headers={"Api-Key": "nope"}
        )
        assert response.status_code == 401
        assert set(response.json()) == {"msg", "code", "params"} and response.json()["code"] == "BadApiKey"

    async def test_bad_json_is_400(self, http: httpx.AsyncClient) -> None:
        response = await http.post("/api/users/update", content=b"{not json", headers=H)
        assert (response.status_code, response.json()["code"]) == (400, "BadJsonBody")

    async def test_rate_limit_answers_429_and_refills(self, http: httpx.AsyncClient, clock: Clock) -> None:
        statuses = [
            (await http.post("/api/users/bulkUpdate", json={"users": []}, headers=H)).status_code
            for _ in range(3)
        ]
        assert statuses == [200, 200, 429]
        clock.now += 0.5
        assert (await http.post("/api/users/bulkUpdate", json={"users": []}, headers=H)).status_code == 200
        counters = (await http.get("/_emulator/counters")).json()
        assert counters["rate_limited"] == {"/api/users/bulkUpdate": 1}

    async def test_faults_by_admin_endpoint(self, http: httpx.AsyncClient, clock: Clock) -> None:
        await http.post("/_emulator/faults", json={"fail_next": 1, "throttle_next": 1, "retry_after": 3})
        first = await http.get("/api/lists", headers=H)
        second = await http.get("/api/lists", headers=H)
        third = await http.get("/api/lists", headers=H)
        assert (first.status_code, second.status_code, third.status_code) == (503, 429, 200)
        assert second.headers["Retry-After"] == "3"
        await http.post("/_emulator/faults", json={"outage_seconds": 10})
        assert (await http.get("/api/lists", headers=H)).status_code == 503
        clock.now += 10
        assert (await http.get("/api/lists", headers=H)).status_code == 200
        assert (await http.post("/_emulator/faults", json={"no_such_fault": 1})).status_code == 400

    async def test_rate_limits_can_be_switched_off(self, http: httpx.AsyncClient) -> None:
        await http.post("/_emulator/faults", json={"rate_limits_enabled": False})
        for _ in range(5):
            assert (
                await http.post("/api/users/bulkUpdate", json={"users": []}, headers=H)
            ).status_code == 200

    async def test_reads_and_reset(self, http: httpx.AsyncClient) -> None:
        await http.post("/api/users/update", json={"email": "a+b@x.com", "userId": "u/1"}, headers=H)
        await http.post(
            "/api/events/track", json={"email": "a+b@x.com", "eventName": "E", "id": "e1"}, headers=H
        )
        by_email = await http.get("/api/users/getByEmail", params={"email": "a+b@x.com"}, headers=H)
        assert by_email.json()["user"]["userId"] == "u/1"
        events = await http.get("/api/events/a+b@x.com", headers=H)
        assert [e["id"] for e in events.json()["events"]] == ["e1"]
        assert (await http.get("/api/users/getFields", headers=H)).json() == {"fields": {}}
        await http.post("/_emulator/reset")
        assert (
            await http.get("/api/users/getByEmail", params={"email": "a+b@x.com"}, headers=H)
        ).json() == {}

    async def test_too_many_items_is_batch_too_large(self, http: httpx.AsyncClient) -> None:
        events = [{"email": "a@x.com", "eventName": "E"}] * 1001
        response = await http.post("/api/events/trackBulk", json={"events": events}, headers=H)
        assert (response.status_code, response.json()["code"]) == (400, "BatchTooLarge")


class TestHiddenLimits:
    PURCHASE = {"id": "o1", "user": {"email": "a@x.com"}, "total": 1.0, "items": []}

    async def test_a_hidden_limit_answers_429_and_the_timeline_counts_each_second(self, clock: Clock) -> None:
        app = create_emulator(EmulatorConfig(api_keys=("k",), clock=clock,
                                             hidden_limits={"/api/commerce/trackPurchase": 2.0}))
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://emu") as http:
            statuses = [(await http.post("/api/commerce/trackPurchase", json=self.PURCHASE, headers=H)).status_code
                        for _ in range(3)]
            clock.now += 1.0
            statuses.append((await http.post("/api/commerce/trackPurchase", json=self.PURCHASE,
                                             headers=H)).status_code)
            timeline = (await http.get("/_emulator/timeline")).json()
        assert statuses == [200, 200, 429, 200]
        assert timeline["seconds"] == {"/api/commerce/trackPurchase": {"0": 2, "1": 1},
                                       "/api/commerce/trackPurchase 429": {"0": 1}}
        assert timeline["hidden"] == ["/api/commerce/trackPurchase"]
        assert timeline["limits"]["/api/commerce/trackPurchase"] == 2.0

    async def test_without_one_the_endpoint_is_not_limited(self, http: httpx.AsyncClient) -> None:
        for _ in range(20):
            assert (await http.post("/api/commerce/trackPurchase", json=self.PURCHASE, headers=H)).status_code == 200

    def test_parse_limits(self) -> None:
        assert parse_limits(["/api/commerce/trackPurchase=400", "/api/users/updateEmail=7.5"]) == {
            "/api/commerce/trackPurchase": 400.0, "/api/users/updateEmail": 7.5}
        for bad in ("trackPurchase=4", "/api/x", "/api/x=0"):
            with pytest.raises(ValueError):
                parse_limits([bad])


class TestSubscriptionPaths:
    """The worker's client reaches the per-group endpoints over HTTP: method, encoded identifier, metrics label."""

    async def test_the_client_unsubscribes_by_encoded_email_and_by_user_id(self) -> None:
        server = EmulatorServer(EmulatorConfig(api_keys=("k",)))
        await server.start()
        try:
            async with new_http_client() as session:
                client = IterableClient(session, server.url, "k")
                body = {"subscriptionGroup": "messageChannel", "subscriptionGroupId": 12, "email": "a+b@x.com"}
                await client.call(Endpoint.SUBSCRIPTION_UNSUBSCRIBE, body)
                await client.call(Endpoint.USERS_UPDATE, {"email": "a+b@x.com", "userId": "u/1", "dataFields": {}})
                await client.call(Endpoint.SUBSCRIPTION_SUBSCRIBE,
                                  {"subscriptionGroup": "emailList", "subscriptionGroupId": 3, "userId": "u/1"})
                with pytest.raises(Rejected) as refused:
                    await client.call(Endpoint.SUBSCRIPTION_SUBSCRIBE,
                                      {"subscriptionGroup": "nope", "subscriptionGroupId": 3, "email": "a+b@x.com"})
        finally:
            await server.stop()
        assert "a+b" not in str(refused.value) and refused.value.status == 400
        data = server.state.project.by_email["a+b@x.com"].data_fields
        assert (data["unsubscribedChannelIds"], data["emailListIds"]) == ([12], [3])
