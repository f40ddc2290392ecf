"""The only module that talks HTTP to Iterable (``streams.services`` only owns the aiohttp session).

``IterableClient`` owns URLs, the ``Api-Key`` header, JSON bodies, metrics per call, and the one
table that turns aiohttp errors, HTTP statuses and Iterable codes into ``streams.errors``
(iterable-api.md §3.2: branch on the status first, then on the code). No aiohttp error leaves it.

aiohttp rather than httpx because every ``commerce/trackPurchase`` is its own call, and aiohttp costs
an order of magnitude less client CPU per call (the figures: README "Libraries, and why", bench/RESULTS.md).
"""

from __future__ import annotations

import os
import ssl
import time
import urllib.parse
import urllib.request
from collections.abc import Mapping
from typing import Any

import aiohttp
import certifi
import orjson
from pydantic import SecretStr

from streams.errors import (
    BadApiKey,
    DeliveryError,
    RateLimited,
    Reason,
    Rejected,
    RetriableDelivery,
    UserNotYetVisible,
)
from streams.mapping.subscriptions import route
from streams.metrics import ITERABLE_LATENCY, ITERABLE_REQUESTS, RATE_LIMITED
from streams.model import Endpoint, JSONValue

__all__ = ["IterableClient", "classify", "new_http_client"]

_EVENT_ENDPOINTS = frozenset({Endpoint.EVENTS_TRACK})
_USER_UNKNOWN_CODES = frozenset({"UnknownEmailError", "UnknownUserIdError"})
_AUTH_CODES = frozenset({"BadApiKey", "BadAuthorizationHeader", "Unauthorized"})
_FORGOTTEN_CODE = "ForgottenUserError"
_PROBE_PATH = "/api/lists"


def _ssl_context(verify: bool) -> ssl.SSLContext | bool:
    """What httpx did by default: certifi's CA bundle, or ``SSL_CERT_FILE`` / ``SSL_CERT_DIR``."""
    if not verify:
        return False
    cafile = os.environ.get("SSL_CERT_FILE") or certifi.where()
    return ssl.create_default_context(cafile=cafile, capath=os.environ.get("SSL_CERT_DIR") or None)


def new_http_client(
    *, connect_timeout: float = 5.0, request_timeout: float = 30.0, max_connections: int = 16,
    verify: bool = True, keepalive: float = 5.0,
) -> aiohttp.ClientSession:
    """The pooled session a worker hands to ``IterableClient`` / ``Sender`` (one per worker).

    Call it inside the running event loop and ``await session.close()`` when done (or use it as
    ``async with``). ``request_timeout`` bounds a whole call (connect, send, answer);
    ``connect_timeout`` a new connection; idle connections are kept ``keepalive`` seconds.
    ``IterableClient`` applies the proxy variables itself, once (see ``_env_proxy``).
    """
    connector = aiohttp.TCPConnector(
        limit=max_connections, keepalive_timeout=keepalive, ssl=_ssl_context(verify)
    )
    return aiohttp.ClientSession(
        connector=connector,
        timeout=aiohttp.ClientTimeout(total=request_timeout, sock_connect=connect_timeout),
        trust_env=False,  # True re-reads the environment and ~/.netrc on every call: +650 µs of CPU
    )


def _env_proxy(url: str) -> str | None:
    """The proxy for ``url`` from ``HTTPS_PROXY`` / ``HTTP_PROXY`` unless ``NO_PROXY`` exempts it (as httpx did)."""
    parts = urllib.parse.urlsplit(url)
    if parts.hostname is None or urllib.request.proxy_bypass(parts.hostname):
        return None
    return urllib.request.getproxies().get(parts.scheme)


def _retry_after(headers: Mapping[str, str]) -> float | None:
    value = headers.get("retry-after")
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        return None  # an HTTP date; rare enough that backoff is fine


def _text(raw: bytes, charset: str) -> str:
    try:
        return raw.decode(charset, errors="replace")
    except LookupError:  # a charset Python does not know
        return raw.decode("utf-8", errors="replace")


