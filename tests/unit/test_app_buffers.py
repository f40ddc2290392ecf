"""How much each stage's stream may hold in memory (``streams.app.FRAMES_BUFFERED``).

Built without connecting: faust makes topics, agents and their queues before it talks to Kafka.
"""

from __future__ import annotations

import gc
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import faust
import pytest

from streams.app import FRAMES_BUFFERED, build_app
from tests.support import settings_of, worker_env


@pytest.fixture
async def app(tmp_path: Path) -> AsyncIterator[faust.App]:
    # Made inside the test's loop: faust binds its services to the loop running when they are made.
    yield build_app(settings_of(worker_env("127.0.0.1:1", "http://127.0.0.1:1", tmp_path)))
    # Finalize the app's objects now. Left to a later collection, their finalizers can run inside
    # another test's ast.parse, where CPython 3.11.7 then fails with "AST constructor recursion
    # depth mismatch" (seen in test_core_imports).
    gc.collect()


@pytest.fixture
async def faust_first_stage_app(tmp_path: Path) -> AsyncIterator[faust.App]:
    yield build_app(settings_of(worker_env("127.0.0.1:1", "http://127.0.0.1:1", tmp_path, FPI_SOURCE_READER="faust")))
    gc.collect()  # as in ``app``


def _stream_queue_maxsize(app: faust.App, agent_name: str) -> Any:
    agent = next(a for a in app.agents.values() if a.name.endswith(agent_name))
    return agent.channel.clone(is_iterator=True).queue.maxsize


async def test_internal_stages_buffer_a_few_takes_of_frames(app: faust.App) -> None:
    for stage in ("resolve", "apply", "send"):
        assert _stream_queue_maxsize(app, stage) == FRAMES_BUFFERED, stage


async def test_no_agent_reads_the_source_topics_by_default(app: faust.App) -> None:
    # The first stage reads them with aiokafka (streams.source_reader), in its own consumer group.
    read_by_agents = {name for agent in app.agents.values() for name in agent.channel.topics}
    assert f"{app.conf.id}-by-device" in read_by_agents
    assert not {name for name in read_by_agents if name.endswith((".events", ".replay", "-replay"))}, read_by_agents


async def test_the_faust_source_stage_keeps_fausts_record_buffer(faust_first_stage_app: faust.App) -> None:
    # Source records are ~1 KB and taken 2,000 at a time: faust's 4,096-record default fits them.
    app = faust_first_stage_app
    assert _stream_queue_maxsize(app, "route") == app.conf.stream_buffer_maxsize
