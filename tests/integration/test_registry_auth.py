"""The schema registry behind authentication: the real Apicurio registry (dev/registry/registry.sh)
behind a loopback https reverse proxy that this test starts, with a certificate of its own CA, and that
answers 401 unless a request carries the basic credentials or the bearer token.

Every path that talks to the registry takes the FPI_SCHEMA_REGISTRY_* credentials and CA: ``check``,
``produce``, the worker (start-up and decoding), ``replay``; no secret reaches an output or a log.
"""

from __future__ import annotations

import asyncio
import base64
import os
import re
import secrets
import ssl
import subprocess
import sys
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web

from streams.emulator import EmulatorConfig, EmulatorServer
from streams.mapping import MappingConfig
from streams.model import ProjectType
from tests.e2e.test_sample_pipeline import SAMPLE, expected_outcome
from tests.support import EMULATOR_KEY, REPO, WorkerProcess, free_port, wait_for, worker_env

pytestmark = pytest.mark.integration

USER = "sr-key"
SESSION = web.AppKey("session", aiohttp.ClientSession)


@dataclass(frozen=True)
class AuthProxy:
    url: str
    """https root of the Confluent-compatible API, behind the proxy."""
    cafile: Path
    password: str
    token: str
    refused: list[str]
    """Authorization schemes of the requests the proxy refused ("none" without a header)."""


def make_tls(folder: Path) -> tuple[Path, Path, Path]:
    """A CA, and a certificate for 127.0.0.1 signed by it: (ca.pem, cert.pem, key.pem)."""
    def openssl(*args: str) -> None:
        subprocess.run(["openssl", *args], cwd=folder, check=True, capture_output=True)

    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=registry test CA",
            "-keyout", "ca-key.pem", "-out", "ca.pem")
    openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=127.0.0.1", "-keyout", "key.pem", "-out", "req.csr")
    (folder / "san.ext").write_text("subjectAltName=IP:127.0.0.1\n")
    openssl("x509", "-req", "-in", "req.csr", "-CA", "ca.pem", "-CAkey", "ca-key.pem", "-CAcreateserial", "-days", "1",
            "-extfile", "san.ext", "-out", "cert.pem")
    return folder / "ca.pem", folder / "cert.pem", folder / "key.pem"


def _proxy_app(upstream: str, password: str, token: str, refused: list[str]) -> web.Application:
    allowed = {"Basic " + base64.b64encode(f"{USER}:{password}".encode()).decode(), f"Bearer {token}"}

    async def forward(request: web.Request) -> web.StreamResponse:
        given = request.headers.get("Authorization", "")
        if given not in allowed:
            refused.append(given.split(" ")[0] or "none")
            return web.json_response({"error_code": 401, "message": "Unauthorized"}, status=401,
                                     headers={"WWW-Authenticate": 'Basic realm="registry"'})
        headers = {name: value for name, value in request.headers.items()
                   if name.lower() in ("accept", "content-type")}
        session = request.app[SESSION]
        async with session.request(request.method, upstream + request.path_qs, headers=headers,
                                   data=await request.read()) as answer:
            return web.Response(status=answer.status, body=await answer.read(),
                                content_type=answer.content_type)

    async def session_context(app: web.Application) -> AsyncIterator[None]:
        app[SESSION] = aiohttp.ClientSession()
        yield
        await app[SESSION].close()

    app = web.Application()
    app.cleanup_ctx.append(session_context)
    app.router.add_route("*", "/{tail:.*}", forward)
    return app


