"""The Iterable emulator: a real HTTP server with its own project state, not test code.

``create_emulator(config)`` builds the Starlette app; ``EmulatorServer`` serves it with uvicorn on
loopback. The rules it enforces are in ``project``; the knobs in ``config``.
"""

from __future__ import annotations

from streams.emulator.app import EmulatorState, create_emulator
from streams.emulator.config import DEFAULT_RATE_LIMITS, EmulatorConfig, Faults
from streams.emulator.project import Counters, Project, value_type
from streams.emulator.server import EmulatorServer

__all__ = [
    "DEFAULT_RATE_LIMITS",
    "Counters",
    "EmulatorConfig",
    "EmulatorServer",
    "EmulatorState",
    "Faults",
    "Project",
    "create_emulator",
    "value_type",
]
