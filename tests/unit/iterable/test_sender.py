"""Sender against the in-process emulator: batching, partial failures, isolation, retries, pause."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from streams.errors import Reason
from streams.iterable import DEFAULT_LIMITS, Abandoned, RateLimiter, SenderConfig
from streams.iterable.ratelimit import ProbingBucket
from streams.model import Endpoint, IterableRequest, ProjectType
from tests.unit.iterable.builders import identify, purchase, track
from tests.unit.iterable.conftest import Rig, RigFactory, record_calls


class TestDeliverBatching:
    async def test_identifies_and_events_fold_into_bulk_calls_in_person_order(self, rig: Rig) -> None:
        requests = [
            identify("a", plan="pro"),
            track("a", "e1"),
            track("a", "e2"),
            identify("b"),
            track("b", "e3"),
        ]
        outcomes = await rig.sender().deliver(requests)

        assert [o.delivered for o in outcomes] == [True] * 5
        assert [o.request for o in outcomes] == requests
        c = rig.counters
        assert c["requests"] == {"/api/users/bulkUpdate": 1, "/api/events/trackBulk": 1}
        assert c["items"]["/api/events/trackBulk"] == 3
        assert c["unique_event_ids"] == 3 and c["events_rejected"] == 0

    async def test_one_request_per_event_without_batching(self, rig: Rig) -> None:
        outcomes = await rig.sender(batching=False).deliver(
            [identify("a"), track("a", "e1"), track("a", "e2")]
        )
        assert all(o.delivered for o in outcomes)
        assert rig.counters["requests"] == {"/api/users/update": 1, "/api/events/track": 2}

    async def test_splits_at_max_items(self, rig: Rig) -> None:
        sender = rig.sender(max_batch_items=2)
        outcomes = await sender.deliver([identify("a")] + [track("a", f"e{i}") for i in range(5)])
        assert all(o.delivered for o in outcomes)
        assert rig.counters["requests"]["/api/events/trackBulk"] == 3
        assert sender.stats.items_sent["/api/events/trackBulk"] == 5

    async def test_purchases_go_one_by_one(self, rig: Rig) -> None:
        outcomes = await rig.sender().deliver([purchase("a", "o1"), purchase("b", "o2")])
        assert all(o.delivered for o in outcomes)
        assert rig.counters["requests"] == {"/api/commerce/trackPurchase": 2}
        assert rig.counters["unique_purchase_ids"] == 2


class TestDeliverFailures:
    async def test_bulk_partial_failure_dead_letters_only_the_failed_item(self, rig: Rig) -> None:
        rig.state.faults.blocked_event_names = frozenset({"Blocked"})
        requests = [identify("a"), track("a", "ok1"), track("a", "bad", name="Blocked"), track("a", "ok2")]
        sender = rig.sender()
        outcomes = await sender.deliver(requests)

        assert [o.delivered for o in outcomes] == [True, True, False, True]
        dead = outcomes[2]
        assert dead.reason == Reason.ITERABLE_REJECTED and "disallowedEventNames" in (dead.detail or "")
        assert dead.response is not None and "Blocked" in dead.response
        # The succeeded events were sent exactly once.
        assert rig.counters["items"]["/api/events/trackBulk"] == 3
        assert rig.counters["duplicate_event_ids"] == 0

    async def test_type_mismatch_is_isolated_item_by_item(self, rig: Rig) -> None:
        await rig.sender().deliver([identify("a", age=30)])
        requests = [identify("b", age=31), identify("c", age="thirty"), identify("d", age=33)]
        outcomes = await rig.sender().deliver(requests)

        assert [o.delivered for o in outcomes] == [True, False, True]
        assert outcomes[1].reason == Reason.FIELD_TYPE_MISMATCH
        assert outcomes[1].status == 400 and outcomes[1].code == "RequestFieldsTypesMismatched"
        assert rig.counters["responses"]["/api/users/bulkUpdate 400"] == 1
        assert rig.counters["requests"]["/api/users/update"] == 3

    async def test_user_not_yet_visible_is_retried_then_delivered(self, rig: Rig) -> None:
        rig.state.faults.user_visible_after = 3.0
        sender = rig.sender()
        outcomes = await sender.deliver([identify("a"), track("a", "e1")])
        assert all(o.delivered for o in outcomes)
        assert outcomes[1].attempts == 3  # not found twice (2 s delay each), then visible
        assert rig.counters["unique_event_ids"] == 1

    async def test_unknown_user_becomes_dead_letter_after_bounded_attempts(self, rig: Rig) -> None:
        outcomes = await rig.sender().deliver([track("ghost", "e1")])
        assert not outcomes[0].delivered
        assert outcomes[0].reason == Reason.USER_NOT_FOUND
        assert outcomes[0].attempts == 4  # first try + 3 bounded retries
        assert rig.counters["requests"]["/api/events/trackBulk"] == 4

    async def test_single_track_user_not_found_retries_then_dead_letters(self, rig: Rig) -> None:
        outcomes = await rig.sender(batching=False).deliver([track("ghost", "e1")])
        assert outcomes[0].reason == Reason.USER_NOT_FOUND and outcomes[0].code == "UnknownEmailError"
        assert rig.counters["requests"]["/api/events/track"] == 4

    async def test_5xx_burst_is_retried_without_dead_letters_or_duplicates(self, rig: Rig) -> None:
        rig.state.faults.fail_next = 6
        sender = rig.sender()
        outcomes = await sender.deliver([identify("a"), track("a", "e1"), track("a", "e2")])
        assert all(o.delivered for o in outcomes)
        assert sender.stats.retries == 6
        assert rig.counters["unique_event_ids"] == 2 and rig.counters["duplicate_event_ids"] == 0

    async def test_429_cuts_the_bucket_and_honours_retry_after(self, rig: Rig) -> None:
        rig.state.faults.throttle_next = 2
        rig.state.faults.retry_after = 4.0
        sender = rig.sender()
        outcomes = await sender.deliver([identify("a")])
        assert outcomes[0].delivered
        assert max(rig.clock.sleeps) >= 4.0
        bucket = sender.limiter.bucket(Endpoint.USERS_BULK_UPDATE)
        assert bucket is not None and bucket.rate < bucket.base_rate

    async def test_other_400_dead_letters_with_iterables_answer(self, rig: Rig) -> None:
        bad = IterableRequest(
            Endpoint.USERS_UPDATE_EMAIL,
            {"currentEmail": "nobody@example.com", "newEmail": "new@example"},
            "x",
            "src-x",
        )
        outcomes = await rig.sender().deliver([bad])
        assert outcomes[0].reason == Reason.ITERABLE_REJECTED
        assert outcomes[0].code == "InvalidEmailAddressError"
        assert (
            outcomes[0].to_dead_letter(failed_at=__import__("datetime").datetime.now()).iterable_status == 400
        )

    async def test_limited_retries_give_up_when_configured(self, rig: Rig) -> None:
        from streams.iterable import RetryPolicy

        rig.state.faults.outage_until = rig.clock.now + 10_000
        outcomes = await rig.sender(retry=RetryPolicy(max_attempts=2)).deliver([identify("a")])
        assert outcomes[0].reason == Reason.ITERABLE_UNAVAILABLE and outcomes[0].attempts == 3


class TestScheduling:
    """The calls of a round start when their own people's earlier calls are done, not after whole waves."""

    async def test_one_persons_purchases_do_not_hold_another_persons_events(self, rig: Rig) -> None:
        sender = rig.sender()
        # Real time: the fake clock's sleeps return at once, so they could not show what runs meanwhile.
        sender.limiter = RateLimiter({Endpoint.COMMERCE_TRACK_PURCHASE: 4.0}, burst_seconds=0.0)
        order: list[str] = []
        post = sender.client.post

        async def recording(endpoint: Endpoint, body: Any) -> Any:
            order.append(endpoint.value)
            return await post(endpoint, body)

        sender.client.post = recording  # type: ignore[method-assign]
        requests = [purchase("p", "o1"), purchase("p", "o2"), purchase("p", "o3"), identify("b"), track("b", "e1")]
        outcomes = await sender.deliver(requests)
        assert all(o.delivered for o in outcomes)
        # Before: b's events waited for the whole first wave, p's purchases at 4 calls/s included.
        assert order.index("/api/events/trackBulk") < len(order) - 1, order

    async def test_a_persons_later_calls_still_wait_for_their_earlier_ones(self, rig: Rig) -> None:
        sender = rig.sender(limits={Endpoint.COMMERCE_TRACK_PURCHASE: 1.0})
        order: list[str] = []
        post = sender.client.post

        async def recording(endpoint: Endpoint, body: Any) -> Any:
            order.append(f"{endpoint.value} {body.get('id') or body.get('events', [{}])[0].get('id')}")
            return await post(endpoint, body)

        sender.client.post = recording  # type: ignore[method-assign]
        requests = [purchase("p", "o1"), purchase("c", "o2"), purchase("c", "o3"), track("c", "e1"),
                    identify("c", plan="x"), track("c", "e2")]
        outcomes = await sender.deliver(requests)
        assert all(o.delivered for o in outcomes)
        assert order.index("/api/events/trackBulk e1") > order.index("/api/commerce/trackPurchase o3")
        assert order.index("/api/events/trackBulk e2") > order.index("/api/users/bulkUpdate None")
        assert order.index("/api/users/bulkUpdate None") > order.index("/api/events/trackBulk e1")


