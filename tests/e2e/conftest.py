from __future__ import annotations

from collections.abc import Iterator

import pytest

from streams.emulator import EmulatorConfig, EmulatorServer
from tests.support import EMULATOR_KEY


@pytest.fixture()
def emulator() -> Iterator[EmulatorServer]:
    with EmulatorServer(EmulatorConfig(api_keys=(EMULATOR_KEY,))) as server:
        yield server
