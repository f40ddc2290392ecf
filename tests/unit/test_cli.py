"""Every expected failure of every command is one line (``streams.cli``'s border): what is wrong and how
to fix it, exit status 2 for configuration and 1 for the rest, no traceback, no library noise. The
worker writes the line as a JSON log record on stdout."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support import REPO, unique

UNREACHABLE = "127.0.0.1:1"
BROKER_DOWN = (
    f"error [broker_unavailable]: cannot reach Kafka at {UNREACHABLE} (KafkaConnectionError): check "
    "FPI_KAFKA_BOOTSTRAP, that the brokers are up, and FPI_KAFKA_SECURITY_PROTOCOL / the SASL settings"
)
NO_SCHEMA = (
    "error [config_invalid]: Avro schema 'freshpaint_event' not found at /nonexistent/freshpaint_event.avsc: "
    "set FPI_AVRO_DIR to a folder of the .avsc files, or unset it to use the schemas bundled with the package"
)
SAMPLE = str(REPO / "tests" / "data" / "sample_events.jsonl")
EVERY_COMMAND = [
    ("produce", SAMPLE),
    ("replay", "--from-time", "1h"),
    ("dead-letters", "list"),
    ("dead-letters", "redrive", "--all"),
]


def run(args: tuple[str, ...], tmp_path: Path, **settings: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("FPI_")}
    env.update(settings)
    return subprocess.run([sys.executable, "-m", "streams", *args], env=env, cwd=tmp_path, capture_output=True,
                          text=True, timeout=90)


def assert_one_line(result: subprocess.CompletedProcess[str], line: str, status: int) -> None:
    assert (result.returncode, result.stderr, result.stdout) == (status, line + "\n", "")


@pytest.mark.integration  # connects to a closed port on loopback
@pytest.mark.parametrize("args", EVERY_COMMAND, ids=" ".join)
def test_broker_unreachable(args: tuple[str, ...], tmp_path: Path) -> None:
    assert_one_line(run(args, tmp_path, FPI_KAFKA_BOOTSTRAP=UNREACHABLE), BROKER_DOWN, 1)


@pytest.mark.integration
def test_registry_unreachable_hides_its_credentials(tmp_path: Path) -> None:
    result = run(("produce", SAMPLE), tmp_path, FPI_SCHEMA_REGISTRY_URL="http://reader:s3cret@127.0.0.1:1/api")
    assert_one_line(result, "error [registry_unavailable]: cannot reach the schema registry at "
                    "http://***@127.0.0.1:1/api (ConnectError): check FPI_SCHEMA_REGISTRY_URL and that the "
                    "registry is up", 1)


@pytest.mark.parametrize("args", EVERY_COMMAND, ids=" ".join)
def test_schema_missing(args: tuple[str, ...], tmp_path: Path) -> None:
    assert_one_line(run(args, tmp_path, FPI_AVRO_DIR="/nonexistent"), NO_SCHEMA, 2)


CONFIG_FAILURES = {
    "tls file missing": (
        {"FPI_KAFKA_SECURITY_PROTOCOL": "SSL", "FPI_KAFKA_SSL_CAFILE": "/nonexistent/ca.pem"},
        "FPI_KAFKA_SSL_CAFILE=/nonexistent/ca.pem: no such file; mount it there or correct the path",
    ),
    "sasl incomplete": (
        {"FPI_KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT", "FPI_KAFKA_SASL_USERNAME": "svc"},
        "FPI_KAFKA_SECURITY_PROTOCOL=SASL_PLAINTEXT needs FPI_KAFKA_SASL_PASSWORD: set it (from a secret for "
        "the password)",
    ),
    "invalid value": (
        {"FPI_TOPIC_PARTITIONS": "four"},
        "invalid FPI_TOPIC_PARTITIONS='four': Input should be a valid integer, unable to parse string as an "
        "integer; correct it, or unset it for the default",
    ),
    "invalid choice": (
        {"FPI_KAFKA_SASL_PASSWORD": "hunter2", "FPI_KAFKA_SECURITY_PROTOCOL": "TLS"},
        "invalid FPI_KAFKA_SECURITY_PROTOCOL='TLS': Input should be 'PLAINTEXT', 'SSL', 'SASL_PLAINTEXT' or "
        "'SASL_SSL'; correct it, or unset it for the default",
    ),
    "unsupported store": (
        {"FPI_STORE": "redis://cache:6379"},
        "FPI_STORE='redis://cache:6379' is not supported: use memory:// (local, tests) or rocksdb:// (production)",
    ),
    "invalid url": (
        {"FPI_ITERABLE_BASE_URL": "https://user:pw@api.iterable.com:port"},
        "FPI_ITERABLE_BASE_URL='https://***@api.iterable.com:port' is not a valid URL: use "
        "http(s)://host[:port][/path]",
    ),
    "invalid bootstrap": (
        {"FPI_KAFKA_BOOTSTRAP": "kafka://broker"},
        "FPI_KAFKA_BOOTSTRAP='kafka://broker' is not a host:port list: use e.g. broker-1:9092,broker-2:9092",
    ),
}


@pytest.mark.parametrize("args", [*EVERY_COMMAND, ("dev",)], ids=" ".join)
@pytest.mark.parametrize("failure", sorted(CONFIG_FAILURES))
def test_configuration(failure: str, args: tuple[str, ...], tmp_path: Path) -> None:
    settings, line = CONFIG_FAILURES[failure]
    result = run(args, tmp_path, **settings)
    assert_one_line(result, f"error [config_invalid]: {line}", 2)
    assert "hunter2" not in result.stderr


def test_tls_file_not_pem(tmp_path: Path) -> None:
    (tmp_path / "ca.pem").write_text("not a certificate\n")
    result = run(("produce", SAMPLE), tmp_path, FPI_KAFKA_SECURITY_PROTOCOL="SSL",
                 FPI_KAFKA_SSL_CAFILE=str(tmp_path / "ca.pem"))
    assert_one_line(result, f"error [config_invalid]: cannot use the TLS files (FPI_KAFKA_SSL_CAFILE="
                    f"{tmp_path / 'ca.pem'}): NO_CERTIFICATE_OR_CRL_FOUND; give PEM files this user can read, "
                    "and a key that matches the certificate", 2)


def test_explain_reads_fpi_settings(tmp_path: Path) -> None:
    result = run(("explain", "-"), tmp_path, FPI_PROJECT_TYPE="hybrid-ish")
    assert_one_line(result, "error [config_invalid]: invalid FPI_PROJECT_TYPE='hybrid-ish': Input should be "
                    "'email', 'userId' or 'hybrid'; correct it, or unset it for the default", 2)


class TestWorker:
    """The worker's start-up failures are one JSON log record on stdout."""

    def record(self, result: subprocess.CompletedProcess[str], status: int) -> dict[str, str]:
        assert (result.returncode, result.stderr) == (status, "")
        (line,) = result.stdout.splitlines()
        record: dict[str, str] = json.loads(line)
        assert (record["level"], record["logger"]) == ("error", "streams.worker")
        return record

    def test_configuration(self, tmp_path: Path) -> None:
        record = self.record(run(("worker",), tmp_path, FPI_STORE="redis://cache"), 2)
        assert record["reason"] == "config_invalid"
        assert record["message"] == CONFIG_FAILURES["unsupported store"][1].replace("cache:6379", "cache")

    def test_schema_missing(self, tmp_path: Path) -> None:
        record = self.record(run(("worker",), tmp_path, FPI_AVRO_DIR="/nonexistent"), 2)
        assert record["message"] == NO_SCHEMA.removeprefix("error [config_invalid]: ")

    @pytest.mark.integration
    def test_broker_unreachable(self, tmp_path: Path) -> None:
        record = self.record(run(("worker",), tmp_path, FPI_KAFKA_BOOTSTRAP=UNREACHABLE), 1)
        assert (record["reason"], record["message"]) == ("broker_unavailable",
                                                         BROKER_DOWN.removeprefix("error [broker_unavailable]: "))

    def test_text_format(self, tmp_path: Path) -> None:
        result = run(("worker",), tmp_path, FPI_AVRO_DIR="/nonexistent", FPI_LOG_FORMAT="text")
        assert_one_line(result, NO_SCHEMA, 2)


