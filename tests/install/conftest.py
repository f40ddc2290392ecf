"""The package as a user gets it: a wheel built from this checkout, installed into a fresh virtualenv
outside the checkout (once per test session), run from a folder that is not the repository."""

from __future__ import annotations

import os
import subprocess
import sys
import venv
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
