"""``IterableClient.call`` for the per-group subscription endpoints (issue 21 part 3): method, encoded path, no body,
the endpoint (never the email) in metrics and errors, and a 202 "Accepted" of any body counted as delivered."""

from __future__ import annotations

import pytest
from aiohttp import web

from streams.errors import Rejected
from streams.metrics import ITERABLE_REQUESTS
from streams.model import Endpoint
from tests.unit.iterable import test_client
from tests.unit.iterable.test_client import ClientFor, Handler

client_for = test_client.client_for  # the fixture

BODY = {"subscriptionGroup": "messageChannel", "subscriptionGroupId": 12, "email": "a+b@x.com"}


def recording(status: int, text: str, seen: list[tuple[str, str, bytes]]) -> Handler:
    async def handler(request: web.Request) -> web.StreamResponse:
        seen.append((request.method, request.raw_path, await request.read()))
        return web.Response(status=status, text=text)

    return handler


async def test_unsubscribe_is_a_delete_of_the_encoded_path_without_body(client_for: ClientFor) -> None:
    seen: list[tuple[str, str, bytes]] = []
    client = await client_for(recording(200, '{"msg": "", "code": "Success"}', seen))
    label = Endpoint.SUBSCRIPTION_UNSUBSCRIBE.value
    before = ITERABLE_REQUESTS.labels(label, "200", "Success")._value.get()
    assert await client.call(Endpoint.SUBSCRIPTION_UNSUBSCRIBE, BODY) == {"msg": "", "code": "Success"}
    # "+" stays encoded; aiohttp (yarl) sends "%40" as "@", which a path segment may hold.
    assert seen == [("DELETE", "/api/subscriptions/messageChannel/12/user/a%2Bb@x.com", b"")]
    assert ITERABLE_REQUESTS.labels(label, "200", "Success")._value.get() == before + 1


async def test_a_202_with_a_plain_text_body_is_accepted(client_for: ClientFor) -> None:
    seen: list[tuple[str, str, bytes]] = []
    client = await client_for(recording(202, "Accepted", seen))
    body = {"subscriptionGroup": "emailList", "subscriptionGroupId": 3, "userId": "u-1"}
    assert await client.call(Endpoint.SUBSCRIPTION_SUBSCRIBE, body) == {}
    assert seen[0][:2] == ("PATCH", "/api/subscriptions/emailList/3/byUserId/u-1")


async def test_a_refusal_names_the_endpoint_not_the_email(client_for: ClientFor) -> None:
    client = await client_for(recording(404, "Endpoint not found", []))
    with pytest.raises(Rejected) as refused:
        await client.call(Endpoint.SUBSCRIPTION_UNSUBSCRIBE, BODY)
    assert refused.value.status == 404
    assert "a+b" not in str(refused.value) and "a%2Bb" not in str(refused.value)
    assert str(refused.value).startswith(Endpoint.SUBSCRIPTION_UNSUBSCRIBE.value)
