"""Fixtures of the image tests (helpers in tests/image/podman.py)."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator

import pytest

from tests.image.podman import BUILD, Container
from tests.support import REPO


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "image: builds and runs the container image with podman (tests/image)")


@pytest.fixture(scope="session")
def image() -> str:
    """The image's tag, built now (layers cached in ~/.cache/freshpaint-iterable/podman)."""
    result = subprocess.run([str(BUILD)], capture_output=True, text=True, timeout=1500, check=False, cwd=REPO)
    if result.returncode != 0:
        pytest.fail(f"dev/image/build exited {result.returncode}:\n{result.stderr[-6000:]}", pytrace=False)
    return result.stdout.strip().splitlines()[-1]


@pytest.fixture
def containers() -> Iterator[list[Container]]:
    """Containers a test starts; removed after it, whatever happened."""
    started: list[Container] = []
    yield started
    for container in started:
        container.remove()
