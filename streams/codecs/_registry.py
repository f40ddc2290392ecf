"""A Confluent-compatible schema registry client (httpx), the only module of ``codecs`` with I/O.

It speaks the few endpoints the processor uses: ``GET /schemas/ids/{id}`` and
``POST /subjects/{subject}/versions``. Confluent Schema Registry and Apicurio Registry's
``/apis/ccompat/v7`` both serve them. Results are cached for the life of the client (a schema id
never changes meaning). httpx errors stop here: they become ``RegistryUnavailable`` (retriable),
``UnknownSchemaId`` (the registry has no such id) or ``ConfigError`` (the registry refused a schema).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import httpx

from streams.codecs._event import EventDecoder
from streams.errors import ConfigError, RegistryUnavailable, UnknownSchemaId
from streams.settings import redact_url

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

    def __init__(self, http: httpx.AsyncClient, base_url: str) -> None:
        self._http = http
        self._base = base_url.rstrip("/")
        self._by_id: dict[int, dict[str, Any]] = {}
        self._registered: dict[tuple[str, str], int] = {}

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
                f"the schema registry at {redact_url(self._base)} refused the schema for {subject!r}: "
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
                f"cannot reach the schema registry at {redact_url(self._base)} ({type(exc).__name__}): check "
                "FPI_SCHEMA_REGISTRY_URL and that the registry is up"
            ) from exc
        if response.status_code >= 500:
            raise RegistryUnavailable(
                f"the schema registry at {redact_url(self._base)} answered {method} {path} with HTTP "
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
