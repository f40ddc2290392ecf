"""The README stays true: every setting and every command is documented there."""

from __future__ import annotations

from pathlib import Path

import pytest

from streams.cli import _COMMANDS
from streams.settings import Settings

README = (Path(__file__).resolve().parents[2] / "README.md").read_text()


@pytest.mark.parametrize("field", sorted(Settings.model_fields))
def test_every_setting_is_in_the_readme(field: str) -> None:
    assert f"`FPI_{field.upper()}`" in README


@pytest.mark.parametrize("command", sorted(_COMMANDS))
def test_every_command_is_in_the_readme(command: str) -> None:
    assert f"freshpaint-iterable {command}" in README
