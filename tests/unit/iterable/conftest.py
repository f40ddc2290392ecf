"""Fixtures of the sender tests: a fake clock, and the emulator in process behind ASGITransport."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest
from pydantic import SecretStr
from starlette.applications import Starlette

from streams.emulator import EmulatorConfig, EmulatorState, create_emulator
from streams.iterable import RetryPolicy, Sender, SenderConfig
from streams.model import Endpoint, IterableRequest

BASE = "http://emulator.test"
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


def identify(person: str, **fields: Any) -> IterableRequest:
    return IterableRequest(
        Endpoint.USERS_UPDATE,
        {"email": f"{person}@example.com", "dataFields": fields},
        person,
        f"src-{person}-id",
    )


def track(person: str, event_id: str, name: str = "Viewed", **fields: Any) -> IterableRequest:
    body = {
        "email": f"{person}@example.com",
        "eventName": name,
        "id": event_id,
        "createdAt": 1717171717,
        "dataFields": fields,
    }
    return IterableRequest(Endpoint.EVENTS_TRACK, body, person, f"src-{event_id}")


class Rig:
    """An emulator app, its state, and a factory of senders that reach it in process."""

    def __init__(self, clock: FakeClock, app: Starlette, http: httpx.AsyncClient) -> None:
        self.clock = clock
        self.app = app
        self.http = http

    @property
    def state(self) -> EmulatorState:
        state: EmulatorState = self.app.state.emulator
        return state

    @property
    def counters(self) -> dict[str, Any]:
        return self.state.project.counters.as_json()

    def sender(self, **overrides: Any) -> Sender:
        policy = overrides.pop(
            "retry",
            RetryPolicy(user_not_visible_delay=2.0, user_not_visible_attempts=3, bad_key_probe_delay=1.0),
        )
        config = SenderConfig(base_url=BASE, api_key=SecretStr(KEY), retry=policy, **overrides)
        return Sender(self.http, config, clock=self.clock, sleep=self.clock.sleep, rand=lambda: 0.5)


RigFactory = Callable[..., Rig]


@pytest.fixture
async def rig_factory(clock: FakeClock) -> AsyncIterator[RigFactory]:
    clients: list[httpx.AsyncClient] = []

    def make(**config: Any) -> Rig:
        config.setdefault("api_keys", (KEY,))
        config.setdefault("clock", clock)
        app = create_emulator(EmulatorConfig(**config))
        http = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=BASE)
        clients.append(http)
        return Rig(clock, app, http)

    yield make
    for http in clients:
        await http.aclose()


@pytest.fixture
def rig(rig_factory: RigFactory) -> Rig:
    return rig_factory()
