"""``ProjectSenders`` (issue 20 part 3): one sender per project against the emulator hosting several projects;
a project with a rejected key does not stall another's requests."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, replace

import aiohttp
import pytest
from prometheus_client import REGISTRY
from pydantic import SecretStr

from streams.emulator import EmulatorConfig, EmulatorServer
from streams.iterable import Abandoned, RateLimiter, RetryPolicy, Sender, SenderConfig, new_http_client
from streams.iterable.projects import ProjectSenders, key_probe
from streams.model import Endpoint, IterableRequest, ProjectType
from tests.unit.iterable.builders import identify, purchase, track
from tests.unit.iterable.conftest import record_calls

KEY_EMAIL = "key-of-the-email-project"
KEY_USER_ID = "key-of-the-user-id-project"


@pytest.fixture(scope="module")
def emulator() -> Iterator[EmulatorServer]:
    config = EmulatorConfig(api_keys=(KEY_EMAIL,), project_type=ProjectType.EMAIL,
                            projects={KEY_USER_ID: ProjectType.USER_ID})
    with EmulatorServer(config) as server:
        yield server


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with new_http_client() as session:
        yield session


@dataclass
class Rig:
    http: aiohttp.ClientSession
    url: str

    def senders(self, keys: dict[str, str], stall_seconds: float = 0.5) -> ProjectSenders:
        configs = {name: SenderConfig(base_url=self.url, api_key=SecretStr(key),
                                      retry=RetryPolicy(bad_key_probe_delay=0.2)) for name, key in keys.items()}
        return ProjectSenders({name: Sender(self.http, config) for name, config in configs.items()},
                              {name: key_probe(self.http, config) for name, config in configs.items()},
                              stall_seconds=stall_seconds)


@pytest.fixture
def rig(http: aiohttp.ClientSession, emulator: EmulatorServer) -> Iterator[Rig]:
    emulator.state.reset()
    yield Rig(http, emulator.url)


def update(project: str, n: int, *, email: bool) -> IterableRequest:
    who = {"email": f"p{n}@example.com"} if email else {"userId": f"user-{n}"}
    return IterableRequest(Endpoint.USERS_UPDATE, {**who, "dataFields": {"n": n}}, person_key=f"k{n}",
                           source_event_id=f"m{n}", project=project)


async def test_each_project_gets_its_own_requests_in_input_order(rig: Rig, emulator: EmulatorServer) -> None:
    senders = rig.senders({"mail": KEY_EMAIL, "ids": KEY_USER_ID})
    requests = [update("mail", 1, email=True), update("ids", 2, email=False), update("mail", 3, email=True),
                update("nowhere", 4, email=True)]
    outcomes = await senders.deliver(requests)
    await senders.aclose()
    assert [outcome.request for outcome in outcomes] == requests
    assert [outcome.delivered for outcome in outcomes] == [True, True, True, False]
    assert outcomes[3].reason == "no_project"
    assert set(emulator.state.project.by_email) == {"p1@example.com", "p3@example.com"}
    userid_project = emulator.state.projects[KEY_USER_ID]
    assert set(userid_project.by_user_id) == {"user-2"} and not userid_project.by_email
    assert (REGISTRY.get_sample_value("fpi_project_requests_total", {"project": "ids", "outcome": "delivered"})
            or 0) >= 1


async def test_a_rejected_key_in_one_project_does_not_stall_another(rig: Rig, emulator: EmulatorServer) -> None:
    senders = rig.senders({"bad": "not-a-key-of-any-project", "good": KEY_USER_ID}, stall_seconds=0.5)
    requests = [update("bad", 1, email=True), update("good", 2, email=False), update("bad", 3, email=True)]
    outcomes = await asyncio.wait_for(senders.deliver(requests), 30)
    assert [outcome.delivered for outcome in outcomes] == [False, True, False]
    assert {outcome.reason for outcome in outcomes if not outcome.delivered} == {"bad_api_key"}
    assert "project 'bad'" in (outcomes[0].detail or "")
    assert set(emulator.state.projects[KEY_USER_ID].by_user_id) == {"user-2"}
    assert senders.paused_projects == ["bad"] and not senders.paused
    assert REGISTRY.get_sample_value("fpi_project_paused", {"project": "bad"}) == 1.0
    assert REGISTRY.get_sample_value("fpi_project_paused", {"project": "good"}) == 0.0
    # The next round of the good project goes through at once, while the bad one stays paused.
    again = await asyncio.wait_for(senders.deliver([update("good", 4, email=False)]), 30)
    assert again[0].delivered
    # And a round mixing both is not held another stall: the paused project's part is given up at once.
    senders.stall_seconds = 600
    mixed = await asyncio.wait_for(senders.deliver([update("bad", 5, email=True), update("good", 6, email=False)]),
                                   60)
    assert [(outcome.delivered, outcome.reason) for outcome in mixed] == [(False, "bad_api_key"), (True, None)]
    await senders.aclose()


async def test_a_persons_order_holds_across_overlapping_deliveries(rig: Rig) -> None:
    # The send stage overlaps batches and relies on each deliver() handing its requests to the project's
    # sender in the order the deliveries started; an await added before that hand-over breaks this test.
    senders = rig.senders({"mail": KEY_EMAIL})
    sender = senders.senders["mail"]
    sender.limiter = RateLimiter({Endpoint.COMMERCE_TRACK_PURCHASE: 4.0}, burst_seconds=0.0)

    def mail(*requests: IterableRequest) -> list[IterableRequest]:
        return [replace(request, project="mail") for request in requests]

    assert (await senders.deliver(mail(identify("b"))))[0].delivered
    order = record_calls(sender)
    first = asyncio.create_task(senders.deliver(mail(purchase("c", "o1"), purchase("c", "o2"), purchase("c", "o3"))))
    second = asyncio.create_task(senders.deliver(mail(identify("c", plan="x"), track("b", "e1"))))
    outcomes = [*await first, *await second]
    await senders.aclose()
    assert all(outcome.delivered for outcome in outcomes)
    assert order.index("/api/events/trackBulk e1") < order.index("/api/commerce/trackPurchase o3"), order
    assert order.index("/api/users/bulkUpdate c@example.com") > order.index("/api/commerce/trackPurchase o3"), order


async def test_when_no_other_project_answers_it_waits_as_one_project_does(rig: Rig) -> None:
    senders = rig.senders({"bad": "not-a-key", "worse": "not-a-key-either"}, stall_seconds=0.2)
    delivery = asyncio.get_running_loop().create_task(
        senders.deliver([update("bad", 1, email=True), update("worse", 2, email=True)]))
    await asyncio.sleep(1.5)
    assert not delivery.done(), "with Iterable answering no project, the round waits (back-pressure)"
    assert senders.paused
    senders.abandon()
    with pytest.raises(Abandoned):
        await delivery
    await senders.aclose()



async def test_each_project_has_its_own_share_of_connections() -> None:
    from streams.iterable.sender import connections_needed
    from streams.services import SenderService

    config = SenderConfig(max_concurrency=8)
    service = SenderService(config, projects={name: config for name in ("a", "b", "c")})
    await service.on_start()
    try:
        assert service._http is not None and service._http.connector is not None
        # Every lane of every project full: a hanging project's calls leave the others theirs, and no call that
        # holds a lane slot and a rate token waits for a connection.
        assert service._http.connector.limit == 3 * connections_needed(config) == 3 * 10 * 64
    finally:
        await service.on_stop()


async def test_an_outage_of_one_projects_iterable_does_not_stall_another(
        http: aiohttp.ClientSession, emulator: EmulatorServer) -> None:
    emulator.state.reset()
    with EmulatorServer(EmulatorConfig(api_keys=(KEY_EMAIL,), outage_windows=((0.0, 3600.0),))) as down:
        configs = {"down": SenderConfig(base_url=down.url, api_key=SecretStr(KEY_EMAIL)),
                   "up": SenderConfig(base_url=emulator.url, api_key=SecretStr(KEY_USER_ID))}
        senders = ProjectSenders({name: Sender(http, config) for name, config in configs.items()},
                                 {name: key_probe(http, config) for name, config in configs.items()},
                                 stall_seconds=1.0)
        outcomes = await asyncio.wait_for(
            senders.deliver([update("down", 1, email=True), update("up", 2, email=False)]), 60)
        await senders.aclose()
    assert [(outcome.delivered, outcome.reason) for outcome in outcomes] == [
        (False, "iterable_unavailable"), (True, None)]
    assert set(emulator.state.projects[KEY_USER_ID].by_user_id) == {"user-2"}