class TestOverlappingDeliveries:
    """Deliveries may run at once (the send stage overlaps batches); a person's order holds across them."""

    async def test_a_later_delivery_waits_for_the_persons_calls_in_an_earlier_one(self, rig: Rig) -> None:
        sender = rig.sender()
        # Real time, 4 purchases a second: the first delivery is still sending when the second starts.
        sender.limiter = RateLimiter({Endpoint.COMMERCE_TRACK_PURCHASE: 4.0}, burst_seconds=0.0)
        assert (await sender.deliver([identify("b")]))[0].delivered
        order = record_calls(sender)
        first = asyncio.create_task(sender.deliver([purchase("c", "o1"), purchase("c", "o2"), purchase("c", "o3")]))
        second = asyncio.create_task(sender.deliver([identify("c", plan="x"), track("b", "e1")]))
        outcomes = [*await first, *await second]
        assert all(o.delivered for o in outcomes)
        # b has nothing in the first delivery: its calls do not wait for c's purchases.
        assert order.index("/api/events/trackBulk e1") < order.index("/api/commerce/trackPurchase o3"), order
        # c's profile update comes after c's purchases that were handed over before it.
        assert order.index("/api/users/bulkUpdate c@example.com") > order.index("/api/commerce/trackPurchase o3")
        assert not sender._people, "finished deliveries leave no person behind"

    async def test_each_endpoint_has_its_own_calls_in_flight(self, rig: Rig) -> None:
        sender = rig.sender(max_concurrency=1)
        sender.limiter = RateLimiter({}, burst_seconds=0.0)
        started = asyncio.Event()
        release = asyncio.Event()
        post = sender.client.post

        async def slow_purchases(endpoint: Endpoint, body: Any) -> Any:
            if endpoint is Endpoint.COMMERCE_TRACK_PURCHASE:
                started.set()
                await release.wait()
            return await post(endpoint, body)

        sender.client.post = slow_purchases  # type: ignore[method-assign]
        held = asyncio.create_task(sender.deliver([purchase("p", "o1")]))
        await started.wait()
        # A purchase holds the one slot of its endpoint; another endpoint's call still goes out.
        outcomes = await asyncio.wait_for(sender.deliver([identify("b"), track("b", "e1")]), 5)
        assert all(o.delivered for o in outcomes) and not held.done()
        release.set()
        assert (await held)[0].delivered

    async def test_no_429_once_an_unpublished_limit_was_found(self, rig_factory: RigFactory) -> None:
        """The emulator in this process, on real time, holds trackPurchase at a hidden 30 calls/s; the
        sender starts its probe at 100 (``DEFAULT_LIMITS``)."""
        rig = await rig_factory(clock=time.monotonic, hidden_limits={"/api/commerce/trackPurchase": 30.0})
        sender = rig.sender(sleep=asyncio.sleep)
        sender.limiter = RateLimiter(DEFAULT_LIMITS)
        found = await sender.deliver([purchase(f"f{n}", f"f{n}") for n in range(45)])
        overshoot = rig.counters["rate_limited_total"]
        assert 0 < overshoot <= 10, "the limit is found by one overshoot: the calls in flight at the time"
        bucket = sender.limiter.bucket(Endpoint.COMMERCE_TRACK_PURCHASE)
        assert bucket is not None and bucket.rate <= 30.0
        batches = [[purchase(f"p{b}-{n}", f"p{b}-{n}") for n in range(25)] for b in range(3)]
        outcomes = await asyncio.gather(*(sender.deliver(batch) for batch in batches))
        assert all(o.delivered for o in [*found, *(o for batch in outcomes for o in batch)])
        assert rig.counters["rate_limited_total"] == overshoot, "no 429 after the limit was found"


