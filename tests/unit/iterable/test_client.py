from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable

import aiohttp
import orjson
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from streams._support import free_port
from streams.errors import BadApiKey, RateLimited, Reason, Rejected, RetriableDelivery, UserNotYetVisible
from streams.iterable import IterableClient, classify, new_http_client
from streams.model import Endpoint

KEY = "secret-key-123"
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
ClientFor = Callable[..., Awaitable[IterableClient]]


@pytest.fixture
async def client_for() -> AsyncIterator[ClientFor]:
    """``await client_for(handler)``: an IterableClient whose base URL is an aiohttp server answering with ``handler``.

    ``client_for(url=...)`` points the client at ``url`` instead (no server).
    """
    servers: list[TestServer] = []
    sessions: list[aiohttp.ClientSession] = []

    async def make(handler: Handler | None = None, *, url: str | None = None, timeout: float = 5.0) -> IterableClient:
        if handler is not None:
            app = web.Application()
            app.router.add_route("*", "/{tail:.*}", handler)
            server = TestServer(app, host="127.0.0.1")
            await server.start_server()
            servers.append(server)
            url = str(server.make_url("/"))
        assert url is not None
        http = new_http_client(request_timeout=timeout, connect_timeout=1.0)
        sessions.append(http)
        return IterableClient(http, url, KEY)

    yield make
    for http in sessions:
        await http.close()
    for server in servers:
        await server.close()


