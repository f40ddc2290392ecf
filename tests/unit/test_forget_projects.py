"""``forget`` with a routing file (issue 20 part 3): Iterable forgets the person in every project, since the
worker's forgotten-marker drops the person's events whatever project they go to."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from streams.emulator import EmulatorConfig, EmulatorServer
from streams.errors import ConfigError
from streams.forgetting import call_iterable
from streams.model import ProjectType
from streams.settings import Settings
from streams.stages import Control

pytestmark = pytest.mark.integration  # a loopback socket

FIRST, SECOND = "first-project-key", "second-project-key"


@pytest.fixture()
def emulator() -> Iterator[EmulatorServer]:
    with EmulatorServer(EmulatorConfig(api_keys=(FIRST,), projects={SECOND: ProjectType.HYBRID})) as server:
        yield server


def routing(tmp_path: Path, url: str) -> Path:
    path = tmp_path / "projects.toml"
    path.write_text("".join(
        f'[projects.{name}]\nvalues = "{name}"\napi_key_env = "{variable}"\nbase_url = "{url}"\n'
        f'project_type = "email"\n' for name, variable in (("one", "FPI_TEST_ONE"), ("two", "FPI_TEST_TWO"))))
    return path


async def test_forget_and_unforget_reach_every_project(emulator: EmulatorServer, tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FPI_TEST_ONE", FIRST)
    monkeypatch.setenv("FPI_TEST_TWO", SECOND)
    settings = Settings.load(projects_file=routing(tmp_path, emulator.url))
    first, second = emulator.state.project, emulator.state.projects[SECOND]
    await call_iterable(settings, "jane@example.com", None, Control.FORGET)
    assert "jane@example.com" in first.forgotten_emails and "jane@example.com" in second.forgotten_emails
    await call_iterable(settings, "jane@example.com", None, Control.UNFORGET)
    assert not first.forgotten_emails and not second.forgotten_emails


async def test_an_unset_key_variable_stops_it_before_any_call(emulator: EmulatorServer, tmp_path: Path,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FPI_TEST_ONE", FIRST)
    monkeypatch.delenv("FPI_TEST_TWO", raising=False)
    settings = Settings.load(projects_file=routing(tmp_path, emulator.url))
    with pytest.raises(ConfigError, match="FPI_TEST_TWO"):
        await call_iterable(settings, "jane@example.com", None, Control.FORGET)
    assert not emulator.state.project.forgotten_emails
