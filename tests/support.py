"""Helpers shared by the integration, end-to-end and reliability tests (no fakes of Kafka here)."""

from __future__ import annotations

import ast
import gc
import os
import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

# Shared with dev and bench; tests import them from here.
from streams._support import free_port as free_port
from streams._support import isolated_worker_env
from streams._support import wait_for as wait_for

if TYPE_CHECKING:
    from streams.settings import Settings

REPO = Path(__file__).resolve().parent.parent

def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


class WorkerProcess:
    """``freshpaint-iterable worker`` as a separate OS process, with its output in a log file."""

    def __init__(self, env: Mapping[str, str], log_path: Path, args: tuple[str, ...] = ("worker",)) -> None:
        self.env = {**os.environ, **env}
        self.log_path = log_path
        self.args = args
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> WorkerProcess:
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "streams", *self.args],
            env=self.env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, cwd=REPO,
        )
        return self

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)

    def stop(self, timeout: float = 30) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""


@contextmanager
def running(worker: WorkerProcess, log_tail: int = 6000) -> Iterator[WorkerProcess]:
    """Start ``worker`` for the block; when the block fails, print the end of its log; stop it in every case."""
    worker.start()
    try:
        yield worker
    except BaseException:
        print(worker.log_text()[-log_tail:])
        raise
    finally:
        worker.stop()


# The partition count the end-to-end and reliability tests run at: production's (k8s/overlays/prod
# runs 12), not the product's local default of 4, which hid a start-up that grew 1.5 s per partition.
TEST_PARTITIONS = int(os.environ.get("FPI_TEST_PARTITIONS", "16"))


def worker_env(kafka_bootstrap: str, iterable_url: str, data_dir: Path, **overrides: str) -> dict[str, str]:
    """Environment of a worker with its own app id and topics (``TEST_PARTITIONS`` each), pointed at an emulator."""
    env = isolated_worker_env(unique("fpi"), kafka_bootstrap, iterable_url, EMULATOR_KEY, data_dir, TEST_PARTITIONS)
    env |= {"FPI_SEND_LINGER_SECONDS": "0.1", "FPI_LOG_LEVEL": "info"}
    env.update(overrides)
    return env


EMULATOR_KEY = "test-key-0123456789abcdef"


def settings_of(env: Mapping[str, str]) -> Settings:
    """The ``Settings`` a worker started with ``env`` reads (its ``FPI_*`` variables; the log level is
    a command-line option, not a setting)."""
    from streams.settings import Settings

    fields = {name.removeprefix("FPI_").lower(): value for name, value in env.items()
              if name.startswith("FPI_") and name != "FPI_LOG_LEVEL"}
    return Settings(**fields)  # type: ignore[arg-type]  # pydantic converts the strings


def parse_python(source: str) -> ast.Module:
    """``ast.parse`` with the garbage collector held off. A finalizer run by a collection inside the
    parse (faust's objects from another test) makes CPython 3.11.7 fail with "SystemError: AST
    constructor recursion depth mismatch", depending on test order."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        return ast.parse(source)
    finally:
        if enabled:
            gc.enable()