def json_answer(status: int, payload: object, **headers: str) -> Handler:
    async def handler(request: web.Request) -> web.StreamResponse:
        return web.Response(status=status, body=orjson.dumps(payload), content_type="application/json",
                            headers=headers)

    return handler


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
    async def test_sends_key_header_and_json(self, client_for: ClientFor) -> None:
        seen: list[tuple[str, str, dict[str, str], bytes]] = []

        async def handler(request: web.Request) -> web.StreamResponse:
            seen.append((request.method, request.path_qs, dict(request.headers), await request.read()))
            return web.json_response({"msg": "ok", "code": "Success", "params": None})

        client = await client_for(handler)
        assert (await client.post(Endpoint.USERS_UPDATE, {"email": "a@x.com"}))["code"] == "Success"
        method, path, headers, body = seen[0]
        assert headers["Api-Key"] == KEY
        assert (method, path) == ("POST", "/api/users/update")
        assert headers["Content-Type"] == "application/json"
        assert body == orjson.dumps({"email": "a@x.com"})
        assert KEY not in repr(client)

    async def test_query_parameters_are_encoded(self, client_for: ClientFor) -> None:
        seen: list[str] = []

        async def handler(request: web.Request) -> web.StreamResponse:
            seen.append(request.query["email"])
            return web.json_response({"user": {"email": request.query["email"]}})

        client = await client_for(handler)
        assert await client.get_user_by_email("a+b&c@x.com") == {"email": "a+b&c@x.com"}
        assert seen == ["a+b&c@x.com"]

    async def test_429_carries_retry_after_even_with_a_plain_text_body(self, client_for: ClientFor) -> None:
        async def handler(request: web.Request) -> web.StreamResponse:
            return web.Response(status=429, text="Too Many Requests", headers={"Retry-After": "2"})

        client = await client_for(handler)
        with pytest.raises(RateLimited) as info:
            await client.post(Endpoint.EVENTS_TRACK_BULK, {"events": []})
        assert info.value.retry_after == 2.0 and info.value.response == "Too Many Requests"

    async def test_a_200_with_an_html_body_is_retriable(self, client_for: ClientFor) -> None:
        async def handler(request: web.Request) -> web.StreamResponse:
            return web.Response(status=200, text="<html><body>gateway</body></html>", content_type="text/html")

        client = await client_for(handler)
        with pytest.raises(RetriableDelivery) as info:
            await client.post(Endpoint.USERS_UPDATE, {"email": "a@x.com"})
        assert not isinstance(info.value, RateLimited)
        assert info.value.status == 200 and info.value.response == "<html><body>gateway</body></html>"

    async def test_a_redirect_is_an_answer_not_followed(self, client_for: ClientFor) -> None:
        calls: list[str] = []

        async def handler(request: web.Request) -> web.StreamResponse:
            calls.append(request.path)
            return web.Response(status=302, headers={"Location": "/elsewhere"})

        client = await client_for(handler)
        with pytest.raises(Rejected) as info:
            await client.post(Endpoint.USERS_UPDATE, {"email": "a@x.com"})
        assert info.value.status == 302 and calls == ["/api/users/update"]

    async def test_refused_connection_is_retriable(self, client_for: ClientFor) -> None:
        client = await client_for(url=f"http://127.0.0.1:{free_port()}")
        with pytest.raises(RetriableDelivery) as info:
            await client.post(Endpoint.USERS_BULK_UPDATE, {"users": []})
        assert not isinstance(info.value, RateLimited)
        assert "failed" in str(info.value)
        assert isinstance(info.value.__cause__, aiohttp.ClientError)

    async def test_a_server_that_stalls_past_the_timeout_is_retriable(self, client_for: ClientFor) -> None:
        release = asyncio.Event()

        async def handler(request: web.Request) -> web.StreamResponse:
            await release.wait()
            return web.json_response({})

        client = await client_for(handler, timeout=0.1)
        try:
            with pytest.raises(RetriableDelivery) as info:
                await client.post(Endpoint.USERS_BULK_UPDATE, {"users": []})
        finally:
            release.set()
        assert "timed out" in str(info.value)
        assert isinstance(info.value.__cause__, TimeoutError)

    async def test_a_connection_closed_without_an_answer_is_retriable(self, client_for: ClientFor) -> None:
        async def hang_up(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await reader.readuntil(b"\r\n\r\n")
            writer.close()

        listener = await asyncio.start_server(hang_up, "127.0.0.1", 0)
        port = listener.sockets[0].getsockname()[1]
        try:
            client = await client_for(url=f"http://127.0.0.1:{port}")
            with pytest.raises(RetriableDelivery) as info:
                await client.post(Endpoint.USERS_BULK_UPDATE, {"users": []})
        finally:
            listener.close()
            await listener.wait_closed()
        assert "failed" in str(info.value)
        assert isinstance(info.value.__cause__, aiohttp.ClientError)

    async def test_disallowed_event_name_in_a_200_is_rejected(self, client_for: ClientFor) -> None:
        client = await client_for(
            json_answer(200, {"msg": "Event name X is disallowed from tracking", "code": "Success"})
        )
        with pytest.raises(Rejected) as info:
            await client.post(Endpoint.EVENTS_TRACK, {"eventName": "X"})
        assert info.value.code == "DisallowedEventName"

    async def test_user_lookup_returns_none_for_unknown_user(self, client_for: ClientFor) -> None:
        client = await client_for(json_answer(200, {}))
        assert await client.get_user_by_email("a@x.com") is None

    async def test_check_key_raises_bad_api_key(self, client_for: ClientFor) -> None:
        client = await client_for(json_answer(401, {"code": "BadApiKey"}))
        with pytest.raises(BadApiKey):
            await client.check_key()
        assert Endpoint.USERS_UPDATE.value.startswith("/api/")


class TestProxy:
    async def test_proxy_variables_are_honoured(self, monkeypatch: pytest.MonkeyPatch) -> None:
        seen: list[tuple[str, str]] = []

        async def proxy(request: web.Request) -> web.StreamResponse:
            seen.append((request.host, request.path))
            return web.json_response({"msg": "ok", "code": "Success"})

        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", proxy)
        server = TestServer(app, host="127.0.0.1")
        await server.start_server()
        for name in ("no_proxy", "NO_PROXY", "HTTP_PROXY"):
            monkeypatch.delenv(name, raising=False)
        monkeypatch.setenv("http_proxy", str(server.make_url("")))
        try:
            async with new_http_client(connect_timeout=1.0, request_timeout=5.0) as http:
                client = IterableClient(http, "http://iterable.test", KEY)
                assert (await client.post(Endpoint.USERS_UPDATE, {"email": "a@x.com"}))["code"] == "Success"
                monkeypatch.setenv("no_proxy", "iterable.test")
                assert IterableClient(http, "http://iterable.test", KEY)._proxy is None
        finally:
            await server.close()
        assert seen == [("iterable.test", "/api/users/update")]


class TestNewHttpClient:
    async def test_pool_timeouts_and_tls(self) -> None:
        async with new_http_client(connect_timeout=2.0, request_timeout=9.0, max_connections=7) as http:
            assert http.timeout.total == 9.0 and http.timeout.sock_connect == 2.0
            assert isinstance(http.connector, aiohttp.TCPConnector) and http.connector.limit == 7
        async with new_http_client(verify=False) as http:
            assert isinstance(http.connector, aiohttp.TCPConnector)
            assert http.connector._ssl is False  # verification off (FPI_ITERABLE_INSECURE_SKIP_TLS_VERIFY)
