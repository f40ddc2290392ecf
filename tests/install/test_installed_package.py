"""The installed package works outside the checkout: the emulator, a worker and ``produce``, run from
the wheel's console script in another folder with nothing but ``FPI_*`` settings, deliver the sample
exactly as the end-to-end oracle (``explain`` over the same lines) predicts."""

from __future__ import annotations

import asyncio
from collections import Counter
from pathlib import Path

import httpx
import pytest

from streams.codecs import decode_dead_letter
from streams.mapping import MappingConfig
from tests.e2e.test_sample_pipeline import SAMPLE, expected_outcome, read_dead_letters
from tests.install.conftest import Installed
from tests.support import EMULATOR_KEY, free_port, wait_for, worker_env

pytestmark = [pytest.mark.install, pytest.mark.integration, pytest.mark.e2e]


def _ok(url: str) -> bool:
    try:
        return httpx.get(url, timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


async def test_the_sample_is_delivered_exactly(outside: Installed, kafka_bootstrap: str, tmp_path: Path) -> None:
    lines = SAMPLE.read_text().splitlines()
    event_ids, purchase_ids, dead, valid = expected_outcome(lines, MappingConfig())
    port = free_port()
    emulator_url = f"http://127.0.0.1:{port}"
    outside.start("emulator", settings={"FPI_EMULATOR_PORT": str(port), "FPI_ITERABLE_API_KEY": EMULATOR_KEY},
                  log=tmp_path / "emulator.log")
    settings = worker_env(kafka_bootstrap, emulator_url, outside.workdir / "data")
    worker = outside.start("worker", settings=settings, log=tmp_path / "worker.log")
    try:
        wait_for(lambda: _ok(f"{emulator_url}/_emulator/counters"), 30, what="the emulator")
        wait_for(lambda: worker.poll() is not None or _ok(f"http://127.0.0.1:{settings['FPI_WEB_PORT']}/readyz"),
                 120, what="the worker to be ready")
        assert worker.poll() is None, "the worker exited"
        produced = outside.run("produce", str(SAMPLE), settings=settings)
        bad_lines = len(lines) - valid - sum(1 for line in lines if not line.strip())
        assert produced.returncode == (1 if bad_lines else 0), produced.stderr
        assert f"produced {valid} events" in produced.stdout, produced.stdout + produced.stderr

        def arrivals() -> set[str]:
            return set(httpx.get(f"{emulator_url}/_emulator/arrivals", timeout=5).json()["arrivals"])

        wait_for(lambda: arrivals() >= event_ids | purchase_ids, 120, what="the sample in the emulator")
        letters = [decode_dead_letter(value) for value in await read_dead_letters(
            kafka_bootstrap, settings["FPI_DEAD_LETTER_TOPIC"], sum(dead.values()))]
        await asyncio.sleep(1)  # anything extra would have arrived by now
        counters = httpx.get(f"{emulator_url}/_emulator/counters", timeout=5).json()
    except BaseException:
        print((tmp_path / "worker.log").read_text(errors="replace")[-6000:])
        raise
    assert arrivals() == event_ids | purchase_ids
    assert counters["duplicate_event_ids"] == 0
    assert Counter(letter.reason for letter in letters) == dead
