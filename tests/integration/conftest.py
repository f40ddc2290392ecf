"""Fixtures of the integration tier that start their own servers."""

from __future__ import annotations

import os
import secrets
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from streams._support import LocalBroker
from tests.support import REPO, free_port


@dataclass(frozen=True)
class SecureKafka:
    """A private broker of dev/kafka/broker.sh in secure mode (KAFKA_SECURE=1)."""

    sasl_ssl: str
    """SASL_SSL listener: TLS, then SCRAM-SHA-256 or SCRAM-SHA-512."""
    mutual_tls: str
    """SSL listener that requires a client certificate."""
    tls_dir: Path
    """ca.pem, client.pem, client-key.pem, made by the script with openssl."""
    username: str
    password: str

    def env(self, mechanism: str = "SCRAM-SHA-512") -> dict[str, str]:
        """FPI_* settings of a client of the SASL_SSL listener."""
        return {
            "FPI_KAFKA_BOOTSTRAP": self.sasl_ssl,
            "FPI_KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
            "FPI_KAFKA_SASL_MECHANISM": mechanism,
            "FPI_KAFKA_SASL_USERNAME": self.username,
            "FPI_KAFKA_SASL_PASSWORD": self.password,
            "FPI_KAFKA_SSL_CAFILE": str(self.tls_dir / "ca.pem"),
        }


@pytest.fixture(scope="session")
def secure_kafka(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SecureKafka]:
    """One TLS + SCRAM broker per session, on free ports, stopped at the end (never the shared one)."""
    run_dir = tmp_path_factory.mktemp("secure-kafka-run")
    username, password = "fpi-worker", secrets.token_urlsafe(18)
    ports = {name: free_port() for name in ("KAFKA_SASL_SSL_PORT", "KAFKA_SSL_PORT")}
    with LocalBroker(run_dir, **{name: str(port) for name, port in ports.items()}, KAFKA_SECURE="1",
                     KAFKA_SCRAM_USERS=f"{username}:{password}", KAFKA_HEAP_OPTS="-Xms128m -Xmx512m"):
        yield SecureKafka(sasl_ssl=f"127.0.0.1:{ports['KAFKA_SASL_SSL_PORT']}",
                          mutual_tls=f"127.0.0.1:{ports['KAFKA_SSL_PORT']}", tls_dir=run_dir / "tls",
                          username=username, password=password)


@pytest.fixture(scope="session")
def schema_registry_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Apicurio from dev/registry/registry.sh on free ports, or the one SCHEMA_REGISTRY_URL points at."""
    configured = os.environ.get("SCHEMA_REGISTRY_URL")
    if configured:
        yield configured
        return
    port = free_port()
    env = {**os.environ, "REGISTRY_PORT": str(port), "REGISTRY_MANAGEMENT_PORT": str(free_port()),
           "REGISTRY_RUN_DIR": str(tmp_path_factory.mktemp("registry-run"))}
    script = str(REPO / "dev" / "registry" / "registry.sh")
    subprocess.run(["bash", script, "start"], env=env, check=True)
    try:
        yield f"http://127.0.0.1:{port}/apis/ccompat/v7"
    finally:
        subprocess.run(["bash", script, "stop"], env=env, check=False)
