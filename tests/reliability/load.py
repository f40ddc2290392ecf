"""Background CPU load for the loaded reliability profile (``FPI_RELIABILITY_LOAD=1``).

Real workers share busy nodes; issue 17's regression showed only on a machine running other work.
Two processes, each ending by itself after ``seconds`` even if the test that started it dies:
``steady`` keeps one core busy in bursts of 2-50 ms, and ``bursts`` sleeps 50-500 ms and then spins
10-200 ms, so whichever core the workers get is taken from them at irregular moments (scheduling
jitter). ``BackgroundLoad`` starts both and stops them by their own pids.

Run by hand: ``python -m tests.reliability.load steady 60``.
"""

from __future__ import annotations

import random
import signal
import subprocess
import sys
import time
from types import TracebackType

from tests.support import REPO

__all__ = ["BackgroundLoad"]


def _spin(seconds: float) -> None:
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        pass


def _run(kind: str, seconds: float) -> None:
    rng = random.Random()
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if kind == "steady":
            _spin(rng.uniform(0.002, 0.05))
            if rng.random() < 0.1:
                time.sleep(rng.uniform(0, 0.005))
        else:
            time.sleep(rng.uniform(0.05, 0.5))
            _spin(rng.uniform(0.01, 0.2))


class BackgroundLoad:
    """The two load processes for at most ``seconds``; a context manager."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.procs: list[subprocess.Popen[bytes]] = []

    def __enter__(self) -> BackgroundLoad:
        for kind in ("steady", "bursts"):
            command = [sys.executable, "-m", "tests.reliability.load", kind, str(self.seconds)]
            self.procs.append(subprocess.Popen(command, cwd=REPO, stdin=subprocess.DEVNULL))
        return self

    def running(self) -> bool:
        return all(proc.poll() is None for proc in self.procs)

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in self.procs:
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)


if __name__ == "__main__":
    _run(sys.argv[1], float(sys.argv[2]))
