"""The image's HEALTHCHECK: checks what fits the command the container runs.

- ``worker``: ``GET /healthz`` on ``FPI_WEB_PORT`` (liveness; Compose gates the producer on ``/readyz``
  and Kubernetes has its own probes);
- ``emulator``: ``GET /_emulator/counters`` on its ``--port`` (or ``FPI_EMULATOR_PORT``, else 8090);
- anything else is a one-shot command (``produce``, ``explain``, ``check``, ``replay``,
  ``dead-letters``, ``dev``): healthy while it runs.

The command is read from the container's process list (``/proc/*/cmdline``): the first process that
runs ``freshpaint-iterable`` (or ``python -m streams``), so an init process as PID 1 does not matter.
Exit 0 healthy, 1 unhealthy, with one line saying why. Standard library only.
"""

from __future__ import annotations

import os
import sys
import urllib.request
from pathlib import Path


def command_line() -> list[str] | None:
    """The arguments after the program, of the first process running the CLI; None when none does."""
    pids = sorted(int(p.name) for p in Path("/proc").iterdir() if p.name.isdigit())
    for pid in pids:
        try:
            argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        args = [a.decode(errors="replace") for a in argv if a]
        for i, arg in enumerate(args):
            if os.path.basename(arg) == "freshpaint-iterable":
                return args[i + 1:]
            if arg == "-m" and args[i + 1:i + 2] == ["streams"]:
                return args[i + 2:]
    return None


def option(args: list[str], name: str) -> str | None:
    for i, arg in enumerate(args):
        if arg == name and i + 1 < len(args):
            return args[i + 1]
        if arg.startswith(name + "="):
            return arg.split("=", 1)[1]
    return None


def get(url: str) -> str | None:
    """None when ``url`` answers 2xx, else why not."""
    try:
        with urllib.request.urlopen(url, timeout=4) as response:
            return None if 200 <= response.status < 300 else f"HTTP {response.status}"
    except Exception as exc:
        return f"{type(exc).__name__}: {exc}"


def local(host: str) -> str:
    return "127.0.0.1" if host in ("", "0.0.0.0", "::") else host


def main() -> int:
    args = command_line()
    if args is None:
        print("unhealthy: no freshpaint-iterable process in this container")
        return 1
    command = next((a for a in args if not a.startswith("-")), None)
    if command == "worker":
        host = local(os.environ.get("FPI_WEB_BIND", "0.0.0.0"))
        url = f"http://{host}:{os.environ.get('FPI_WEB_PORT', '6066')}/healthz"
    elif command == "emulator":
        host = local(option(args, "--host") or os.environ.get("FPI_EMULATOR_HOST", "127.0.0.1"))
        port = option(args, "--port") or os.environ.get("FPI_EMULATOR_PORT", "8090")
        url = f"http://{host}:{port}/_emulator/counters"
    else:
        print(f"healthy: {command} is a one-shot command, running")
        return 0
    problem = get(url)
    if problem:
        print(f"unhealthy: {command}: {url}: {problem}")
        return 1
    print(f"healthy: {command}: {url}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
