from __future__ import annotations

import httpx
import pytest

from streams.errors import BadApiKey, RateLimited, Reason, Rejected, RetriableDelivery, UserNotYetVisible
from streams.iterable import IterableClient, classify
from streams.model import Endpoint


def client_for(handler: httpx.MockTransport | None = None, **kwargs: object) -> IterableClient:
    http = httpx.AsyncClient(transport=handler)
    return IterableClient(http, "http://iterable.test/", "secret-key-123")


class TestClassify:
    @pytest.mark.parametrize(
        ("path", "status", "code", "expected", "reason"),
        [
            ("/api/events/trackBulk", 429, "RateLimitExceeded", RateLimited, Reason.RATE_LIMITED),
            ("/api/users/update", 401, "BadApiKey", BadApiKey, Reason.BAD_API_KEY),
            ("/api/users/update", 401, "Success", BadApiKey, Reason.BAD_API_KEY),  # status first (§3.1)
            ("/api/users/update", 500, "GenericError", RetriableDelivery, Reason.ITERABLE_UNAVAILABLE),
            ("/api/users/update", 503, None, RetriableDelivery, Reason.ITERABLE_UNAVAILABLE),
            ("/api/users/update", 408, None, RetriableDelivery, Reason.ITERABLE_UNAVAILABLE),
            ("/api/users/update", 501, None, Rejected, Reason.ITERABLE_REJECTED),
            ("/api/events/track", 400, "UnknownEmailError", UserNotYetVisible, Reason.USER_NOT_FOUND),
            ("/api/users/updateEmail", 400, "UnknownEmailError", Rejected, Reason.ITERABLE_REJECTED),
            (
                "/api/users/bulkUpdate",
                400,
                "RequestFieldsTypesMismatched",
                Rejected,
                Reason.FIELD_TYPE_MISMATCH,
            ),
            ("/api/users/update", 409, None, Rejected, Reason.ITERABLE_REJECTED),
            ("/api/users/update", 400, "InvalidEmailAddressError", Rejected, Reason.ITERABLE_REJECTED),
        ],
    )
    def test_table(self, path: str, status: int, code: str | None, expected: type, reason: Reason) -> None:
        error = classify(path, status, code, {"code": code}, None)
        assert type(error) is expected
        assert error.reason == reason and error.status == status


class TestIterableClient:
    async def test_sends_key_header_and_json(self) -> None:
        seen: list[httpx.Request] = []

        def handler(request: httpx.Request) -> httpx.Response:
            seen.append(request)
            return httpx.Response(200, json={"msg": "ok", "code": "Success", "params": None})

        client = client_for(httpx.MockTransport(handler))
        assert (await client.users_update({"email": "a@x.com"}))["code"] == "Success"
        assert seen[0].headers["Api-Key"] == "secret-key-123"
        assert str(seen[0].url) == "http://iterable.test/api/users/update"
        assert "secret-key-123" not in repr(client)

    async def test_429_carries_retry_after_even_with_a_plain_text_body(self) -> None:
        client = client_for(
            httpx.MockTransport(
                lambda r: httpx.Response(429, text="Too Many Requests", headers={"Retry-After": "2"})
            )
        )
        with pytest.raises(RateLimited) as info:
            await client.events_track_bulk([])
        assert info.value.retry_after == 2.0 and info.value.response == "Too Many Requests"

    @pytest.mark.parametrize(
        "exc", [httpx.ConnectError("refused"), httpx.ReadTimeout("slow"), httpx.RemoteProtocolError("eof")]
    )
    async def test_transport_errors_become_retriable(self, exc: Exception) -> None:
        def handler(request: httpx.Request) -> httpx.Response:
            raise exc

        with pytest.raises(RetriableDelivery) as info:
            await client_for(httpx.MockTransport(handler)).users_bulk_update([])
        assert not isinstance(info.value, RateLimited)
        assert isinstance(info.value.__cause__, httpx.HTTPError)

    async def test_disallowed_event_name_in_a_200_is_rejected(self) -> None:
        client = client_for(
            httpx.MockTransport(
                lambda r: httpx.Response(
                    200, json={"msg": "Event name X is disallowed from tracking", "code": "Success"}
                )
            )
        )
        with pytest.raises(Rejected) as info:
            await client.events_track({"eventName": "X"})
        assert info.value.code == "DisallowedEventName"

    async def test_user_lookup_returns_none_for_unknown_user(self) -> None:
        client = client_for(httpx.MockTransport(lambda r: httpx.Response(200, json={})))
        assert await client.get_user_by_email("a@x.com") is None

    async def test_check_key_raises_bad_api_key(self) -> None:
        client = client_for(httpx.MockTransport(lambda r: httpx.Response(401, json={"code": "BadApiKey"})))
        with pytest.raises(BadApiKey):
            await client.check_key()
        assert Endpoint.USERS_UPDATE.value.startswith("/api/")
