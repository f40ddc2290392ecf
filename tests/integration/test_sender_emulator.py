"""The sender against the emulator over real HTTP on loopback (uvicorn on a free port).

One acceptance behaviour of issue 5 per test. ``FPI_LONG_TESTS=1`` makes the outage 2 minutes.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
from pydantic import SecretStr

from streams.emulator import EmulatorConfig, EmulatorServer
from streams.errors import Reason
from streams.iterable import RetryPolicy, Sender, SenderConfig, new_http_client
from tests.unit.iterable.builders import identify, people, track

pytestmark = pytest.mark.integration

KEY = "integration-key"
FAST = RetryPolicy(
    base_delay=0.05,
    max_delay=0.5,
    user_not_visible_delay=0.3,
    user_not_visible_attempts=10,
    bad_key_probe_delay=0.2,
)
OUTAGE_SECONDS = 120.0 if os.environ.get("FPI_LONG_TESTS") == "1" else 5.0


@pytest.fixture(scope="module")
def server() -> Iterator[EmulatorServer]:
    with EmulatorServer(EmulatorConfig(api_keys=(KEY,))) as srv:
        yield srv


@pytest.fixture
def emulator(server: EmulatorServer) -> EmulatorServer:
    server.admin("POST", "reset")
    return server


@pytest.fixture
async def make_sender(emulator: EmulatorServer) -> AsyncIterator[Any]:
    made: list[Sender] = []
    clients: list[Any] = []

    def make(timeout: float = 5.0, **overrides: Any) -> Sender:
        overrides.setdefault("retry", FAST)
        http = new_http_client(request_timeout=timeout, connect_timeout=1.0)
        clients.append(http)
        sender = Sender(http, SenderConfig(base_url=emulator.url, api_key=SecretStr(KEY), **overrides))
        made.append(sender)
        return sender

    yield make
    for sender in made:
        await sender.aclose()
    for http in clients:
        await http.close()


class TestRateLimits:
    async def test_no_429_at_the_published_limits(self, emulator: EmulatorServer, make_sender: Any) -> None:
        sender = make_sender(max_batch_items=5)  # many small bulk calls: well over 10/s if unthrottled
        started = time.monotonic()
        outcomes = await sender.deliver(people(1, 150))
        elapsed = time.monotonic() - started
        assert all(o.delivered for o in outcomes)
        c = emulator.counters()
        assert c["rate_limited_total"] == 0
        assert c["requests"]["/api/events/trackBulk"] == 30
        assert elapsed >= (30 - 10) / 10 * 0.9  # the 10/s bucket, not the network, set the pace

    async def test_recovers_after_injected_429s(self, emulator: EmulatorServer, make_sender: Any) -> None:
        emulator.set_faults(throttle_next=4, retry_after=0.2)
        sender = make_sender()
        outcomes = await sender.deliver(people(3, 5))
        assert all(o.delivered for o in outcomes)
        c = emulator.counters()
        assert c["rate_limited_total"] == 4 and c["unique_event_ids"] == 15
        assert sender.stats.retries == 4


class TestOutage:
    @pytest.mark.timeout(OUTAGE_SECONDS + 60)
    async def test_outage_loses_nothing_and_dead_letters_nothing(
        self, emulator: EmulatorServer, make_sender: Any
    ) -> None:
        emulator.set_faults(outage_seconds=OUTAGE_SECONDS)
        sender = make_sender()
        started = time.monotonic()
        outcomes = await sender.deliver(people(10, 10))
        assert time.monotonic() - started >= OUTAGE_SECONDS * 0.9
        assert all(o.delivered for o in outcomes)
        c = emulator.counters()
        assert c["unique_event_ids"] == 100 and c["events_stored"] == 100
        assert c["responses"]["/api/users/bulkUpdate 503"] >= 3

    async def test_refused_connections_are_retried(self, emulator: EmulatorServer, make_sender: Any) -> None:
        sender = make_sender()
        emulator.stop_sync()
        try:
            task = asyncio.create_task(sender.deliver(people(2, 3)))
            await asyncio.sleep(1.0)
            assert not task.done()
        finally:
            await asyncio.to_thread(emulator.start_sync)
        outcomes = await asyncio.wait_for(task, 10)
        assert all(o.delivered for o in outcomes) and sender.stats.retries >= 2
        assert emulator.counters()["unique_event_ids"] == 6


class TestItemFailures:
    async def test_partial_failure_dead_letters_only_failed_items(
        self, emulator: EmulatorServer, make_sender: Any
    ) -> None:
        emulator.set_faults(blocked_event_names=["Spam"])
        requests = [identify("a"), track("a", "ok-1"), track("a", "spam-1", name="Spam"), track("a", "ok-2")]
        requests.append(track("ghost", "ghost-1"))
        outcomes = await make_sender(
            retry=RetryPolicy(user_not_visible_delay=0.05, user_not_visible_attempts=2)
        ).deliver(requests)
        assert [o.delivered for o in outcomes] == [True, True, False, True, False]
        assert outcomes[2].reason == Reason.ITERABLE_REJECTED
        assert outcomes[4].reason == Reason.USER_NOT_FOUND
        c = emulator.counters()
        assert c["unique_event_ids"] == 2 and c["duplicate_event_ids"] == 0  # successes never resent

    async def test_type_mismatch_isolates_the_bad_item(
        self, emulator: EmulatorServer, make_sender: Any
    ) -> None:
        sender = make_sender()
        await sender.deliver([identify("first", signup="2024-03-05")])
        requests = [identify(f"u{i}", signup="2024-03-06") for i in range(5)]
        requests.insert(2, identify("bad", signup="not a date"))
        outcomes = await sender.deliver(requests)
        assert [o.delivered for o in outcomes] == [True, True, False, True, True, True]
        assert outcomes[2].reason == Reason.FIELD_TYPE_MISMATCH
        assert outcomes[2].response is not None and "validationErrors" in outcomes[2].response

    async def test_events_of_a_user_not_yet_visible_are_retried(
        self, emulator: EmulatorServer, make_sender: Any
    ) -> None:
        emulator.set_faults(user_visible_after=1.0)
        outcomes = await make_sender().deliver(people(3, 4))
        assert all(o.delivered for o in outcomes)
        assert max(o.attempts for o in outcomes) >= 2
        assert emulator.counters()["unique_event_ids"] == 12


class TestBadKey:
    async def test_bad_key_pauses_then_resumes_without_dead_letters(
        self, emulator: EmulatorServer, make_sender: Any
    ) -> None:
        emulator.set_faults(api_keys=["rotated-key"])
        sender = make_sender()
        task = asyncio.create_task(sender.deliver(people(2, 2)))
        deadline = time.monotonic() + 5
        while not sender.paused and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
        assert sender.paused and not task.done()
        await asyncio.sleep(0.5)
        assert sender.paused  # probes keep failing while the key is bad
        emulator.set_faults(api_keys=[KEY])
        outcomes = await asyncio.wait_for(task, 10)
        assert all(o.delivered for o in outcomes) and not sender.paused


class TestNoDuplicates:
    async def test_retries_after_timeouts_and_errors_never_duplicate_events(
        self, emulator: EmulatorServer, make_sender: Any
    ) -> None:
        # Answers arrive after the client gave up, so the emulator stores events the sender resends.
        sender = make_sender(timeout=0.2, max_batch_items=20)
        requests = people(5, 20)
        assert all(
            o.delivered
            for o in await sender.deliver([r for r in requests if r.endpoint == "/api/users/update"])
        )
        emulator.set_faults(latency=0.4, error_rate=0.2)
        task = asyncio.create_task(sender.deliver([r for r in requests if r.endpoint == "/api/events/track"]))
        await asyncio.sleep(1.5)
        emulator.set_faults(latency=0.0)
        outcomes = await asyncio.wait_for(task, 20)
        assert all(o.delivered for o in outcomes)
        c = emulator.counters()
        assert c["duplicate_event_ids"] > 0  # the same ids really arrived more than once
        assert c["unique_event_ids"] == 100 and c["events_stored"] == 100