def move(person: str, new: str, current: str | None = None) -> IterableRequest:
    """users/updateEmail of ``person`` (whose address is ``<person>@example.com``) to ``<new>@example.com``."""
    body = {"currentEmail": current or f"{person}@example.com", "newEmail": f"{new}@example.com"}
    return IterableRequest(Endpoint.USERS_UPDATE_EMAIL, body, person, f"src-move-{person}")


def update(person: str, email: str, **fields: object) -> IterableRequest:
    return IterableRequest(Endpoint.USERS_UPDATE, {"email": f"{email}@example.com", "dataFields": fields},
                           person, f"src-{email}")


class TestEmailChange:
    """users/updateEmail, then the profile update under the new address (issue 22)."""

    async def test_profile_and_events_end_under_the_new_address_in_one_round(self, rig: Rig) -> None:
        later = track("a", "e2")
        later = IterableRequest(later.endpoint, {**later.body, "email": "a2@example.com"}, "a", "src-e2")
        requests = [identify("a", plan="free", age=30), track("a", "e1"), move("a", "a2"),
                    update("a", "a2", plan="pro"), later]
        outcomes = await rig.sender(max_batch_items=1).deliver(requests)
        assert all(o.delivered for o in outcomes), outcomes
        project = rig.state.project
        assert project.get_user(email="a@example.com") == (200, {})
        user = project.get_user(email="a2@example.com")[1]["user"]
        assert user["dataFields"] == {"plan": "pro", "age": 30}
        assert {e["id"] for e in project.user_events(email="a2@example.com")[1]["events"]} == {"e1", "e2"}
        assert rig.counters["users_created"] == 1

    async def test_a_change_already_applied_is_delivered(self, rig: Rig) -> None:
        await rig.sender().deliver([identify("a", plan="free")])
        first = await rig.sender().deliver([move("a", "a2")])
        outcomes = await rig.sender().deliver([move("a", "a2"), update("a", "a2", plan="pro")])
        assert first[0].delivered and all(o.delivered for o in outcomes), outcomes
        assert rig.counters["responses"]["/api/users/updateEmail 400"] == 1
        assert rig.state.project.get_user(email="a2@example.com")[1]["user"]["dataFields"]["plan"] == "pro"

    async def test_a_new_address_with_its_own_profile_is_an_email_conflict(self, rig: Rig) -> None:
        await rig.sender().deliver([identify("a", plan="free"), identify("b", plan="team")])
        outcomes = await rig.sender().deliver([move("a", "b")])
        dead = outcomes[0]
        assert not dead.delivered and dead.reason == Reason.EMAIL_ALREADY_EXISTS
        assert (dead.status, dead.code) == (400, "EmailAlreadyExists")
        assert dead.detail is not None and "/api/users/merge" in dead.detail and "@" not in dead.detail
        assert rig.state.project.get_user(email="a@example.com")[1]["user"]["dataFields"] == {"plan": "free"}

    async def test_a_profile_not_visible_yet_is_retried(self, rig: Rig) -> None:
        rig.state.faults.user_visible_after = 3.0
        outcomes = await rig.sender().deliver([identify("a"), move("a", "a2")])
        assert all(o.delivered for o in outcomes) and outcomes[1].attempts == 3
        assert rig.state.project.get_user(email="a2@example.com")[1]["user"]["email"] == "a2@example.com"

    async def test_an_unknown_profile_becomes_user_not_found(self, rig: Rig) -> None:
        outcomes = await rig.sender().deliver([move("ghost", "g2")])
        assert outcomes[0].reason == Reason.USER_NOT_FOUND and outcomes[0].code == "UnknownEmailError"
        assert outcomes[0].attempts == 4  # first try + 3 bounded retries


