"""Fixtures of the sender tests: a fake clock, the emulator served on loopback in the test's loop, a call recorder.

aiohttp has no in-process (ASGI) transport, so each rig runs the emulator app on uvicorn, on a free
port of 127.0.0.1, in the test's own event loop; the emulator reads the same fake clock.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import aiohttp
import pytest
import uvicorn
from pydantic import SecretStr
from starlette.applications import Starlette

from streams.emulator import EmulatorConfig, EmulatorState, create_emulator
from streams.iterable import RetryPolicy, Sender, SenderConfig, new_http_client
from streams.iterable.ratelimit import Sleep

KEY = "test-key"


class FakeClock:
    """Monotonic time that only moves when someone sleeps; ``sleeps`` records every wait."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += max(0.0, seconds)
        await asyncio.sleep(0)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


class Loopback:
    """An ASGI app on uvicorn at a free port of 127.0.0.1, inside the running event loop."""

    def __init__(self, app: Starlette) -> None:
        self.server = uvicorn.Server(
            uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning", lifespan="off", access_log=False)
        )
        self._task: asyncio.Task[None] | None = None
        self.url = ""

    async def start(self) -> None:
        self._task = asyncio.create_task(self.server.serve())
        while not self.server.started:
            if self._task.done():
                self._task.result()
                raise RuntimeError("uvicorn exited during start-up")
            await asyncio.sleep(0.001)
        port = self.server.servers[0].sockets[0].getsockname()[1]
        self.url = f"http://127.0.0.1:{port}"

    async def stop(self) -> None:
        """Close the listening socket and end the server task now (uvicorn's graceful stop sleeps 0.1-0.2 s).

        Clients close their sessions first, so no connection is left open.
        """
        self.server.should_exit = True
        for listener in self.server.servers:
            listener.close()
            await listener.wait_closed()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task


class Rig:
    """An emulator on loopback, its state, and a factory of senders that reach it."""

    def __init__(self, clock: FakeClock, app: Starlette, server: Loopback, http: aiohttp.ClientSession) -> None:
        self.clock = clock
        self.app = app
        self.server = server
        self.http = http

    @property
    def state(self) -> EmulatorState:
        state: EmulatorState = self.app.state.emulator
        return state

    @property
    def counters(self) -> dict[str, Any]:
        return self.state.project.counters.as_json()

    def sender(self, *, sleep: Sleep | None = None, **overrides: Any) -> Sender:
        """A sender of this rig's emulator; ``sleep`` replaces the fake clock's for its waits."""
        policy = overrides.pop(
            "retry",
            RetryPolicy(user_not_visible_delay=2.0, user_not_visible_attempts=3, bad_key_probe_delay=1.0),
        )
        config = SenderConfig(base_url=self.server.url, api_key=SecretStr(KEY), retry=policy, **overrides)
        return Sender(self.http, config, clock=self.clock, sleep=sleep or self.clock.sleep, rand=lambda: 0.5)


RigFactory = Callable[..., Awaitable[Rig]]


@pytest.fixture
async def rig_factory(clock: FakeClock) -> AsyncIterator[RigFactory]:
    rigs: list[Rig] = []

    async def make(**config: Any) -> Rig:
        config.setdefault("api_keys", (KEY,))
        config.setdefault("clock", clock)
        app = create_emulator(EmulatorConfig(**config))
        server = Loopback(app)
        await server.start()
        rig = Rig(clock, app, server, new_http_client(connect_timeout=2.0, request_timeout=10.0))
        rigs.append(rig)
        return rig

    yield make
    for rig in rigs:
        await rig.http.close()
        await rig.server.stop()


@pytest.fixture
async def rig(rig_factory: RigFactory) -> Rig:
    return await rig_factory()


def record_calls(sender: Any) -> list[str]:
    """The sender's calls from now on, in the order they were made: ``"<path> <first item's id or email>"``."""
    order: list[str] = []
    post = sender.client.post

    async def recording(endpoint: Any, body: Any) -> Any:
        first = (body.get("events") or body.get("users") or [body])[0]
        order.append(f"{endpoint.value} {first.get('id') or first.get('email')}")
        return await post(endpoint, body)

    sender.client.post = recording
    return order
