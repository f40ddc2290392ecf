"""podman for the image tests, with the repository's configuration (dev/image/podman): containers of
the image run as Compose and Kubernetes run it (read-only root filesystem, the image's non-root
user, every capability dropped, no privilege escalation), on the host network."""

from __future__ import annotations

import json
import subprocess
import time
import uuid
from collections.abc import Mapping, Sequence
from typing import Any

from tests.support import REPO

PODMAN = REPO / "dev" / "image" / "podman"
BUILD = REPO / "dev" / "image" / "build"

HARDENED = (
    "--network", "host",
    "--read-only", "--tmpfs", "/tmp",
    "--cap-drop", "ALL",
    "--security-opt", "no-new-privileges",
)
"""How docker-compose.yml and k8s/ run the image (read_only, cap_drop ALL, no-new-privileges / the
pod's securityContext), with the image's own USER. There is no systemd here to schedule the image's
health checks (podman says so on stderr, harmlessly): the tests run them (``podman healthcheck run``)."""


def podman(*args: str, timeout: float = 120, check: bool = True,
           stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    result = subprocess.run([str(PODMAN), *args], capture_output=True, text=True, timeout=timeout, check=False,
                            input=stdin if stdin is not None else "")
    if check and result.returncode != 0:
        raise AssertionError(f"podman {' '.join(args[:3])} ... exited {result.returncode}:\n"
                             f"{result.stdout[-3000:]}\n{result.stderr[-3000:]}")
    return result


def env_args(env: Mapping[str, str]) -> list[str]:
    return [arg for name, value in env.items() for arg in ("--env", f"{name}={value}")]


class Container:
    """One detached container of the image, removed (with its anonymous volumes) at the end."""

    def __init__(self, image: str, command: Sequence[str], env: Mapping[str, str],
                 extra: Sequence[str] = ()) -> None:
        self.name = f"fpi-test-{command[0]}-{uuid.uuid4().hex[:8]}"
        podman("run", "--detach", "--name", self.name, *HARDENED, *extra, *env_args(env), image, *command)

    def healthcheck(self) -> subprocess.CompletedProcess[str]:
        return podman("healthcheck", "run", self.name, check=False, timeout=30)

    def wait_healthy(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        result = self.healthcheck()
        while result.returncode != 0 and time.monotonic() < deadline:
            assert self.running(), f"{self.name} exited:\n{self.logs()[-4000:]}"
            time.sleep(1)
            result = self.healthcheck()
        assert result.returncode == 0, f"{self.name} not healthy: {result.stdout}{result.stderr}\n{self.logs()[-4000:]}"

    def inspect(self) -> dict[str, Any]:
        data: list[dict[str, Any]] = json.loads(podman("container", "inspect", self.name).stdout)
        return data[0]

    def running(self) -> bool:
        return bool(self.inspect()["State"]["Running"])

    def exec(self, *args: str) -> subprocess.CompletedProcess[str]:
        return podman("exec", self.name, *args, check=False)

    def logs(self) -> str:
        result = podman("logs", self.name, check=False)
        return result.stdout + result.stderr

    def stop(self, timeout: int = 40) -> int:
        """SIGTERM, as Kubernetes and Compose stop a container; the exit code."""
        podman("stop", "--time", str(timeout), self.name, check=False, timeout=timeout + 30)
        return int(self.inspect()["State"]["ExitCode"])

    def remove(self) -> None:
        podman("rm", "--force", "--time", "0", "--volumes", self.name, check=False, timeout=60)


def run_once(image: str, command: Sequence[str], env: Mapping[str, str], extra: Sequence[str] = (),
             stdin: str | None = None, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """A one-shot command in a fresh container (``--rm``), hardened like the others."""
    return podman("run", "--rm", "--interactive", *HARDENED, *extra, *env_args(env), image, *command,
                  check=False, timeout=timeout, stdin=stdin)
