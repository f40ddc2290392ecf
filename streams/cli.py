"""The ``freshpaint-iterable`` command line.

Commands live in their own modules and are imported only when invoked, so ``explain`` or
``produce`` start fast and do not pull in Faust.

The one border for failures the operator must fix: a ``StreamsError`` that ends a command becomes one
line, ``error [<reason>]: <what is wrong and how to fix it>``, on stderr (the worker writes it as a
JSON log record on stdout when its log format is json), and exit status 2 for configuration
(``ConfigError``) or 1 for the rest. Anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import importlib
import logging
import sys
from typing import IO, Any

import click

from streams.errors import ConfigError, StreamsError

__all__ = ["LOG_FORMAT", "main"]

LOG_FORMAT = "streams.log_format"
"""``click.Context.meta`` key: a command that logs JSON (the worker) sets it to ``"json"``."""

_COMMANDS: dict[str, str] = {
    "check": "streams.commands.check:check",
    "dev": "streams.commands.dev:dev",
    "dead-letters": "streams.commands.dead_letters:dead_letters",
    "emulator": "streams.commands.emulator:emulator",
    "explain": "streams.commands.explain:explain",
    "forget": "streams.commands.forget:forget",
    "produce": "streams.commands.produce:produce",
    "replay": "streams.commands.replay:replay",
    "topics": "streams.commands.topics:topics",
    "unforget": "streams.commands.forget:unforget",
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

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except StreamsError as exc:
            raise _Failure(exc, ctx.meta.get(LOG_FORMAT, "text")) from None


class _Failure(click.ClickException):
    """A ``StreamsError`` that ended a command, shown as one line."""

    def __init__(self, error: StreamsError, log_format: str) -> None:
        super().__init__(str(error))
        self.error = error
        self.log_format = log_format
        self.exit_code = 2 if isinstance(error, ConfigError) else 1

    def show(self, file: IO[Any] | None = None) -> None:
        if self.log_format == "json":
            from streams.logs import JsonFormatter

            record = logging.makeLogRecord({"name": "streams.worker", "levelno": logging.ERROR,
                                            "levelname": "ERROR", "msg": self.message,
                                            "reason": self.error.reason.value})
            click.echo(JsonFormatter().format(record), file=file or sys.stdout)
        else:
            click.echo(f"error [{self.error.reason.value}]: {self.message}", file=file or sys.stderr)


@click.group(cls=_LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="freshpaint-iterable")
def main(**_: Any) -> None:
    """Keep Iterable in step with Freshpaint events on your own Kafka."""
    # aiokafka logs each failed connection attempt; without a handler Python would print those to
    # stderr beside our one line. The worker's handler on the root logger still receives them.
    logging.getLogger("aiokafka").addHandler(logging.NullHandler())
