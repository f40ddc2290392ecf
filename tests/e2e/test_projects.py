"""End to end on the real broker: several Iterable projects from one deployment (issue 20 part 3).

One worker with a routing file of three projects, all hosted by one emulator: ``shop`` (email-based) and
``app`` (userId-based) with keys of their own, and ``old``, whose key Iterable rejects. Raw Freshpaint events
of each environment token, and of a token no project claims, go to the source topic. Each good project
receives exactly its own events, mapped by its own type and settings; ``old``'s key is rejected (401) and,
since the other projects answer, its requests become ``bad_api_key`` dead letters instead of holding the
others back; the unclaimed events are dead-lettered ``no_project``. ``check`` passes both good keys and
fails ``old``'s. Then, as the runbook says, ``old``'s key is rotated, the worker restarted, and
``dead-letters redrive --reason bad_api_key --project old`` brings its requests to its project.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from streams._support import metric_by, scrape_metrics
from streams.codecs import decode_dead_letter
from streams.commands.check import run_checks
from streams.commands.produce import produce_lines
from streams.emulator import EmulatorConfig, EmulatorServer
from streams.model import ProjectType
from tests.e2e.test_sample_pipeline import read_dead_letters
from tests.support import REPO, WorkerProcess, settings_of, wait_for, worker_env

pytestmark = [pytest.mark.integration, pytest.mark.e2e]

SHOP_KEY = "shop-project-key-0123456789"
APP_KEY = "app-project-key-0123456789"
OLD_NEW_KEY = "old-project-rotated-key-0123456789"
TIME = 1709647620


@pytest.fixture()
def emulator() -> Iterator[EmulatorServer]:
    config = EmulatorConfig(api_keys=(SHOP_KEY,), project_type=ProjectType.EMAIL, project_name="shop",
                            projects={APP_KEY: ProjectType.USER_ID, OLD_NEW_KEY: ProjectType.HYBRID})
    with EmulatorServer(config) as server:
        yield server


def raw(token: str, insert_id: str, name: str, user: str, device: str, minute: int, **props: object) -> str:
    properties = {"token": token, "time": TIME + 60 * minute, "distinct_id": user, "$device_id": device,
                  "$insert_id": insert_id, **props}
    return json.dumps({"event": name, "properties": properties})


LINES = [
    raw("env-shop", "shop-1", "$identify", "shop-user", "dev-s", 0, **{"$user_props": {"email": "ann@shop.example"}}),
    raw("env-shop", "shop-2", "Bought", "shop-user", "dev-s", 1, item="mug"),
    raw("env-app", "app-1", "$identify", "app-user", "dev-a", 0, **{"$user_props": {"plan": "pro"}}),
    raw("env-app", "app-2", "Opened", "app-user", "dev-a", 1),
    raw("env-old", "old-1", "$identify", "old-user", "dev-o", 0, **{"$user_props": {"email": "bo@old.example"}}),
    raw("env-old", "old-2", "Opened", "old-user", "dev-o", 1),
    raw("env-nobody", "nobody-1", "$identify", "lost-user", "dev-n", 0, **{"$user_props": {"email": "cy@x.example"}}),
    raw("env-nobody", "nobody-2", "Opened", "lost-user", "dev-n", 1),
]


def routing_file(path: Path, url: str) -> Path:
    path.write_text(f"""
[projects.shop]
values = ["env-shop"]
api_key_env = "FPI_TEST_SHOP_KEY"
base_url = "{url}"
project_type = "email"

[projects.app]
values = ["env-app"]
api_key_env = "FPI_TEST_APP_KEY"
base_url = "{url}"
project_type = "userId"

[projects.app.mapping]
require_identify_first = true

[[projects.app.transformations]]
action = "rename_event"
event = "Opened"
to = "App Opened"

[projects.old]
values = ["env-old"]
api_key_env = "FPI_TEST_OLD_KEY"
base_url = "{url}"
project_type = "hybrid"
""")
    return path


def dead_letter_counts(port: str) -> Counter[str]:
    """The worker's dead letters by reason, from its ``/metrics``."""
    return metric_by(scrape_metrics(port), "fpi_dead_letters_total", "reason")


