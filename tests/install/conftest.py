"""The package as a user gets it: a wheel built from this checkout, installed into a fresh virtualenv
outside the checkout (once per test session), run from a folder that is not the repository."""

from __future__ import annotations

import os
import subprocess
import sys
import venv
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support import REPO


@pytest.fixture(scope="session")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The wheel ``pip wheel`` builds from the checkout (build isolation, as a user's pip does)."""
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(out), str(REPO)],
                   check=True, cwd=out)
    (built,) = out.glob("freshpaint_iterable-*.whl")
    return built


@pytest.fixture(scope="session")
def installed(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The ``bin`` folder of a fresh virtualenv holding the wheel and its locked dependencies."""
    env_dir = tmp_path_factory.mktemp("venv")
    venv.create(env_dir, with_pip=True)
    subprocess.run([str(env_dir / "bin" / "python"), "-m", "pip", "install", "-q", "-c",
                    str(REPO / "constraints.txt"), str(wheel)], check=True, cwd=env_dir,
                   env={k: v for k, v in os.environ.items() if not k.startswith("PYTHON")})
    return env_dir / "bin"


class Installed:
    """Runs the installed ``freshpaint-iterable`` from a folder outside the checkout, with an
    environment of nothing but ``PATH``, ``HOME`` and the given ``FPI_*`` settings."""

    def __init__(self, bin_dir: Path, workdir: Path) -> None:
        self.bin_dir = bin_dir
        self.workdir = workdir
        self.processes: list[subprocess.Popen[bytes]] = []

    def env(self, settings: dict[str, str]) -> dict[str, str]:
        assert all(name.startswith("FPI_") for name in settings)
        return {"PATH": f"{self.bin_dir}:/usr/bin:/bin", "HOME": str(self.workdir), **settings}

    def run(self, *args: str, settings: dict[str, str], timeout: float = 120) -> subprocess.CompletedProcess[str]:
        return subprocess.run([str(self.bin_dir / "freshpaint-iterable"), *args], env=self.env(settings),
                              cwd=self.workdir, capture_output=True, text=True, timeout=timeout)

    def start(self, *args: str, settings: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
        with log.open("ab") as out:
            proc = subprocess.Popen([str(self.bin_dir / "freshpaint-iterable"), *args], env=self.env(settings),
                                    cwd=self.workdir, stdout=out, stderr=subprocess.STDOUT,
                                    stdin=subprocess.DEVNULL)
        self.processes.append(proc)
        return proc

    def stop_all(self) -> None:
        for proc in self.processes:
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(30)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(10)


@pytest.fixture()
def outside(installed: Path, tmp_path: Path) -> Iterator[Installed]:
    """The installed command, run from an empty folder that is not the repository."""
    workdir = tmp_path / "elsewhere"
    workdir.mkdir()
    assert REPO not in workdir.parents
    runner = Installed(installed, workdir)
    try:
        yield runner
    finally:
        runner.stop_all()
