"""A Confluent-compatible schema registry client (httpx), the only module of ``codecs`` with I/O.

It speaks the few endpoints the processor uses: ``GET /schemas/ids/{id}`` and
``POST /subjects/{subject}/versions``. Confluent Schema Registry and Apicurio Registry's
``/apis/ccompat/v7`` both serve them. Results are cached for the life of the client (a schema id
never changes meaning). httpx errors stop here: they become ``RegistryUnavailable`` (retriable),
``UnknownSchemaId`` (the registry has no such id) or ``ConfigError`` (the registry refused a schema).
A refused credential (401/403) is ``RegistryUnavailable`` too, naming the settings to check.

``SchemaRegistryClient.connect`` builds the client every command and the worker use from ``Settings``:
basic auth (FPI_SCHEMA_REGISTRY_USERNAME / PASSWORD or USER_INFO, or ``user:password@`` in the URL) or a
bearer token (FPI_SCHEMA_REGISTRY_TOKEN), and FPI_SCHEMA_REGISTRY_CAFILE for https. Credentials written
into the URL are taken out of it before httpx sees it, since httpx logs every request's URL.
"""

from __future__ import annotations

import json
import ssl
from collections.abc import Generator, Mapping
from types import TracebackType
from typing import Any
from urllib.parse import unquote, urlsplit, urlunsplit

import httpx

from streams.codecs._event import EventDecoder
from streams.errors import ConfigError, RegistryUnavailable, UnknownSchemaId
from streams.settings import Settings, redact_url

__all__ = ["SchemaRegistryClient", "subject_for"]

_CONTENT_TYPE = "application/vnd.schemaregistry.v1+json"


def subject_for(topic: str) -> str:
    """The value subject of ``topic`` under TopicNameStrategy: ``<topic>-value``."""
    return f"{topic}-value"


