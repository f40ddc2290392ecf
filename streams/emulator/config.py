"""Settings of the Iterable emulator: project type, keys, rate limits and injected faults.

``EmulatorConfig`` is fixed when the emulator is created. ``Faults`` is the mutable part that the
admin endpoint (``POST /_emulator/faults``) changes while the server runs.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from typing import Any

from streams.model import ProjectType

__all__ = ["DEFAULT_RATE_LIMITS", "EmulatorConfig", "Faults", "parse_limits"]

DEFAULT_RATE_LIMITS: Mapping[str, float] = {
    # Iterable's published per-project limits (iterable-api.md §4). Endpoints without a published
    # number (trackPurchase, updateCart, updateEmail) are not limited by the emulator.
    "/api/users/update": 500.0,
    "/api/users/bulkUpdate": 5.0,
    "/api/events/track": 2000.0,
    "/api/events/trackBulk": 10.0,
    "/api/users/registerDeviceToken": 500.0,
    "/api/users/getByEmail": 100.0,
    "/api/users/byUserId": 100.0,
    "/api/events": 100.0,
    "/api/users/getFields": 3.0,
}


@dataclass(slots=True)
class Faults:
    """Faults injected into API calls (never into ``/_emulator`` admin calls).

    Checked in this order for each call: ``latency``, outage, auth, ``fail_next``, ``error_rate``,
    ``throttle_next``, then the rate limits.
    """

    error_rate: float = 0.0
    """Fraction of calls answered ``error_status`` (random, seeded)."""
    error_status: int = 500
    fail_next: int = 0
    """The next N calls are answered ``fail_status`` (a 5xx burst)."""
    fail_status: int = 503
    throttle_next: int = 0
    """The next N calls are answered 429."""
    retry_after: float | None = None
    """When set, 429 answers carry ``Retry-After`` with this many seconds."""
    latency: float = 0.0
    """Seconds added before every call is answered."""
    outage_until: float = 0.0
    """Clock time until which every call is answered 503 (a full outage window)."""
    user_visible_after: float = 0.0
    """Seconds after its creation before a user is visible to events (Iterable's async processing)."""
    blocked_event_names: frozenset[str] = frozenset()
    """Event names the project disallows (reported, not stored)."""

    def update(self, changes: Mapping[str, Any], now: float) -> None:
        """Apply admin changes; ``outage_seconds`` opens an outage window starting ``now``."""
        known = {f.name for f in fields(self)}
        for name, value in changes.items():
            if name == "outage_seconds":
                self.outage_until = now + float(value)
            elif name == "blocked_event_names":
                self.blocked_event_names = frozenset(value)
            elif name in known:
                setattr(self, name, value)
            else:
                raise KeyError(name)

    def as_dict(self, now: float) -> dict[str, Any]:
        shown = {f.name: getattr(self, f.name) for f in fields(self)}
        shown["blocked_event_names"] = sorted(self.blocked_event_names)
        shown["outage_remaining"] = max(0.0, self.outage_until - now)
        return shown


@dataclass(frozen=True, slots=True)
class EmulatorConfig:
    """How the emulated Iterable project behaves.

    ``outage_windows`` are ``(start, end)`` seconds after the emulator was created during which
    every call is answered 503.
    """

    api_keys: tuple[str, ...] = ("emulator-key",)
    project_type: ProjectType = ProjectType.EMAIL
    rate_limits: Mapping[str, float] = field(default_factory=lambda: dict(DEFAULT_RATE_LIMITS))
    hidden_limits: Mapping[str, float] = field(default_factory=dict)
    """Limits Iterable enforces but does not publish (calls/s by path, e.g. trackPurchase): the
    sender has to find them by probing, so tests and benchmarks set them here."""
    rate_limits_enabled: bool = True
    rate_burst_seconds: float = 1.0
    """A bucket holds this many seconds of its rate (the 429 tolerance for bursts)."""
    max_bulk_items: int = 1000
    max_body_bytes: int = 4 * 1024 * 1024
    faults: Faults = field(default_factory=Faults)
    outage_windows: tuple[tuple[float, float], ...] = ()
    seed: int = 0
    clock: Callable[[], float] = time.monotonic
    project_name: str = "emulated"
    projects: Mapping[str, ProjectType] = field(default_factory=dict)
    """More projects hosted at once (several Iterable projects, ``FPI_PROJECTS_FILE``): API key -> project type.
    Each key has a project of its own (users, events, counters, rate limits), named ``project-<n>`` in
    order, and is refused by the others; ``api_keys`` and ``project_type`` are the first project's."""


def parse_limits(specs: tuple[str, ...] | list[str]) -> dict[str, float]:
    """``["/api/commerce/trackPurchase=400", ...]`` as ``{path: calls per second}``."""
    limits: dict[str, float] = {}
    for spec in specs:
        path, sep, rate = spec.partition("=")
        if not sep or not path.startswith("/api/"):
            raise ValueError(f"not PATH=CALLS_PER_SECOND: {spec!r}")
        limits[path] = float(rate)
        if limits[path] <= 0:
            raise ValueError(f"a limit must be positive: {spec!r}")
    return limits
