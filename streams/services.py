"""Long-lived resources of the worker as mode services, started and stopped with the Faust app:
the Iterable sender (with its aiohttp session) and the source decoder (with its schema registry client).
Shell layer: imports mode (faust's service library) and httpx, and is imported only by ``app``.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping, Sequence
from typing import Any

import aiohttp
from mode import Service

from streams.codecs import EventDecoder, SchemaRegistryClient, SourceCodec
from streams.errors import RegistryUnavailable
from streams.iterable import Outcome, Sender, SenderConfig, new_http_client
from streams.iterable.projects import ProjectSenders, key_probe
from streams.iterable.sender import connections_needed
from streams.model import DeadLetter, Event, IterableRequest
from streams.settings import Settings

__all__ = ["DecoderService", "SenderService"]

log = logging.getLogger("streams.services")


class SenderService(Service):
    """Owns the aiohttp session and the ``Sender``; the send agent calls ``deliver``.

    With ``projects`` (a routing file: project name -> its config) it owns a ``ProjectSenders`` instead, one
    ``Sender`` per project, and ``deliver`` goes through it.
    """

    def __init__(self, config: SenderConfig, *, verify_tls: bool = True,
                 projects: Mapping[str, SenderConfig] | None = None, stall_seconds: float = 60.0,
                 **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.config = config
        self.verify_tls = verify_tls
        self.projects = dict(projects or {})
        self.stall_seconds = stall_seconds
        self._http: aiohttp.ClientSession | None = None
        self._sender: Sender | None = None
        self._projects: ProjectSenders | None = None

    async def on_start(self) -> None:
        self._http = new_http_client(
            connect_timeout=self.config.connect_timeout,
            request_timeout=self.config.request_timeout,
            # Every lane of every project full (a project whose calls hang never takes the others' connections): a
            # smaller pool made calls that held a lane slot and a rate token wait for a connection, then go together.
            max_connections=sum(connections_needed(config) for config in self.projects.values())
            or connections_needed(self.config),
            verify=self.verify_tls,
        )
        if self.projects:
            self._projects = ProjectSenders(
                {name: Sender(self._http, config) for name, config in self.projects.items()},
                {name: key_probe(self._http, config) for name, config in self.projects.items()},
                stall_seconds=self.stall_seconds)
        else:
            self._sender = Sender(self._http, self.config)

    async def on_stop(self) -> None:
        if self._sender is not None:
            await self._sender.aclose()
        if self._projects is not None:
            await self._projects.aclose()
        if self._http is not None:
            await self._http.close()

    @property
    def sender(self) -> Sender:
        if self._sender is None:
            raise RuntimeError("the sender service has not started")
        return self._sender

    @property
    def paused(self) -> bool:
        """The sender is paused by a rejected key; with several projects, every project's sender is."""
        if self._projects is not None:
            return self._projects.paused
        return self._sender is not None and self._sender.paused

    async def deliver(self, requests: Sequence[IterableRequest]) -> list[Outcome]:
        """``Sender.deliver`` (or ``ProjectSenders.deliver``): raises ``Abandoned`` when ``abandon()`` is
        called meanwhile."""
        if self._projects is not None:
            return await self._projects.deliver(requests)
        return await self.sender.deliver(requests)

    def abandon(self) -> None:
        """Stop delivering what is in progress: its records were given up (``Sender.abandon``)."""
        if self._sender is not None:
            self._sender.abandon()
        if self._projects is not None:
            self._projects.abandon()



class DecoderService(Service):
    """Decodes source records; asks the schema registry (if configured) outside the codec."""

    registry_retry_seconds = 5.0

    def __init__(self, decoder: EventDecoder, settings: Settings, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.decoder = decoder
        self.settings = settings
        self._registry: SchemaRegistryClient | None = None
        self.codec = SourceCodec(decoder)

    async def on_start(self) -> None:
        if self.settings.schema_registry_url:
            self._registry = SchemaRegistryClient.connect(self.settings)
            self.codec = SourceCodec(self.decoder, self._registry)

    async def on_stop(self) -> None:
        if self._registry is not None:
            await self._registry.aclose()

    async def decode(self, raw: bytes | None, *, topic: str, partition: int, offset: int,
                     now: Any) -> Event | DeadLetter:
        """The event, or its dead letter; waits (never drops) while the registry is unreachable."""
        while True:
            try:
                return await self.codec.decode_or_dead_letter(raw, topic=topic, partition=partition,
                                                             offset=offset, now=now)
            except RegistryUnavailable as exc:
                log.warning("schema registry unavailable (%s); retrying in %.0fs", exc,
                            self.registry_retry_seconds)
                await asyncio.sleep(self.registry_retry_seconds)