async def test_two_projects_receive_exactly_their_own_events(
    kafka_bootstrap: str, emulator: EmulatorServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    shop, app = emulator.state.project, emulator.state.projects[APP_KEY]
    keys = {"FPI_TEST_SHOP_KEY": SHOP_KEY, "FPI_TEST_APP_KEY": APP_KEY, "FPI_TEST_OLD_KEY": "a-revoked-key"}
    env = worker_env(kafka_bootstrap, emulator.url, tmp_path / "data", **keys,
                     FPI_PROJECTS_FILE=str(routing_file(tmp_path / "projects.toml", emulator.url)),
                     FPI_PROJECT_STALL_SECONDS="2")
    worker = WorkerProcess(env, tmp_path / "worker.log").start()
    try:
        await produce_lines(LINES, bootstrap=kafka_bootstrap, topic=env["FPI_SOURCE_TOPIC"])
        await asyncio.to_thread(
            wait_for, lambda: {"shop-2", "app-2"} <= shop.events.keys() | app.events.keys()
            and min(dead_letter_counts(env["FPI_WEB_PORT"])[reason] for reason in ("no_project", "bad_api_key")) >= 2,
            180,
            what="each project's events and the dead letters")
        await asyncio.sleep(1)
        counts = dead_letter_counts(env["FPI_WEB_PORT"])
    except BaseException:
        print(worker.log_text()[-6000:])
        raise
    finally:
        worker.stop()

    assert SHOP_KEY not in worker.log_text() and APP_KEY not in worker.log_text()
    assert set(shop.by_email) == {"ann@shop.example"}  # old-user and lost-user never reached it
    assert set(shop.events) == {"shop-2"} and shop.events["shop-2"]["eventName"] == "Bought"
    assert set(app.by_user_id) == {"app-user"} and not app.by_email
    assert set(app.events) == {"app-2"} and app.events["app-2"]["eventName"] == "App Opened"
    rejected = {k: n for k, n in shop.counters.responses.items() if k.endswith(" 401")}
    assert rejected, "Iterable rejected the old project's key"
    assert not {k for k in app.counters.responses if k.endswith(" 401")}

    letters = [decode_dead_letter(value) for value in
               await read_dead_letters(kafka_bootstrap, env["FPI_DEAD_LETTER_TOPIC"], counts.total())]
    unrouted = sorted(letter.event.message_id for letter in letters
                      if letter.reason == "no_project" and letter.event is not None)
    assert unrouted == ["nobody-1", "nobody-2"]
    assert all("token='env-nobody'" in letter.detail for letter in letters if letter.reason == "no_project")
    refused = {letter.request.source_event_id for letter in letters
               if letter.reason == "bad_api_key" and letter.request is not None}
    assert refused == {"old-1", "old-2"}

    for name, value in keys.items():
        monkeypatch.setenv(name, value)
    results = {check.name: check for check in await run_checks(settings_of(env))}
    assert results["projects"].status == "pass"
    assert results["iterable project shop"].status == "pass"
    assert results["iterable project app"].status == "pass"
    assert results["iterable project old"].status == "fail" and "401" in results["iterable project old"].detail

    # The runbook: rotate the old project's key, restart, re-drive its letters to it.
    old = emulator.state.projects[OLD_NEW_KEY]
    env["FPI_TEST_OLD_KEY"] = OLD_NEW_KEY
    worker = WorkerProcess(env, tmp_path / "worker-2.log").start()
    try:
        redrive = await asyncio.to_thread(
            subprocess.run, [sys.executable, "-m", "streams", "dead-letters", "redrive", "--reason", "bad_api_key",
                             "--project", "old"], env=env, cwd=REPO, capture_output=True, text=True, timeout=120)
        assert redrive.returncode == 0, redrive.stderr
        assert "re-drove 2 of 2" in redrive.stdout
        await asyncio.to_thread(wait_for, lambda: "old-2" in old.events and "bo@old.example" in old.by_email, 120,
                                what="the old project's re-driven requests")
    except BaseException:
        print(worker.log_text()[-6000:])
        raise
    finally:
        worker.stop()
    assert set(old.events) == {"old-2"} and old.events["old-2"]["eventName"] == "Opened"
    assert "nobody-2" not in shop.events | app.events | old.events
