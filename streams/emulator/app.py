"""The emulator's HTTP face: a Starlette app that answers like Iterable's REST API.

Every ``/api`` call passes, in order: injected latency, outage windows, ``Api-Key`` auth (401
BadApiKey), injected 5xx and 429 faults, the per-endpoint rate limits (429 RateLimitExceeded),
then the project rules in ``streams.emulator.project``. ``/_emulator/*`` is the unauthenticated
admin surface for tests and benchmarks: counters, faults, reset.
"""

from __future__ import annotations

import asyncio
import dataclasses
import random
from collections import Counter, defaultdict
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import orjson
from starlette.applications import Starlette
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response
from starlette.routing import Route

from streams.emulator.config import EmulatorConfig
from streams.emulator.project import Answer, Project, envelope

__all__ = ["EmulatorState", "create_emulator"]


def _json(status: int, body: Any, headers: Mapping[str, str] | None = None) -> Response:
    return Response(
        orjson.dumps(body), status_code=status, media_type="application/json", headers=dict(headers or {})
    )


class _Bucket:
    """A plain token bucket: ``rate`` tokens a second, at most ``capacity`` saved up."""

    def __init__(self, rate: float, capacity: float, now: float) -> None:
        self.rate, self.capacity, self.tokens, self.stamp = rate, capacity, capacity, now

    def take(self, now: float) -> bool:
        self.tokens = min(self.capacity, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now
        if self.tokens >= 1.0 - 1e-9:  # float refills: "almost one" is one
            self.tokens = max(0.0, self.tokens - 1.0)
            return True
        return False


class EmulatorState:
    """Everything one emulator instance holds; reachable as ``app.state.emulator``."""

    def __init__(self, config: EmulatorConfig) -> None:
        self.config = config
        self.clock = config.clock
        self.started_at = self.clock()
        self.faults = dataclasses.replace(config.faults)
        self.api_keys = set(config.api_keys)
        self.rate_limits_enabled = config.rate_limits_enabled
        self.rng = random.Random(config.seed)
        self.reset()

    def reset(self) -> None:
        self.project = Project(
            self.config.project_type,
            clock=self.clock,
            user_visible_after=lambda: self.faults.user_visible_after,
            blocked_event_names=lambda: self.faults.blocked_event_names,
            name=self.config.project_name,
        )
        self.projects: dict[str, Project] = {
            key: Project(kind, clock=self.clock, user_visible_after=lambda: self.faults.user_visible_after,
                         blocked_event_names=lambda: self.faults.blocked_event_names, name=f"project-{n}")
            for n, (key, kind) in enumerate(self.config.projects.items(), 2)
        }
        """The other projects hosted at once, by API key (``EmulatorConfig.projects``)."""
        self.current = self.project
        """The project of the call being answered (chosen by its key)."""
        self.buckets: dict[str, _Bucket] = {}
        self.timeline: dict[str, Counter[int]] = defaultdict(Counter)
        """Calls answered per path and whole second since start, 429s apart: how much of each
        endpoint's budget a run used, second by second (``GET /_emulator/timeline``)."""

    def project_of(self, key: str | None) -> Project:
        """The project ``key`` opens (an extra project's key), else the first project."""
        return self.projects.get(key or "", self.project)

    def in_outage(self, now: float) -> bool:
        if now < self.faults.outage_until:
            return True
        since = now - self.started_at
        return any(start <= since < end for start, end in self.config.outage_windows)

    def limit_of(self, key: str) -> float:
        hidden = self.config.hidden_limits.get(key)
        return hidden if hidden is not None else self.config.rate_limits[key]

    def rate_limit_key(self, path: str) -> str | None:
        limits = self.config.rate_limits
        if path in limits or path in self.config.hidden_limits:
            return path
        if path.startswith("/api/events/") and "/api/events" in limits:
            return "/api/events"
        return None

    def allow(self, path: str, now: float, project: str = "") -> bool:
        """Whether a call of ``path`` fits the limits now; each project (by name) has its own buckets."""
        if not self.rate_limits_enabled:
            return True
        key = self.rate_limit_key(path)
        if key is None:
            return True
        bucket = self.buckets.get(project + key)
        if bucket is None:
            rate = self.limit_of(key)
            bucket = self.buckets[project + key] = _Bucket(rate, max(1.0, rate * self.config.rate_burst_seconds),
                                                           now)
        return bucket.take(now)


Handler = Callable[[EmulatorState, Request, Any], Answer]


def _api(handler: Handler, *, post: bool = True) -> Callable[[Request], Awaitable[Response]]:
    async def endpoint(request: Request) -> Response:
        state: EmulatorState = request.app.state.emulator
        path = request.url.path
        key = request.headers.get("api-key") or request.headers.get("api_key")
        project = state.project_of(key)  # several projects at once: the key picks one
        counters = project.counters
        counters.requests[path] += 1

        def answer(status: int, body: Any, headers: Mapping[str, str] | None = None) -> Response:
            counters.responses[f"{path} {status}"] += 1
            return _json(status, body, headers)

        faults = state.faults
        # Read the body first: a client that times out during the latency must not stop the
        # processing (Iterable stores what it received; that is how retries make duplicates).
        try:
            raw = await request.body() if post else b""
        except ClientDisconnect:
            return Response(status_code=499)
        if faults.latency > 0:
            await asyncio.sleep(faults.latency)
        now = state.clock()
        if state.in_outage(now):
            return answer(503, envelope("Service unavailable", "GenericError"))
        if key not in (state.api_keys if project is state.project else state.projects):
            return answer(401, envelope("Invalid API key", "BadApiKey", {"endpoint": path}))
        if faults.fail_next > 0:
            faults.fail_next -= 1
            return answer(faults.fail_status, envelope("Injected failure", "GenericError"))
        if faults.error_rate > 0 and state.rng.random() < faults.error_rate:
            return answer(faults.error_status, envelope("Injected failure", "GenericError"))
        limited = faults.throttle_next > 0 or not state.allow(path, now,
                                                              "" if project is state.project else project.name)
        key_path = state.rate_limit_key(path) or path  # one key for every /api/events/{email} read
        state.timeline[f"{key_path} 429" if limited else key_path][int(now - state.started_at)] += 1
        if limited:
            faults.throttle_next = max(0, faults.throttle_next - 1)
            counters.rate_limited[path] += 1
            headers = {"Retry-After": f"{faults.retry_after:g}"} if faults.retry_after is not None else None
            return answer(429, envelope("Rate limit exceeded", "RateLimitExceeded"), headers)
        body: Any = None
        if post:
            if len(raw) > state.config.max_body_bytes:
                return answer(400, envelope("Request body too large", "BatchTooLarge"))
            try:
                body = orjson.loads(raw)
            except orjson.JSONDecodeError:
                return answer(400, envelope(f"[{path}] Invalid JSON body", "BadJsonBody"))
            if not isinstance(body, dict):
                return answer(400, envelope(f"[{path}] Invalid JSON body", "BadJsonBody"))
            for list_key in ("users", "events"):
                items = body.get(list_key)
                if isinstance(items, list):
                    if len(items) > state.config.max_bulk_items:
                        return answer(400, envelope("Too many records in one request", "BatchTooLarge"))
                    counters.items[path] += len(items)
                    break
            else:
                counters.items[path] += 1
        state.current = project  # what p() answers with: the handler runs at once, nothing awaited between
        status, out = handler(state, request, body)
        return answer(status, out)

    return endpoint


def _routes() -> list[Route]:
    def p(state: EmulatorState) -> Project:
        return state.current

    def q(request: Request, key: str) -> str | None:
        return request.query_params.get(key)

    return [
        Route("/api/users/update", _api(lambda s, r, b: p(s).users_update(b)), methods=["POST"]),
        Route("/api/users/bulkUpdate", _api(lambda s, r, b: p(s).users_bulk_update(b)), methods=["POST"]),
        Route("/api/users/updateEmail", _api(lambda s, r, b: p(s).update_email(b)), methods=["POST"]),
        Route("/api/events/track", _api(lambda s, r, b: p(s).events_track(b)), methods=["POST"]),
        Route("/api/events/trackBulk", _api(lambda s, r, b: p(s).events_track_bulk(b)), methods=["POST"]),
        Route("/api/commerce/trackPurchase", _api(lambda s, r, b: p(s).track_purchase(b)), methods=["POST"]),
        Route("/api/commerce/updateCart", _api(lambda s, r, b: p(s).update_cart(b)), methods=["POST"]),
        Route("/api/users/registerDeviceToken", _api(lambda s, r, b: p(s).register_device_token(b)),
              methods=["POST"]),
        Route("/api/subscriptions/{group}/{group_id}/user/{email:path}",
              _api(lambda s, r, b: p(s).subscription(
                  r.path_params["group"], r.path_params["group_id"], subscribe=r.method == "PATCH",
                  email=r.path_params["email"]), post=False), methods=["PATCH", "DELETE"]),
        Route("/api/subscriptions/{group}/{group_id}/byUserId/{user_id:path}",
              _api(lambda s, r, b: p(s).subscription(
                  r.path_params["group"], r.path_params["group_id"], subscribe=r.method == "PATCH",
                  user_id=r.path_params["user_id"]), post=False), methods=["PATCH", "DELETE"]),
        Route(
            "/api/users/getByEmail",
            _api(lambda s, r, b: p(s).get_user(email=q(r, "email") or ""), post=False),
        ),
        Route(
            "/api/users/byUserId",
            _api(lambda s, r, b: p(s).get_user(user_id=q(r, "userId") or ""), post=False),
        ),
        Route("/api/users/forget", _api(lambda s, r, b: p(s).forget(b)), methods=["POST"]),
        Route("/api/users/unforget", _api(lambda s, r, b: p(s).unforget(b)), methods=["POST"]),
        Route("/api/users/forgotten", _api(lambda s, r, b: p(s).forgotten(), post=False)),
        Route("/api/users/getFields", _api(lambda s, r, b: p(s).get_fields(), post=False)),
        Route("/api/lists", _api(lambda s, r, b: (200, {"lists": []}), post=False)),
        Route(
            "/api/events/byUserId/{user_id:path}",
            _api(
                lambda s, r, b: p(s).user_events(
                    user_id=r.path_params["user_id"], limit=int(q(r, "limit") or 30)
                ),
                post=False,
            ),
        ),
        Route(
            "/api/events/{email:path}",
            _api(
                lambda s, r, b: p(s).user_events(
                    email=r.path_params["email"], limit=int(q(r, "limit") or 30)
                ),
                post=False,
            ),
        ),
        Route("/_emulator/counters", _counters),
        Route("/_emulator/arrivals", _arrivals),
        Route("/_emulator/timeline", _timeline),
        Route("/_emulator/faults", _faults, methods=["GET", "POST"]),
        Route("/_emulator/reset", _reset, methods=["POST"]),
    ]


async def _counters(request: Request) -> Response:
    state: EmulatorState = request.app.state.emulator
    project = state.project_of(request.query_params.get("key"))  # ?key=: another project's counters
    body = project.counters.as_json()
    body["users"] = len(project.users)
    body["events_stored"] = len(project.events)
    return _json(200, body)


async def _arrivals(request: Request) -> Response:
    """Event and purchase ids with the wall-clock time each first arrived (for benchmarks)."""
    state: EmulatorState = request.app.state.emulator
    return _json(200, {"arrivals": state.project.arrivals})


async def _timeline(request: Request) -> Response:
    """Calls per second by path (``"<path> 429"`` for the refused ones), and each limit enforced."""
    state: EmulatorState = request.app.state.emulator
    limits = {**state.config.rate_limits, **state.config.hidden_limits} if state.rate_limits_enabled else {}
    seconds = {path: {str(s): n for s, n in sorted(counts.items())} for path, counts in state.timeline.items()}
    return _json(200, {"seconds": seconds, "limits": limits, "hidden": sorted(state.config.hidden_limits)})


async def _faults(request: Request) -> Response:
    """GET: the current faults. POST: change them; also ``api_keys`` and ``rate_limits_enabled``."""
    state: EmulatorState = request.app.state.emulator
    if request.method == "POST":
        try:
            changes = orjson.loads(await request.body() or b"{}")
            if "api_keys" in changes:
                state.api_keys = set(changes.pop("api_keys"))
            if "rate_limits_enabled" in changes:
                state.rate_limits_enabled = bool(changes.pop("rate_limits_enabled"))
                state.buckets.clear()
            state.faults.update(changes, state.clock())
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
            return _json(400, envelope(f"Unknown or bad fault setting: {exc}", "BadParams"))
    body = state.faults.as_dict(state.clock())
    body["rate_limits_enabled"] = state.rate_limits_enabled
    return _json(200, body)


async def _reset(request: Request) -> Response:
    """Forget users, events and counters; faults go back to the configured ones."""
    state: EmulatorState = request.app.state.emulator
    state.faults = dataclasses.replace(state.config.faults)
    state.api_keys = set(state.config.api_keys)
    state.rate_limits_enabled = state.config.rate_limits_enabled
    state.reset()
    return _json(200, {"reset": True})


def create_emulator(config: EmulatorConfig | None = None) -> Starlette:
    """A new emulator app with its own empty project; its state is ``app.state.emulator``."""
    app = Starlette(routes=_routes())
    app.state.emulator = EmulatorState(config or EmulatorConfig())
    return app