class SchemaRegistryClient:
    """Fetches schemas by id and registers schemas, with caches.

    ``http`` is owned by the caller (it may carry auth, TLS, timeouts); ``base_url`` is the
    registry root, e.g. ``http://registry:8081`` or ``http://host:8080/apis/ccompat/v7``.
    """

    def __init__(self, http: httpx.AsyncClient, base_url: str, *, owns_http: bool = False,
                 shown_url: str | None = None) -> None:
        self._http = http
        self._base = base_url.rstrip("/")
        self._shown = redact_url((shown_url or base_url).rstrip("/"))
        """The URL as configured, credentials masked: errors show where to look."""
        self._owns_http = owns_http
        self._by_id: dict[int, dict[str, Any]] = {}
        self._registered: dict[tuple[str, str], int] = {}

    @classmethod
    def connect(cls, settings: Settings, url: str | None = None, *, timeout: float = 10.0) -> SchemaRegistryClient:
        """A client of ``url`` (default FPI_SCHEMA_REGISTRY_URL) with the settings' credentials and CA; it
        owns its HTTP client: close it with ``aclose()`` or ``async with``.

        Raises ``ConfigError`` when no URL is configured or FPI_SCHEMA_REGISTRY_CAFILE is not a PEM bundle.
        """
        url = url or settings.schema_registry_url
        if not url:
            raise ConfigError("no schema registry configured: set FPI_SCHEMA_REGISTRY_URL")
        base, url_auth = _without_userinfo(url)
        verify: ssl.SSLContext | bool = True
        if settings.schema_registry_cafile is not None:
            try:
                verify = ssl.create_default_context(cafile=str(settings.schema_registry_cafile))
            except (OSError, ssl.SSLError) as exc:
                raise ConfigError(f"cannot use FPI_SCHEMA_REGISTRY_CAFILE={settings.schema_registry_cafile}: "
                                  f"{getattr(exc, 'reason', None) or exc.strerror or type(exc).__name__}; give a "
                                  "PEM bundle of the CA that signed the registry's certificate") from None
        http = httpx.AsyncClient(timeout=timeout, verify=verify, auth=_auth(settings) or url_auth)
        return cls(http, base, owns_http=True, shown_url=url)

    async def aclose(self) -> None:
        """Close the HTTP client if this client made it (``connect``)."""
        if self._owns_http:
            await self._http.aclose()

    async def __aenter__(self) -> SchemaRegistryClient:
        return self

    async def __aexit__(self, kind: type[BaseException] | None, error: BaseException | None,
                        tb: TracebackType | None) -> None:
        await self.aclose()

    async def subjects(self) -> list[str]:
        """The registry's subjects: the cheapest authenticated read, for ``check`` and the worker's start.

        Raises ``RegistryUnavailable`` when it cannot be asked or refuses the credentials.
        """
        payload = await self._request("GET", "/subjects")
        if payload.status_code != 200:
            raise RegistryUnavailable(
                f"the schema registry at {self._shown} answered GET /subjects with HTTP "
                f"{payload.status_code}: point FPI_SCHEMA_REGISTRY_URL at its Confluent-compatible API root")
        try:
            subjects = payload.json()
        except ValueError:
            subjects = None
        if not isinstance(subjects, list):
            raise RegistryUnavailable(f"the schema registry at {self._shown} answered GET /subjects "
                                      "without a list: point FPI_SCHEMA_REGISTRY_URL at its Confluent-compatible "
                                      "API root")
        return [str(subject) for subject in subjects]

    async def get_schema(self, schema_id: int) -> dict[str, Any]:
        """The Avro schema (JSON-shaped dict) with ``schema_id``.

        Raises ``UnknownSchemaId`` when the registry has no such id (or it is not an Avro schema),
        ``RegistryUnavailable`` when it cannot be asked.
        """
        cached = self._by_id.get(schema_id)
        if cached is not None:
            return cached
        response = await self._request("GET", f"/schemas/ids/{schema_id}")
        if response.status_code == 404:
            raise UnknownSchemaId(f"the schema registry has no schema id {schema_id}", schema_id=schema_id)
        payload = self._json(response, f"schema id {schema_id}")
        if payload.get("schemaType", "AVRO") != "AVRO":
            raise UnknownSchemaId(f"schema id {schema_id} is {payload['schemaType']}, not Avro",
                                  schema_id=schema_id)
        try:
            schema = json.loads(payload["schema"])
        except (KeyError, TypeError, ValueError) as exc:
            raise UnknownSchemaId(f"schema id {schema_id}: unreadable answer", schema_id=schema_id) from exc
        if not isinstance(schema, dict):
            raise UnknownSchemaId(f"schema id {schema_id} is not a record schema", schema_id=schema_id)
        self._by_id[schema_id] = schema
        return schema

    async def register(self, subject: str, schema: Mapping[str, Any] | str) -> int:
        """Register ``schema`` under ``subject`` (idempotent) and return its id.

        Raises ``ConfigError`` when the registry refuses it (e.g. 409 incompatible, 422 invalid),
        ``RegistryUnavailable`` when it cannot be asked.
        """
        text = schema if isinstance(schema, str) else json.dumps(schema)
        key = (subject, text)
        cached = self._registered.get(key)
        if cached is not None:
            return cached
        response = await self._request(
            "POST", f"/subjects/{subject}/versions", json={"schema": text, "schemaType": "AVRO"}
        )
        if 400 <= response.status_code < 500:
            raise ConfigError(
                f"the schema registry at {self._shown} refused the schema for {subject!r}: "
                f"HTTP {response.status_code} {' '.join(response.text[:300].split())}; check that "
                "FPI_SCHEMA_REGISTRY_URL is the registry's Confluent-compatible API root"
            )
        payload = self._json(response, f"registering {subject!r}")
        schema_id = payload.get("id")
        if not isinstance(schema_id, int):
            raise RegistryUnavailable(f"the schema registry answered without an id for {subject!r}")
        self._registered[key] = schema_id
        self._by_id.setdefault(schema_id, json.loads(text))
        return schema_id

    async def ensure(self, decoder: EventDecoder, raw: bytes | None) -> None:
        """Teach ``decoder`` the schema id ``raw`` names, if it does not know it yet.

        Call it before ``decoder.decode(raw)`` (outside any Faust codec: it awaits the network).
        Raises ``UnknownSchemaId`` when the registry has no such id (dead-letter the message),
        ``RegistryUnavailable`` when it cannot be asked (retry), ``DecodeError`` when the schema
        cannot be read as a source event.
        """
        schema_id = decoder.missing_schema_id(raw)
        if schema_id is not None:
            decoder.add_schema(schema_id, await self.get_schema(schema_id))

    async def _request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        try:
            response = await self._http.request(
                method, self._base + path, headers={"Accept": _CONTENT_TYPE, "Content-Type": _CONTENT_TYPE},
                **kwargs,
            )
        except httpx.HTTPError as exc:
            raise RegistryUnavailable(
                f"cannot reach the schema registry at {self._shown} ({_cause(exc)}): check "
                "FPI_SCHEMA_REGISTRY_URL and that the registry is up"
                + (", and FPI_SCHEMA_REGISTRY_CAFILE for its certificate" if _untrusted(exc) else "")
            ) from None
        if response.status_code in (401, 403):
            # Retriable like an outage (the worker waits instead of dead-lettering every event); the
            # worker's start-up and `check` ask the registry first, so a wrong credential shows there.
            refused = "no or wrong credentials" if response.status_code == 401 else "not allowed"
            raise RegistryUnavailable(
                f"the schema registry at {self._shown} answered {method} {path} with HTTP "
                f"{response.status_code} ({refused}): check FPI_SCHEMA_REGISTRY_USERNAME / "
                "FPI_SCHEMA_REGISTRY_PASSWORD (or USER_INFO, or FPI_SCHEMA_REGISTRY_TOKEN) and the account's "
                "permissions"
            )
        if response.status_code >= 500:
            raise RegistryUnavailable(
                f"the schema registry at {self._shown} answered {method} {path} with HTTP "
                f"{response.status_code}: check that the registry is healthy"
            )
        return response

    @staticmethod
    def _json(response: httpx.Response, what: str) -> dict[str, Any]:
        if response.status_code != 200:
            raise RegistryUnavailable(f"schema registry, {what}: unexpected HTTP {response.status_code}")
        try:
            payload = response.json()
        except ValueError as exc:
            raise RegistryUnavailable(f"schema registry, {what}: the answer is not JSON") from exc
        if not isinstance(payload, dict):
            raise RegistryUnavailable(f"schema registry, {what}: the answer is not a JSON object")
        return payload


