"""Replay on the real broker: a worker process, the emulator, and `replay` reading the source topic.

One worker and one emulator serve the whole module (each test uses its own people and event ids),
so the set stays well under the time budget. The acceptance criteria of issue 7: replaying a range
twice leaves the same unique events as once; a stale identify replay does not regress a profile;
the live consumer group's committed offsets are untouched by a replay. Issue 17: replaying the whole
sample twice, and a range with email changes, purchases and identifies, leaves Iterable as it was and
adds no dead letter beyond the mapping's own.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
import urllib.request
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from aiokafka import TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from streams._support import metric_samples, metric_sum
from streams.brokers import partitions_of
from streams.codecs import decode_dead_letter
from streams.commands._kafka_io import read_ranges, whole_topic
from streams.commands.produce import produce_lines
from streams.commands.replay import plan_replay, replay_range
from streams.emulator import EmulatorConfig, EmulatorServer
from streams.errors import TopicMissing
from streams.explain import explain_lines
from streams.mapping import MappingConfig
from streams.replay import EventFilter
from streams.settings import Settings
from streams.source_reader import source_group
from tests.reliability.workload import iterable_state
from tests.support import EMULATOR_KEY, REPO, WorkerProcess, settings_of, unique, wait_for, worker_env

pytestmark = [pytest.mark.integration]


@dataclass
class Pipeline:
    emulator: EmulatorServer
    worker: WorkerProcess
    env: dict[str, str]
    bootstrap: str

    @property
    def settings(self) -> Settings:
        return settings_of(self.env)

    def metric(self, name: str, **labels: str) -> float:
        url = f"http://127.0.0.1:{self.env['FPI_WEB_PORT']}/metrics"
        with urllib.request.urlopen(url, timeout=5) as response:
            return metric_sum(metric_samples(response.read().decode()), name, **labels)


@pytest.fixture(scope="module")
def pipeline(kafka_bootstrap: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pipeline]:
    tmp = tmp_path_factory.mktemp("replay")
    with EmulatorServer(EmulatorConfig(api_keys=(EMULATOR_KEY,))) as emulator:
        env = worker_env(kafka_bootstrap, emulator.url, tmp / "data", FPI_TOPIC_PARTITIONS="2")
        worker = WorkerProcess(env, tmp / "worker.log").start()
        try:
            yield Pipeline(emulator, worker, env, kafka_bootstrap)
        except BaseException:
            print(worker.log_text()[-6000:])
            raise
        finally:
            worker.stop()


def _line(kind: str, message_id: str, at: datetime, user: str, **fields: Any) -> str:
    body: dict[str, Any] = {"type": kind, "messageId": message_id, "timestamp": at.isoformat(),
                            "anonymousId": f"dev-{user}", "userId": user, **fields}
    return json.dumps(body)


def _people(tag: str) -> tuple[str, str]:
    user = unique(tag)
    return user, f"{user}@example.com"


async def _produce(p: Pipeline, lines: list[str]) -> None:
    report = await produce_lines(lines, bootstrap=p.bootstrap, topic=p.env["FPI_SOURCE_TOPIC"])
    assert report.sent == len(lines), report.bad


def _wait(predicate: Any, what: str, timeout: float = 30) -> Any:
    return wait_for(predicate, timeout, what=what)


def _replay_cli(p: Pipeline, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "streams", "replay", *args], env={**os.environ, **p.env},
                          cwd=REPO, capture_output=True, text=True, timeout=60, check=False)


async def test_replaying_a_range_twice_leaves_the_same_unique_events_as_once(pipeline: Pipeline) -> None:
    p = pipeline
    user, email = _people("twice")
    t0 = datetime.now(UTC) - timedelta(days=1)
    lines = [_line("identify", f"{user}-id", t0, user, traits={"email": email, "plan": "basic"})]
    lines += [_line("track", f"{user}-ev{i}", t0 + timedelta(minutes=i + 1), user, event="Clicked",
                    properties={"n": i}) for i in range(4)]
    expected = {r["body"]["id"] for rec in explain_lines(lines, MappingConfig()) for r in rec["requests"]
                if r["path"] == "/api/events/track"}
    assert len(expected) == 4
    project = p.emulator.state.project
    started = datetime.now(UTC) - timedelta(seconds=1)
    await _produce(p, lines)
    await asyncio.to_thread(_wait, lambda: expected <= set(project.events), "first delivery")
    stored_before = len(project.events)
    received = project.counters.events_received

    # Once through the library (only this user's records), once through the command line.
    settings = p.settings
    ranges = await plan_replay({"bootstrap_servers": p.bootstrap}, settings.source_topic, from_time=started)
    report = await replay_range(settings, ranges, event_filter=EventFilter(user=user), rate=1000)
    assert (report.selected, report.by_type["track"], report.by_type["identify"]) == (5, 4, 1)
    await asyncio.to_thread(_wait, lambda: project.counters.events_received >= received + 4, "first replay")
    done = _replay_cli(p, "--from-time", started.isoformat(), "--user", user, "--type", "track")
    assert done.returncode == 0, done.stderr
    assert "selected 4" in done.stderr, done.stderr
    await asyncio.to_thread(_wait, lambda: project.counters.events_received >= received + 8, "second replay")

    assert {i for i, e in project.events.items() if e.get("email") == email} == expected
    assert len(project.events) == stored_before
    assert project.counters.duplicate_event_ids >= 8  # the replays did reach Iterable, as updates


async def test_a_replayed_stale_identify_does_not_regress_the_profile(pipeline: Pipeline) -> None:
    p = pipeline
    user, email = _people("stale")
    t1 = datetime.now(UTC) - timedelta(hours=2)
    project = p.emulator.state.project
    before_a = datetime.now(UTC) - timedelta(milliseconds=1)
    await _produce(p, [_line("identify", f"{user}-a", t1, user, traits={"email": email, "plan": "basic"})])
    after_a = datetime.now(UTC) + timedelta(milliseconds=1)
    await asyncio.sleep(0.05)
    await _produce(p, [_line("identify", f"{user}-b", t1 + timedelta(hours=1), user,
                             traits={"email": email, "plan": "pro"})])

    def plan() -> Any:
        found = project.by_email.get(email)
        return found is not None and found.data_fields.get("plan")

    assert await asyncio.to_thread(_wait, lambda: plan() == "pro", "identify B applied")
    updates = project.counters.user_updates
    stale = p.metric("fpi_events_dropped_total", reason="stale_identify")

    settings = p.settings
    ranges = await plan_replay({"bootstrap_servers": p.bootstrap}, settings.source_topic,
                               from_time=before_a, to_time=after_a)
    report = await replay_range(settings, ranges, event_filter=EventFilter(user=user))
    assert report.selected == 1 and report.by_type == {"identify": 1}  # A only

    await asyncio.to_thread(
        _wait, lambda: p.metric("fpi_events_dropped_total", reason="stale_identify") >= stale + 1,
        "the replayed identify dropped as stale")
    assert plan() == "pro"
    assert project.counters.user_updates == updates


async def _committed(bootstrap: str, group: str, topic: str) -> dict[int, int]:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        offsets = await admin.list_consumer_group_offsets(group)
    finally:
        await admin.close()
    return {tp.partition: meta.offset for tp, meta in offsets.items() if tp.topic == topic}


async def _ends(bootstrap: str, topic: str, partitions: list[int]) -> dict[int, int]:
    from aiokafka import AIOKafkaConsumer

    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap)
    await consumer.start()
    try:
        ends = await consumer.end_offsets([TopicPartition(topic, n) for n in partitions])
    finally:
        await consumer.stop()
    return {tp.partition: offset for tp, offset in ends.items()}


async def _until(probe: Callable[[], Awaitable[Any]], what: str, timeout: float = 30) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        found = await probe()
        if found:
            return found
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what} (last: {found!r})")
        await asyncio.sleep(0.5)


async def test_a_replay_leaves_the_live_groups_committed_offsets_untouched(pipeline: Pipeline) -> None:
    p = pipeline
    settings = p.settings
    user, email = _people("offsets")
    t0 = datetime.now(UTC) - timedelta(hours=3)
    await _produce(p, [_line("identify", f"{user}-id", t0, user, traits={"email": email}),
                       _line("track", f"{user}-ev", t0 + timedelta(seconds=1), user, event="Opened")])
    project = p.emulator.state.project
    await asyncio.to_thread(_wait, lambda: f"{user}-ev" in project.events, "live delivery")
    group, source, replay_topic = source_group(settings.app_id), settings.source_topic, settings.replay_topic
    options = {"bootstrap_servers": p.bootstrap}
    partitions = await partitions_of(options, source)
    ranges = await plan_replay(options, source, from_offsets=dict.fromkeys(partitions, 0))
    ends = await _ends(p.bootstrap, source, partitions)

    async def caught_up() -> dict[int, int] | None:
        committed = await _committed(p.bootstrap, group, source)
        return committed if all(committed.get(n) == ends[n] for n in partitions) else None

    before = await _until(caught_up, "the live group to commit the end of the source topic")
    replayed_before = sum((await _committed(p.bootstrap, group, replay_topic)).values())

    report = await replay_range(settings, ranges)  # the whole source topic, from offset 0
    assert report.selected == sum(r.size for r in ranges) >= 2

    async def replay_consumed() -> bool:
        done = sum((await _committed(p.bootstrap, group, replay_topic)).values())
        return done >= replayed_before + report.selected

    # The live group consumed the replayed records (so a rewind of it would show) ...
    await _until(replay_consumed, "the live group to consume the replay")
    # ... and its position on the source topic is exactly where it was.
    assert await _committed(p.bootstrap, group, source) == before


async def test_dry_run_prints_what_would_be_sent_and_produces_nothing(pipeline: Pipeline) -> None:
    p = pipeline
    settings = p.settings
    user, email = _people("dry")
    t0 = datetime.now(UTC) - timedelta(hours=4)
    started = datetime.now(UTC) - timedelta(seconds=1)
    await _produce(p, [_line("identify", f"{user}-id", t0, user, traits={"email": email}),
                       _line("track", f"{user}-ev", t0 + timedelta(seconds=1), user, event="Opened")])
    options = {"bootstrap_servers": p.bootstrap}
    partitions = await partitions_of(options, settings.replay_topic)
    replay_ends = await _ends(p.bootstrap, settings.replay_topic, partitions)

    done = _replay_cli(p, "--from-time", started.isoformat(), "--user", user, "--dry-run")
    assert done.returncode == 0, done.stderr
    records = [json.loads(line) for line in done.stdout.splitlines()]
    assert [(r["message_id"], r["decision"]) for r in records] == [(f"{user}-id", "send"), (f"{user}-ev", "send")]
    assert records[1]["requests"][0]["body"]["id"] == f"{user}-ev"
    assert "dry run" in done.stderr
    assert await _ends(p.bootstrap, settings.replay_topic, partitions) == replay_ends


async def test_dry_run_holds_anonymous_events_as_the_worker_does(pipeline: Pipeline) -> None:
    """With FPI_HOLD_ANONYMOUS_SECONDS the dry run holds a device's anonymous page and prints it again, released
    under the person, after the identify that links the device; without it the page is dropped anonymous."""
    p = pipeline
    user, email = _people("hold")
    t0 = datetime.now(UTC) - timedelta(hours=4)
    started = datetime.now(UTC) - timedelta(seconds=1)
    page = json.dumps({"type": "page", "messageId": f"{user}-pv", "timestamp": t0.isoformat(),
                       "anonymousId": f"dev-{user}", "name": "Pricing"})
    await _produce(p, [page, _line("identify", f"{user}-id", t0 + timedelta(seconds=30), user,
                                   traits={"email": email})])

    def dry_run(**env: str) -> list[tuple[str, str]]:
        done = subprocess.run([sys.executable, "-m", "streams", "replay", "--from-time", started.isoformat(),
                               "--user", f"dev-{user}", "--dry-run"], env={**os.environ, **p.env, **env}, cwd=REPO,
                              capture_output=True, text=True, timeout=60, check=False)
        assert done.returncode == 0, done.stderr
        return [(r["message_id"], r["decision"]) for r in map(json.loads, done.stdout.splitlines())]

    assert dry_run(FPI_HOLD_ANONYMOUS_SECONDS="600") == [
        (f"{user}-pv", "hold"), (f"{user}-id", "send"), (f"{user}-pv", "send")]
    assert dry_run(FPI_HOLD_ANONYMOUS_SECONDS="") == [(f"{user}-pv", "drop"), (f"{user}-id", "send")]


SAMPLE = REPO / "tests" / "data" / "sample_events.jsonl"


async def _dead_letters(p: Pipeline) -> list[Any]:
    options = {"bootstrap_servers": p.bootstrap}
    topic = p.env["FPI_DEAD_LETTER_TOPIC"]
    return [decode_dead_letter(record.value)
            async for record in read_ranges(options, topic, await whole_topic(options, topic))]


async def _settled(p: Pipeline, timeout: float = 120) -> None:
    """Until the live group committed the end of every topic it reads: nothing left in the pipeline."""
    settings = p.settings
    topics = [settings.source_topic, settings.replay_topic, f"{settings.app_id}-by-device",
              settings.by_person_topic, settings.requests_topic]
    options = {"bootstrap_servers": p.bootstrap}

    async def caught_up() -> bool:
        for topic in topics:
            try:
                partitions = await partitions_of(options, topic)
            except TopicMissing:  # not created yet: the worker is starting
                return False
            ends = await _ends(p.bootstrap, topic, partitions)
            reader = source_group(settings.app_id) if topic in topics[:2] else settings.app_id
            committed = await _committed(p.bootstrap, reader, topic)
            if any(committed.get(n, 0) < end for n, end in ends.items() if end):
                return False
        return True

    await _until(caught_up, "the pipeline to settle", timeout)


def _letters_of(letters: list[Any], ids: set[str]) -> list[tuple[str, str]]:
    return sorted((letter.event.message_id, letter.reason) for letter in letters
                  if letter.event is not None and letter.event.message_id in ids)


async def test_replaying_the_sample_twice_changes_nothing_in_iterable(pipeline: Pipeline) -> None:
    """Every request type replays safely, email changes included."""
    p = pipeline
    lines = [line for line in SAMPLE.read_text().splitlines() if line.strip()]
    sample_ids = {record["message_id"] for record in explain_lines(lines, MappingConfig())} - {None}
    options = {"bootstrap_servers": p.bootstrap}
    source = p.settings.source_topic
    await _settled(p)
    partitions = await partitions_of(options, source)
    start = await _ends(p.bootstrap, source, partitions)
    report = await produce_lines(lines, bootstrap=p.bootstrap, topic=source)
    assert report.sent >= 30, report
    project = p.emulator.state.project
    await asyncio.to_thread(_wait, lambda: "robert@example.com" in project.by_email, "the email change")
    await _settled(p)
    before = iterable_state(project)
    letters = _letters_of(await _dead_letters(p), sample_ids)
    assert {reason for _, reason in letters} == {"unsupported_type", "purchase_incomplete",
                                                 "missing_identifier", "invalid_email"}
    sent = project.counters.requests.copy()

    offsets = ",".join(f"{n}:{start[n]}" for n in partitions)
    for _ in range(2):
        done = _replay_cli(p, "--from-offsets", offsets)
        assert done.returncode == 0, done.stderr
        await _settled(p)

    assert project.counters.requests != sent, "the replays reached Iterable"
    assert iterable_state(project) == before
    again = _letters_of(await _dead_letters(p), sample_ids)
    # The mapping's own decisions again (c-0001, an identify without the project's email, is now
    # older than the person's last identify: a quiet stale_identify drop), and nothing Iterable refused.
    assert set(again) == set(letters) and len(again) > len(letters)


async def test_replaying_email_changes_purchases_and_identifies_adds_no_dead_letter(pipeline: Pipeline) -> None:
    p = pipeline
    user, email = _people("range")
    new_email, newest_email = f"new.{email}", f"newest.{email}"
    t0 = datetime.now(UTC) - timedelta(hours=5)
    purchase = {"total": 9.5, "campaignId": 7, "templateId": 8,
                "items": [{"id": "sku-1", "name": "Mug", "price": 9.5, "quantity": 1}]}
    lines = [
        _line("identify", f"{user}-1", t0, user, traits={"email": email, "plan": "free"}),
        _line("track", f"{user}-2", t0 + timedelta(minutes=1), user, event="Order Completed",
              properties={**purchase, "orderId": f"{user}-o1"}),
        _line("identify", f"{user}-3", t0 + timedelta(minutes=2), user, traits={"email": new_email}),
        _line("track", f"{user}-4", t0 + timedelta(minutes=3), user, event="Viewed"),
        # On the person's device, as Freshpaint sends it: another device's records may overtake.
        _line("alias", f"{user}-5", t0 + timedelta(minutes=4), newest_email, previousId=user,
              anonymousId=f"dev-{user}"),
        _line("identify", f"{user}-6", t0 + timedelta(minutes=5), user, traits={"plan": "pro"}),
        _line("track", f"{user}-7", t0 + timedelta(minutes=6), user, event="Order Completed",
              properties={**purchase, "orderId": f"{user}-o2"}),
    ]
    requests = [r["path"] for rec in explain_lines(lines, MappingConfig()) for r in rec["requests"]]
    assert requests.count("/api/users/updateEmail") == 2 and requests.count("/api/commerce/trackPurchase") == 2
    await _settled(p)
    letters_before = len(await _dead_letters(p))
    started = datetime.now(UTC) - timedelta(seconds=1)
    await _produce(p, lines)
    project = p.emulator.state.project
    await _settled(p)
    profile = project.by_email.get(newest_email)
    assert profile is not None and profile.data_fields.get("plan") == "pro", profile
    assert email not in project.by_email and new_email not in project.by_email
    before = iterable_state(project)

    for _ in range(2):
        done = _replay_cli(p, "--from-time", started.isoformat(), "--user", user)
        assert done.returncode == 0, done.stderr
        await _settled(p)

    assert iterable_state(project) == before
    assert len(await _dead_letters(p)) == letters_before, "a replay added a dead letter"