def classify(path: str, status: int, code: str | None, body: Any, retry_after: float | None) -> DeliveryError:
    """The error for a non-success answer (one table, read top to bottom; first match wins).

    | status / code                                   | error                      |
    |-------------------------------------------------|----------------------------|
    | 429                                             | RateLimited(retry_after)   |
    | 401, or code BadApiKey / Unauthorized           | BadApiKey                  |
    | 408, 5xx except 501                             | RetriableDelivery          |
    | 400 Unknown{Email,UserId}Error on events/track  | UserNotYetVisible          |
    | 400 RequestFieldsTypesMismatched                | Rejected(field_type_mismatch) |
    | 400 / 409 ForgottenUserError (GDPR-forgotten)   | Rejected(forgotten)        |
    | anything else (400, 403, 404, 409, 413, 501 …)  | Rejected                   |
    """
    message = f"{path} answered {status} {code or ''}".strip()
    kwargs: dict[str, Any] = {"status": status, "code": code, "response": body}
    if status == 429:
        return RateLimited(message, retry_after=retry_after, **kwargs)
    if status == 401 or (status == 403 and code in _AUTH_CODES):
        return BadApiKey(message, **kwargs)
    if status == 408 or (status >= 500 and status != 501):
        return RetriableDelivery(message, **kwargs)
    if status == 400 and code in _USER_UNKNOWN_CODES and path in _EVENT_ENDPOINTS:
        return UserNotYetVisible(message, **kwargs)
    if code == "RequestFieldsTypesMismatched":
        return Rejected(message, reason=Reason.FIELD_TYPE_MISMATCH, **kwargs)
    if code == _FORGOTTEN_CODE and status in (400, 409):
        return Rejected(message, reason=Reason.FORGOTTEN, **kwargs)
    return Rejected(message, **kwargs)


def _identifier(email: str | None, user_id: str | None) -> dict[str, JSONValue]:
    body: dict[str, JSONValue] = {}
    if email is not None:
        body["email"] = email
    if user_id is not None:
        body["userId"] = user_id
    if not body:
        raise ValueError("an email or a user id is required")
    return body