@pytest.fixture(scope="module")
def auth_proxy(schema_registry_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[AuthProxy]:
    ca, cert, key = make_tls(tmp_path_factory.mktemp("proxy-tls"))
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    root = schema_registry_url.split("/apis/")[0]
    password, token, refused = secrets.token_urlsafe(12), secrets.token_urlsafe(24), []
    port = free_port()
    loop = asyncio.new_event_loop()
    runner = web.AppRunner(_proxy_app(root, password, token, refused))
    loop.run_until_complete(runner.setup())
    loop.run_until_complete(web.TCPSite(runner, "127.0.0.1", port, ssl_context=context).start())
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    try:
        yield AuthProxy(f"https://127.0.0.1:{port}/apis/ccompat/v7", ca, password, token, refused)
    finally:
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.run_until_complete(runner.cleanup())
        loop.close()


def cli(args: list[str], env: dict[str, str], stdin: str = "") -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "streams", *args], env={**os.environ, "COLUMNS": "250", **env},
                          input=stdin, capture_output=True, text=True, timeout=120, cwd=REPO)


def basic(proxy: AuthProxy) -> dict[str, str]:
    return {"FPI_SCHEMA_REGISTRY_URL": proxy.url, "FPI_SCHEMA_REGISTRY_USERNAME": USER,
            "FPI_SCHEMA_REGISTRY_PASSWORD": proxy.password, "FPI_SCHEMA_REGISTRY_CAFILE": str(proxy.cafile)}


def bearer(proxy: AuthProxy) -> dict[str, str]:
    return {"FPI_SCHEMA_REGISTRY_URL": proxy.url, "FPI_SCHEMA_REGISTRY_TOKEN": proxy.token,
            "FPI_SCHEMA_REGISTRY_CAFILE": str(proxy.cafile)}


def in_url(proxy: AuthProxy) -> dict[str, str]:
    return {"FPI_SCHEMA_REGISTRY_URL": proxy.url.replace("https://", f"https://{USER}:{proxy.password}@"),
            "FPI_SCHEMA_REGISTRY_CAFILE": str(proxy.cafile)}


def user_info(proxy: AuthProxy) -> dict[str, str]:
    return {"FPI_SCHEMA_REGISTRY_URL": proxy.url, "FPI_SCHEMA_REGISTRY_USER_INFO": f"{USER}:{proxy.password}",
            "FPI_SCHEMA_REGISTRY_CAFILE": str(proxy.cafile)}


@pytest.mark.parametrize("credentials", [basic, bearer, in_url, user_info])
def test_produce_registers_through_the_proxy(
    auth_proxy: AuthProxy, kafka_bootstrap: str, credentials: Callable[[AuthProxy], dict[str, str]]
) -> None:
    env = {"FPI_KAFKA_BOOTSTRAP": kafka_bootstrap, "FPI_SOURCE_TOPIC": f"reg-auth-{secrets.token_hex(5)}",
           **credentials(auth_proxy)}
    result = cli(["produce", "-"], env, stdin=SAMPLE.read_text().splitlines()[0] + "\n")
    assert result.returncode == 0, result.stderr
    assert "produced 1 events" in result.stdout and "schema id" in result.stdout
    assert auth_proxy.password not in result.stdout + result.stderr
    assert auth_proxy.token not in result.stdout + result.stderr


def test_check_passes_with_credentials_and_hides_them(auth_proxy: AuthProxy, kafka_bootstrap: str) -> None:
    for credentials in (basic, bearer, in_url):
        result = cli(["check"], {"FPI_KAFKA_BOOTSTRAP": kafka_bootstrap, **credentials(auth_proxy)})
        out = result.stdout + result.stderr
        row = r"schema registry +│ pass +│ https://(\*\*\*@)?127\.0\.0\.1:\d+/apis/ccompat/v7 answers"
        assert re.search(row, out), out
        assert auth_proxy.password not in out and auth_proxy.token not in out