class TestBadKeyPause:
    async def test_401_pauses_and_resumes_when_the_probe_succeeds(self, rig: Rig) -> None:
        rig.state.api_keys = {"rotated"}
        sender = rig.sender()
        task = asyncio.create_task(sender.deliver([identify("a"), track("a", "e1")]))
        for _ in range(2000):  # real round trips on loopback: a few ms
            await asyncio.sleep(0.001)
            if sender.paused:
                break
        assert sender.paused
        assert not task.done()
        rig.state.api_keys = {"test-key", "rotated"}
        outcomes = await asyncio.wait_for(task, 5)
        assert all(o.delivered for o in outcomes) and not sender.paused
        assert rig.counters["responses"].get("/api/lists 200", 0) >= 1
        await sender.aclose()

    async def test_resume_lets_calls_through(self, rig: Rig) -> None:
        sender = rig.sender()
        sender._pause()
        assert sender.paused
        sender.resume()
        assert (await sender.deliver([identify("a")]))[0].delivered
        await sender.aclose()


class _HeldRetry:
    """A sender's sleep that holds its next retry until the test lets it go."""

    def __init__(self) -> None:
        self.waiting = asyncio.Event()
        self.released = asyncio.Event()

    async def __call__(self, seconds: float) -> None:
        self.waiting.set()
        await self.released.wait()


