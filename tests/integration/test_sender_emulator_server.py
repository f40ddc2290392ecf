"""EmulatorServer over real sockets: stopping it is how tests make Iterable refuse connections."""

from __future__ import annotations

import httpx
import pytest

from streams.emulator import EmulatorConfig, EmulatorServer

pytestmark = pytest.mark.integration
H = {"Api-Key": "k"}


class TestEmulatorServer:
    def test_stop_refuses_connections_and_start_brings_it_back(self) -> None:
        with EmulatorServer(EmulatorConfig(api_keys=("k",))) as server:
            assert (
                httpx.post(f"{server.url}/api/users/update", json={"email": "a@x.com"}, headers=H).status_code
                == 200
            )
            server.stop_sync()
            with pytest.raises(httpx.ConnectError):
                httpx.get(f"{server.url}/api/lists", headers=H, timeout=2)
            server.start_sync()
            assert server.counters()["users"] == 1  # state survives a restart