class IterableClient:
    """Calls Iterable's REST API through ``http`` (which owns pooling, timeouts and TLS).

    Every call returns the parsed JSON of a 2xx answer, or raises a ``DeliveryError`` subclass:
    ``RetriableDelivery`` (5xx, timeouts, connection errors), ``RateLimited`` (429),
    ``UserNotYetVisible``, ``BadApiKey`` (401) or ``Rejected`` (other 4xx).
    """

    def __init__(self, http: aiohttp.ClientSession, base_url: str, api_key: SecretStr | str) -> None:
        self._http = http
        self._base_url = base_url.rstrip("/")
        self._api_key = api_key if isinstance(api_key, SecretStr) else SecretStr(api_key)
        self._proxy = _env_proxy(self._base_url)

    def __repr__(self) -> str:  # the key never shows up in logs or tracebacks
        return f"IterableClient(base_url={self._base_url!r})"

    @property
    def base_url(self) -> str:
        return self._base_url

    def _headers(self) -> dict[str, str]:
        return {
            "Api-Key": self._api_key.get_secret_value(),
            "Content-Type": "application/json",
            "Accept": "application/json",
        }

    async def request(
        self,
        method: str,
        path: str,
        body: Mapping[str, JSONValue] | None = None,
        params: Mapping[str, str] | None = None,
        label: str | None = None,
    ) -> Any:
        """One HTTP call; the parsed JSON answer or a ``DeliveryError`` (see the class docstring).

        ``label`` names the call in metrics and messages instead of ``path`` (a path holding an email)."""
        url = self._base_url + path
        path = label or path
        content = orjson.dumps(body) if body is not None else None
        started = time.perf_counter()
        try:
            async with self._http.request(
                method, url, data=content, params=params, headers=self._headers(),
                proxy=self._proxy,
                allow_redirects=False,  # a 3xx is an answer to classify, as it was with httpx
            ) as response:
                raw = await response.read()
                status = response.status
                charset = response.charset or "utf-8"
                retry_after = _retry_after(response.headers)
        except TimeoutError as exc:  # asyncio's total timeout and aiohttp's ServerTimeoutError
            ITERABLE_REQUESTS.labels(path, "timeout", "").inc()
            raise RetriableDelivery(f"{path} timed out: {type(exc).__name__}") from exc
        except aiohttp.ClientError as exc:
            ITERABLE_REQUESTS.labels(path, "error", "").inc()
            raise RetriableDelivery(f"{path} failed: {type(exc).__name__}") from exc
        finally:
            ITERABLE_LATENCY.labels(path).observe(time.perf_counter() - started)
        try:
            parsed: Any = orjson.loads(raw) if raw else {}
        except orjson.JSONDecodeError:
            parsed = _text(raw, charset)[:2000]  # gateways answer HTML or plain text (§3.1)
        code = parsed.get("code") if isinstance(parsed, dict) else None
        code = code if isinstance(code, str) else None
        ITERABLE_REQUESTS.labels(path, str(status), code or "").inc()
        if 200 <= status < 300:
            if not isinstance(parsed, dict):
                raise RetriableDelivery(
                    f"{path} answered {status} with a non-JSON body", status=status, response=parsed
                )
            # Iterable answers 200 to a blocked event name and says so only in msg (§2.3, §7).
            msg = parsed.get("msg")
            if path == Endpoint.EVENTS_TRACK and isinstance(msg, str) and "disallowed from tracking" in msg:
                raise Rejected(
                    f"{path}: event name is disallowed",
                    status=status,
                    code="DisallowedEventName",
                    response=parsed,
                )
            return parsed
        if status == 429:
            RATE_LIMITED.labels(path).inc()
        raise classify(path, status, code, parsed, retry_after)

    async def post(self, endpoint: Endpoint, body: Mapping[str, JSONValue]) -> dict[str, Any]:
        """POST ``body`` to ``endpoint``; the answer's JSON object."""
        result: dict[str, Any] = await self.request("POST", endpoint.value, body)
        return result

    async def call(self, endpoint: Endpoint, body: Mapping[str, JSONValue]) -> dict[str, Any]:
        """What the sender calls: a POST of ``body`` to ``endpoint``, or for a subscription endpoint its
        PATCH / DELETE on the path the body names (``streams.mapping.subscriptions.route``), named in metrics
        and errors by the endpoint (no email)."""
        routed = route(endpoint.value, body)
        if routed is None:
            return await self.post(endpoint, body)
        method, path = routed
        try:
            result: dict[str, Any] = await self.request(method, path, label=endpoint.value)
        except RetriableDelivery as exc:
            if exc.status == 202:  # "Accepted a request to subscribe" (OpenAPI), whatever its body
                return {}
            raise
        return result

    async def get_user_by_email(self, email: str) -> dict[str, Any] | None:
        """The user's profile, or None when Iterable does not know it."""
        result = await self.request("GET", "/api/users/getByEmail", params={"email": email})
        user = result.get("user") if isinstance(result, dict) else None
        return user if isinstance(user, dict) else None

    async def get_user_by_id(self, user_id: str) -> dict[str, Any] | None:
        result = await self.request("GET", "/api/users/byUserId", params={"userId": user_id})
        user = result.get("user") if isinstance(result, dict) else None
        return user if isinstance(user, dict) else None

    async def forget(self, *, email: str | None = None, user_id: str | None = None) -> None:
        """``POST /api/users/forget`` (GDPR): Iterable deletes the user and refuses their data from now on."""
        await self.post_path("/api/users/forget", _identifier(email, user_id))

    async def unforget(self, *, email: str | None = None, user_id: str | None = None) -> None:
        """``POST /api/users/unforget``: Iterable accepts the user's data again (their old data stays gone)."""
        await self.post_path("/api/users/unforget", _identifier(email, user_id))

    async def post_path(self, path: str, body: Mapping[str, JSONValue]) -> dict[str, Any]:
        """POST ``body`` to a path outside ``Endpoint`` (the GDPR calls); the answer's JSON object."""
        result: dict[str, Any] = await self.request("POST", path, body)
        return result

    async def check_key(self) -> None:
        """A harmless authenticated read (GET /api/lists); raises ``BadApiKey`` for a bad key."""
        await self.request("GET", _PROBE_PATH)