class TestAbandon:
    """Issue 17: records given up at a rebalance during an outage must not be sent by their old sender.

    A worker's sender retries a person's older identify while Iterable is down; the rebalance
    gives the record up (``faust_patches.bound_wait_for_acks``), the partition's next owner delivers
    the older and then the newer identify once Iterable is back, and only then would the old
    sender's backoff end. Before ``abandon()`` that last, stale copy overwrote the newer profile.
    """

    async def test_a_given_up_delivery_never_overwrites_the_next_owners_newer_update(self, rig: Rig) -> None:
        older, newer = identify("a", plan="free", score=16), identify("a", plan="pro", score=11)
        rig.state.faults.outage_until = rig.clock.now + 3600
        held = _HeldRetry()
        old_owner = rig.sender(sleep=held)
        stale = asyncio.create_task(old_owner.deliver([older]))
        await asyncio.wait_for(held.waiting.wait(), 5)  # answered 503, waiting for its retry
        calls_before = dict(rig.counters["requests"])

        assert old_owner.abandon() == 1  # the records are given up
        rig.state.faults.outage_until = 0  # Iterable recovers
        redelivered = await rig.sender().deliver([older, newer])  # by the partition's next owner
        assert all(o.delivered for o in redelivered)
        held.released.set()  # the old sender's backoff ends

        with pytest.raises(Abandoned):
            await asyncio.wait_for(stale, 5)
        user = rig.state.project.by_email["a@example.com"]
        assert user.data_fields == {"plan": "pro", "score": 11}
        assert rig.counters["requests"]["/api/users/bulkUpdate"] == calls_before["/api/users/bulkUpdate"] + 2
        assert old_owner.stats.abandoned == 1 and old_owner.stats.delivered == 0

    async def test_abandon_ends_a_call_waiting_for_iterable_at_once(self, rig: Rig) -> None:
        rig.state.faults.latency = 3600.0  # a call on the wire that never comes back
        sender = rig.sender()
        waiting = asyncio.create_task(sender.deliver([identify("a"), track("a", "e1")]))
        while not rig.counters["requests"]:
            await asyncio.sleep(0.01)
        assert sender.abandon() == 2
        with pytest.raises(Abandoned):
            await asyncio.wait_for(waiting, 5)
        assert sender.abandon() == 0, "nothing left to abandon"

    async def test_deliveries_started_after_abandon_run_normally(self, rig: Rig) -> None:
        sender = rig.sender()
        assert sender.abandon() == 0
        assert (await sender.deliver([identify("a")]))[0].delivered

    async def test_cancelling_the_caller_still_cancels_the_delivery(self, rig: Rig) -> None:
        rig.state.faults.outage_until = rig.clock.now + 3600
        held = _HeldRetry()
        sender = rig.sender(sleep=held)
        caller = asyncio.create_task(sender.deliver([identify("a")]))
        await asyncio.wait_for(held.waiting.wait(), 5)
        caller.cancel()
        with pytest.raises(asyncio.CancelledError):
            await caller
        assert sender.abandon() == 0, "the delivery ended with its caller"


