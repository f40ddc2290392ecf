"""The emulator hosting several Iterable projects at once (issue 20 part 3): the key picks the project."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest

from streams.emulator import EmulatorConfig, create_emulator
from streams.emulator.app import EmulatorState
from streams.model import ProjectType

FIRST, SECOND = {"Api-Key": "first-key"}, {"Api-Key": "second-key"}


@pytest.fixture
async def emulator() -> AsyncIterator[tuple[httpx.AsyncClient, EmulatorState]]:
    app = create_emulator(EmulatorConfig(api_keys=("first-key",), project_type=ProjectType.EMAIL,
                                         projects={"second-key": ProjectType.USER_ID},
                                         rate_limits={"/api/users/bulkUpdate": 1.0}, clock=lambda: 0.0))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://emu") as client:
        yield client, app.state.emulator


async def test_each_key_opens_its_own_project_of_its_own_type(
        emulator: tuple[httpx.AsyncClient, EmulatorState]) -> None:
    http, state = emulator
    second = state.projects["second-key"]
    assert (await http.post("/api/users/update", json={"email": "a@x.com"}, headers=FIRST)).status_code == 200
    # The userId-based project refuses an email-only profile (its type), the email-based one took it.
    refused = await http.post("/api/users/update", json={"email": "b@x.com"}, headers=SECOND)
    assert refused.status_code == 400
    assert (await http.post("/api/users/update", json={"userId": "u-1"}, headers=SECOND)).status_code == 200
    assert set(state.project.by_email) == {"a@x.com"} and not state.project.by_user_id
    assert set(second.by_user_id) == {"u-1"} and not second.by_email
    assert second.name == "project-2" and second.project_type is ProjectType.USER_ID
    counters = (await http.get("/_emulator/counters", params={"key": "second-key"})).json()
    assert counters["users"] == 1
    assert (await http.get("/_emulator/counters")).json()["users"] == 1


async def test_an_unknown_key_is_refused_and_counted_by_the_first_project(
        emulator: tuple[httpx.AsyncClient, EmulatorState]) -> None:
    http, state = emulator
    response = await http.post("/api/users/update", json={"userId": "u-1"}, headers={"Api-Key": "revoked"})
    assert response.status_code == 401 and response.json()["code"] == "BadApiKey"
    assert state.project.counters.responses["/api/users/update 401"] == 1
    assert not state.projects["second-key"].by_user_id


async def test_each_project_has_its_own_rate_limits(emulator: tuple[httpx.AsyncClient, EmulatorState]) -> None:
    http, _ = emulator
    first = [(await http.post("/api/users/bulkUpdate", json={"users": []}, headers=FIRST)).status_code
             for _ in range(2)]
    second = (await http.post("/api/users/bulkUpdate", json={"users": []}, headers=SECOND)).status_code
    assert first == [200, 429] and second == 200
