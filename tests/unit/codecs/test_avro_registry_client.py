"""SchemaRegistryClient against an in-process transport (the real registry: tests/integration)."""

from __future__ import annotations

import json
from collections.abc import Callable

import httpx
import pytest

from streams.codecs import (
    SOURCE_V2,
    EventDecoder,
    SchemaRegistryClient,
    encode_event,
    parsed_schema,
    schema_text,
    subject_for,
)
from streams.errors import ConfigError, RegistryUnavailable, UnknownSchemaId
from tests.unit.codecs.avro_samples import ORDER_COMPLETED

BASE = "http://registry.test/apis/ccompat/v7"


class Registry:
    """A Confluent-style registry in a handler function, counting calls."""

    def __init__(self) -> None:
        self.schemas: dict[int, str] = {}
        self.calls: list[str] = []
        self.fail_with: int | None = None

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.calls.append(f"{request.method} {request.url.path}")
        assert request.url.path.startswith("/apis/ccompat/v7/")
        if self.fail_with:
            return httpx.Response(self.fail_with, json={"message": "nope"})
        path = request.url.path.removeprefix("/apis/ccompat/v7")
        if request.method == "GET" and path.startswith("/schemas/ids/"):
            schema_id = int(path.rsplit("/", 1)[1])
            if schema_id not in self.schemas:
                return httpx.Response(404, json={"error_code": 40403, "message": "not found"})
            return httpx.Response(200, json={"schema": self.schemas[schema_id]})
        if request.method == "POST" and path.endswith("/versions"):
            assert request.headers["content-type"] == "application/vnd.schemaregistry.v1+json"
            text = json.loads(request.content)["schema"]
            json.loads(text)
            for schema_id, known in self.schemas.items():
                if known == text:
                    return httpx.Response(200, json={"id": schema_id})
            self.schemas[len(self.schemas) + 1] = text
            return httpx.Response(200, json={"id": len(self.schemas)})
        return httpx.Response(405)


@pytest.fixture
def registry() -> Registry:
    return Registry()


def _client(handler: Callable[[httpx.Request], httpx.Response]) -> SchemaRegistryClient:
    return SchemaRegistryClient(httpx.AsyncClient(transport=httpx.MockTransport(handler)), BASE + "/")


class TestSchemaRegistryClient:
    async def test_register_then_get_is_cached(self, registry: Registry) -> None:
        client = _client(registry)
        schema_id = await client.register(subject_for("freshpaint.events"), schema_text(SOURCE_V2))
        assert registry.calls == ["POST /apis/ccompat/v7/subjects/freshpaint.events-value/versions"]
        assert await client.register("freshpaint.events-value", schema_text(SOURCE_V2)) == schema_id
        assert (await client.get_schema(schema_id))["name"] == "FreshpaintEvent"
        assert len(registry.calls) == 1

    async def test_get_schema_fetches_once(self, registry: Registry) -> None:
        registry.schemas[7] = schema_text(SOURCE_V2)
        client = _client(registry)
        first = await client.get_schema(7)
        assert await client.get_schema(7) is first
        assert registry.calls == ["GET /apis/ccompat/v7/schemas/ids/7"]

    async def test_unknown_id(self, registry: Registry) -> None:
        with pytest.raises(UnknownSchemaId) as caught:
            await _client(registry).get_schema(404)
        assert caught.value.schema_id == 404

    @pytest.mark.parametrize("status", [500, 503])
    async def test_server_error_is_retriable(self, registry: Registry, status: int) -> None:
        registry.fail_with = status
        with pytest.raises(RegistryUnavailable) as caught:
            await _client(registry).get_schema(1)
        assert caught.value.retriable

    async def test_connection_error_is_retriable(self) -> None:
        def refuse(request: httpx.Request) -> httpx.Response:
            raise httpx.ConnectError("refused", request=request)

        with pytest.raises(RegistryUnavailable):
            await _client(refuse).register("s-value", "{}")

    async def test_refused_schema_is_a_config_error(self, registry: Registry) -> None:
        registry.fail_with = 409
        with pytest.raises(ConfigError, match="409"):
            await _client(registry).register("s-value", schema_text(SOURCE_V2))

    async def test_ensure_teaches_the_decoder(self, registry: Registry) -> None:
        registry.schemas[1] = schema_text(SOURCE_V2)
        decoder = EventDecoder()
        raw = encode_event(ORDER_COMPLETED, schema_id=1, schema=parsed_schema(SOURCE_V2))
        client = _client(registry)
        await client.ensure(decoder, raw)
        await client.ensure(decoder, raw)
        assert decoder.decode(raw) == ORDER_COMPLETED
        assert registry.calls == ["GET /apis/ccompat/v7/schemas/ids/1"]

    async def test_ensure_leaves_known_and_unframed_alone(self, registry: Registry) -> None:
        client = _client(registry)
        await client.ensure(EventDecoder(), encode_event(ORDER_COMPLETED))
        await client.ensure(EventDecoder(), b"{}")
        assert registry.calls == []