async def topics(bootstrap: str) -> set[str]:
    from aiokafka.admin import AIOKafkaAdminClient

    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        return set(await admin.list_topics())
    finally:
        await admin.close()


@pytest.mark.integration
async def test_worker_creates_no_topic_before_a_configuration_error(kafka_bootstrap: str, tmp_path: Path) -> None:
    names = {f"FPI_{name}_TOPIC": unique(f"cfg-{name.lower()}") for name in
             ("SOURCE", "REPLAY", "BY_PERSON", "REQUESTS", "DEAD_LETTER")}
    app_id = unique("cfg")
    result = run(("worker",), tmp_path, FPI_KAFKA_BOOTSTRAP=kafka_bootstrap, FPI_APP_ID=app_id,
                 FPI_AVRO_DIR="/nonexistent", **names)
    assert result.returncode == 2, result.stdout
    assert not {t for t in await topics(kafka_bootstrap) if t in names.values() or t.startswith(app_id)}


@pytest.mark.integration
async def test_dead_letters_list_fails_on_records_it_cannot_decode(kafka_bootstrap: str, tmp_path: Path) -> None:
    from aiokafka import AIOKafkaProducer

    topic = unique("not-dead-letters")
    producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap)
    await producer.start()
    try:
        for value in (b"\x00garbage", b"{}"):
            await producer.send_and_wait(topic, value, partition=0)
    finally:
        await producer.stop()
    result = run(("dead-letters", "list"), tmp_path, FPI_KAFKA_BOOTSTRAP=kafka_bootstrap,
                 FPI_DEAD_LETTER_TOPIC=topic)
    assert result.returncode == 1
    assert f"{topic}: 2 records, 2 matching" in result.stdout
    assert result.stderr.startswith(f"error [undecodable]: 2 of 2 records in {topic} could not be decoded as "
                                    "dead letters (at 0:0: ")
    assert result.stderr.endswith(": check that FPI_DEAD_LETTER_TOPIC is this processor's dead-letter topic and "
                                  "FPI_AVRO_DIR its schemas\n")
    assert result.stderr.count("\n") == 1