def test_wrong_credentials_and_unknown_ca_are_one_line(auth_proxy: AuthProxy, kafka_bootstrap: str) -> None:
    env = {"FPI_KAFKA_BOOTSTRAP": kafka_bootstrap, **basic(auth_proxy), "FPI_SCHEMA_REGISTRY_PASSWORD": "wrong-pw"}
    result = cli(["produce", "-"], env)
    assert (result.returncode, result.stdout) == (1, "")
    assert result.stderr == (
        f"error [registry_unavailable]: the schema registry at {auth_proxy.url} answered POST "
        "/subjects/freshpaint.events-value/versions with HTTP 401 (no or wrong credentials): check "
        "FPI_SCHEMA_REGISTRY_USERNAME / FPI_SCHEMA_REGISTRY_PASSWORD (or USER_INFO, or FPI_SCHEMA_REGISTRY_TOKEN) "
        "and the account's permissions\n")

    env = {"FPI_KAFKA_BOOTSTRAP": kafka_bootstrap, **bearer(auth_proxy), "FPI_SCHEMA_REGISTRY_CAFILE": ""}
    result = cli(["produce", "-"], env)
    assert (result.returncode, result.stdout) == (1, "")
    assert result.stderr == (
        f"error [registry_unavailable]: cannot reach the schema registry at {auth_proxy.url} (certificate not "
        "trusted): check FPI_SCHEMA_REGISTRY_URL and that the registry is up, and FPI_SCHEMA_REGISTRY_CAFILE for "
        "its certificate\n")
    assert auth_proxy.token not in result.stderr


def test_check_never_prints_credentials_of_the_url() -> None:
    """Issue 16: `check` printed `cannot reach http://sr-key:SUPERSECRET@...`."""
    env = {"FPI_KAFKA_BOOTSTRAP": f"127.0.0.1:{free_port()}",
           "FPI_SCHEMA_REGISTRY_URL": f"http://{USER}:SUPERSECRET@127.0.0.1:{free_port()}/apis/ccompat/v7"}
    result = cli(["check"], env)
    assert "SUPERSECRET" not in result.stdout + result.stderr
    assert result.returncode == 1
    assert "http://***@127.0.0.1" in result.stdout  # where it looked, without the credentials


async def test_worker_decodes_through_the_authenticated_registry(
    auth_proxy: AuthProxy, kafka_bootstrap: str, tmp_path: Path
) -> None:
    lines = SAMPLE.read_text().splitlines()
    event_ids, purchase_ids, _dead, valid = expected_outcome(lines, MappingConfig(project_type=ProjectType.EMAIL))
    with EmulatorServer(EmulatorConfig(api_keys=(EMULATOR_KEY,))) as emulator:
        env = worker_env(kafka_bootstrap, emulator.url, tmp_path / "data", FPI_TOPIC_PARTITIONS="4",
                         **bearer(auth_proxy))
        refused_before = len(auth_proxy.refused)
        worker = WorkerProcess(env, tmp_path / "worker.log").start()
        try:
            sample = tmp_path / "sample.jsonl"
            sample.write_text("\n".join(lines) + "\n")
            produced = cli(["produce", str(sample)], env)  # registers the schema: a new id for the worker
            assert f"produced {valid} events" in produced.stdout, produced.stderr
            assert "schema id 0" not in produced.stdout

            def delivered() -> bool:
                project = emulator.state.project
                return set(project.events) >= event_ids and set(project.purchases) >= purchase_ids

            await asyncio.to_thread(wait_for, delivered, 120, what="sample events in the emulator")
        except BaseException:
            print(worker.log_text()[-6000:])
            raise
        finally:
            worker.stop()
    assert len(auth_proxy.refused) == refused_before  # every request of the worker carried the token
    assert auth_proxy.token not in worker.log_text()


def test_worker_with_a_wrong_token_stops_at_start(auth_proxy: AuthProxy, kafka_bootstrap: str, tmp_path: Path) -> None:
    env = worker_env(kafka_bootstrap, "http://127.0.0.1:9", tmp_path / "data", FPI_TOPIC_PARTITIONS="4",
                     **{**bearer(auth_proxy), "FPI_SCHEMA_REGISTRY_TOKEN": "not-the-token"})
    result = cli(["worker"], {**env, "FPI_LOG_FORMAT": "json"})
    assert result.returncode == 1, result.stdout + result.stderr
    [line] = result.stdout.splitlines()
    assert '"reason":"registry_unavailable"' in line.replace(" ", "") and "HTTP 401" in line
    assert "not-the-token" not in result.stdout + result.stderr
