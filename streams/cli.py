"""The ``freshpaint-iterable`` command line.

Commands live in their own modules and are imported only when invoked, so ``explain`` or
``produce`` start fast and do not pull in Faust.
"""

from __future__ import annotations

import importlib
from typing import Any

import click

__all__ = ["main"]

_COMMANDS: dict[str, str] = {
    "check": "streams.commands.check:check",
    "dev": "streams.commands.dev:dev",
    "dead-letters": "streams.commands.dead_letters:dead_letters",
    "emulator": "streams.commands.emulator:emulator",
    "explain": "streams.commands.explain:explain",
    "produce": "streams.commands.produce:produce",
    "replay": "streams.commands.replay:replay",
    "worker": "streams.commands.worker:worker",
}


class _LazyGroup(click.Group):
    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(_COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        target = _COMMANDS.get(cmd_name)
        if target is None:
            return None
        module_name, attr = target.split(":")
        command = getattr(importlib.import_module(module_name), attr)
        assert isinstance(command, click.Command)
        return command


@click.group(cls=_LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="freshpaint-iterable")
def main(**_: Any) -> None:
    """Keep Iterable in step with Freshpaint events on your own Kafka."""