class _Bearer(httpx.Auth):
    def __init__(self, token: str) -> None:
        self._header = f"Bearer {token}"

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        request.headers["Authorization"] = self._header
        yield request


def _auth(settings: Settings) -> httpx.Auth | None:
    """The configured credentials (``Settings.problems`` refuses more than one kind)."""
    if settings.schema_registry_token is not None:
        return _Bearer(settings.schema_registry_token.get_secret_value())
    if settings.schema_registry_user_info is not None:
        user, _, password = settings.schema_registry_user_info.get_secret_value().partition(":")
        return httpx.BasicAuth(user, password)
    if settings.schema_registry_username is not None and settings.schema_registry_password is not None:
        return httpx.BasicAuth(settings.schema_registry_username, settings.schema_registry_password.get_secret_value())
    return None


def _without_userinfo(url: str) -> tuple[str, httpx.Auth | None]:
    """``url`` without ``user:password@``, and those credentials as basic auth."""
    parts = urlsplit(url)
    if parts.username is None and parts.password is None:
        return url, None
    host = parts.netloc.rpartition("@")[2]
    auth = httpx.BasicAuth(unquote(parts.username or ""), unquote(parts.password or ""))
    return urlunsplit(parts._replace(netloc=host)), auth


def _cause(error: httpx.HTTPError) -> str:
    return "certificate not trusted" if _untrusted(error) else type(error).__name__


def _untrusted(error: BaseException) -> bool:
    seen: BaseException | None = error
    while seen is not None:
        if isinstance(seen, ssl.SSLCertVerificationError):
            return True
        seen = seen.__cause__ or seen.__context__
    return False
