"""Serve an emulator over real HTTP on loopback: uvicorn in-process, from async or sync code.

Stopping the server is how tests make Iterable refuse connections; ``start()`` again brings it
back on the same port with the same state.
"""

from __future__ import annotations

import asyncio
import threading
from types import TracebackType
from typing import Any

import httpx
import uvicorn
from starlette.applications import Starlette

from streams.emulator.app import EmulatorState, create_emulator
from streams.emulator.config import EmulatorConfig

__all__ = ["EmulatorServer"]


class EmulatorServer:
    """An emulator app served by uvicorn on ``host:port`` (port 0 picks a free one, kept across restarts).

    Async: ``await start()`` / ``await stop()``. Sync (tests, benchmarks): ``with EmulatorServer(...)``
    runs it on a private event loop thread; ``stop_sync()`` / ``start_sync()`` toggle it.
    """

    def __init__(self, config: EmulatorConfig | None = None, host: str = "127.0.0.1", port: int = 0) -> None:
        self.config = config or EmulatorConfig()
        self.app: Starlette = create_emulator(self.config)
        self.host = host
        self.port = port
        self._server: uvicorn.Server | None = None
        self._task: asyncio.Task[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None

    @property
    def state(self) -> EmulatorState:
        state: EmulatorState = self.app.state.emulator
        return state

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def running(self) -> bool:
        return self._server is not None

    async def start(self) -> None:
        """Listen and answer; returns once the socket accepts connections."""
        if self._server is not None:
            return
        config = uvicorn.Config(
            self.app, host=self.host, port=self.port, log_level="warning", lifespan="off", access_log=False
        )
        server = uvicorn.Server(config)
        self._task = asyncio.create_task(server.serve())
        while not server.started:
            if self._task.done():
                self._task.result()
                raise RuntimeError("emulator server exited during start-up")
            await asyncio.sleep(0.01)
        if self.port == 0:
            self.port = int(server.servers[0].sockets[0].getsockname()[1])
        self._server = server

    async def stop(self) -> None:
        """Close the socket (new connections are refused); the project state is kept."""
        server, task = self._server, self._task
        self._server = self._task = None
        if server is None or task is None:
            return
        server.should_exit = True
        server.force_exit = True  # do not wait for keep-alive connections to go idle
        await task

    async def serve(self) -> None:
        """Start, then run until the server exits (Ctrl+C / SIGTERM, handled by uvicorn)."""
        await self.start()
        task = self._task
        assert task is not None
        try:
            await task
        finally:
            self._server = self._task = None

    # --- sync face ----------------------------------------------------------------------------
    def _run(self, coro: Any) -> Any:
        assert self._loop is not None, "use `with EmulatorServer(...)` first"
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout=30)

    def start_sync(self) -> None:
        self._run(self.start())

    def stop_sync(self) -> None:
        self._run(self.stop())

    def admin(self, method: str, path: str, json: Any = None) -> Any:
        """Call an ``/_emulator`` admin endpoint over HTTP and return its JSON."""
        response = httpx.request(method, f"{self.url}/_emulator/{path}", json=json, timeout=10)
        response.raise_for_status()
        return response.json()

    def counters(self) -> dict[str, Any]:
        result: dict[str, Any] = self.admin("GET", "counters")
        return result

    def set_faults(self, **changes: Any) -> dict[str, Any]:
        result: dict[str, Any] = self.admin("POST", "faults", changes)
        return result

    def __enter__(self) -> EmulatorServer:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="emulator", daemon=True)
        self._thread.start()
        self.start_sync()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        assert self._loop is not None and self._thread is not None
        try:
            self.stop_sync()
        finally:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(10)
            self._loop.close()
            self._loop = self._thread = None