class TestProjectTypes:
    @pytest.mark.parametrize("project_type", [ProjectType.USER_ID, ProjectType.HYBRID])
    async def test_userid_projects_accept_events_for_new_users(
        self, rig_factory: RigFactory, project_type: ProjectType
    ) -> None:
        rig = await rig_factory(project_type=project_type)
        request = IterableRequest(
            Endpoint.EVENTS_TRACK, {"userId": "u1", "eventName": "E", "id": "x1"}, "u1", "s"
        )
        assert (await rig.sender().deliver([request]))[0].delivered


class TestConfig:
    async def test_config_from_settings(self) -> None:
        from streams.settings import Settings

        config = SenderConfig.from_settings(Settings(iterable_api_key="sekrit-9f3", iterable_region="eu"))
        assert config.base_url == "https://api.eu.iterable.com"
        assert "sekrit-9f3" not in repr(config)
        assert config.api_key.get_secret_value() == "sekrit-9f3"


class TestLanes:
    """How many calls of one endpoint the sender has in flight at once (issue 19: a fixed 8 held a found
    30 calls/s of trackPurchase to 13-21 while the worker's answers came slowly)."""

    @staticmethod
    def _held_purchases(sender: Any) -> list[asyncio.Event]:
        """Hold every trackPurchase call until its gate is set; the gates, one per call started, in order."""
        gates: list[asyncio.Event] = []
        post = sender.client.post

        async def held(endpoint: Endpoint, body: Any) -> Any:
            if endpoint is Endpoint.COMMERCE_TRACK_PURCHASE:
                gate = asyncio.Event()
                gates.append(gate)
                await gate.wait()
            return await post(endpoint, body)

        sender.client.post = held
        return gates

    @staticmethod
    async def _settle() -> None:
        for _ in range(50):
            await asyncio.sleep(0)

    async def test_a_known_rate_gets_a_second_of_calls_in_flight(self, rig: Rig) -> None:
        sender = rig.sender(max_concurrency=2)
        sender.limiter = RateLimiter({Endpoint.COMMERCE_TRACK_PURCHASE: 30.0}, clock=rig.clock,
                                     sleep=rig.clock.sleep, burst_seconds=1.0, probe=frozenset())
        gates = self._held_purchases(sender)
        delivery = asyncio.create_task(sender.deliver([purchase(f"p{n}", f"o{n}") for n in range(20)]))
        await self._settle()
        assert sender.lane_size(Endpoint.COMMERCE_TRACK_PURCHASE) == 30
        assert len(gates) == 20, "every call is in flight at once: 20 is below a second of 30 calls/s"
        for gate in gates:
            gate.set()
        assert all(o.delivered for o in await delivery)

    async def test_a_probe_keeps_max_concurrency_until_it_found_its_limit(self, rig: Rig) -> None:
        sender = rig.sender(max_concurrency=2)
        sender.limiter = RateLimiter(DEFAULT_LIMITS, clock=rig.clock, sleep=rig.clock.sleep)
        gates = self._held_purchases(sender)
        delivery = asyncio.create_task(sender.deliver([purchase(f"p{n}", f"o{n}") for n in range(12)]))
        await self._settle()
        assert len(gates) == 2, "a probe crossing an unknown limit has only max_concurrency calls to lose"
        bucket = sender.limiter.bucket(Endpoint.COMMERCE_TRACK_PURCHASE)
        assert isinstance(bucket, ProbingBucket)
        bucket.limit = 30.0  # what a 429 tells it
        bucket.rate = 29.7
        gates[0].set()  # one call ends: the lane, now 30 wide, lets every waiting call go
        await self._settle()
        assert len(gates) == 12
        for gate in gates:
            gate.set()
        assert all(o.delivered for o in await delivery)
