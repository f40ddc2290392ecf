"""The processor against a real TLS + SASL/SCRAM broker (dev/kafka/broker.sh, KAFKA_SECURE=1).

The broker's CA and certificates come from openssl and its SCRAM users from Kafka's own storage
tool; the clients reach it only through the SASL_SSL listener (or the mutual-TLS one), as a
managed Kafka would be reached. The sample must reach the emulator exactly as on the plain broker,
and each wrong setting must end a command with one line naming the FPI_ variable to fix.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from streams.commands.check import run_checks
from streams.emulator import EmulatorConfig, EmulatorServer
from streams.mapping import MappingConfig
from streams.model import ProjectType
from tests.e2e.test_sample_pipeline import SAMPLE, assert_no_secrets_or_emails, expected_outcome
from tests.integration.conftest import SecureKafka
from tests.support import EMULATOR_KEY, REPO, WorkerProcess, settings_of, unique, wait_for, worker_env

pytestmark = [pytest.mark.integration, pytest.mark.e2e]


def cli(args: list[str], env: dict[str, str], timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "streams", *args], env={**os.environ, "COLUMNS": "250", **env},
                          capture_output=True, text=True, timeout=timeout, cwd=REPO)


async def test_worker_and_commands_end_to_end_over_sasl_ssl(secure_kafka: SecureKafka, tmp_path: Path) -> None:
    lines = SAMPLE.read_text().splitlines()
    event_ids, purchase_ids, dead, valid = expected_outcome(lines, MappingConfig(project_type=ProjectType.EMAIL))
    with EmulatorServer(EmulatorConfig(api_keys=(EMULATOR_KEY,))) as emulator:
        env = worker_env(secure_kafka.sasl_ssl, emulator.url, tmp_path / "data", FPI_TOPIC_PARTITIONS="4",
                         **secure_kafka.env("SCRAM-SHA-512"))
        worker = WorkerProcess(env, tmp_path / "worker.log").start()
        outputs: list[str] = []
        try:
            sample = tmp_path / "sample.jsonl"
            sample.write_text("\n".join(lines) + "\n")
            # produce authenticates with the other SCRAM mechanism the user was created for
            produced = cli(["produce", str(sample)], {**env, "FPI_KAFKA_SASL_MECHANISM": "SCRAM-SHA-256"})
            outputs.append(produced.stdout + produced.stderr)
            # the sample's invalid lines are skipped and make produce exit 1; the valid ones are all sent
            assert f"produced {valid} events" in produced.stdout, produced.stderr

            def delivered() -> bool:
                project = emulator.state.project
                return set(project.events) >= event_ids and set(project.purchases) >= purchase_ids

            await asyncio.to_thread(wait_for, delivered, 120, what="sample events in the emulator")
            project = emulator.state.project
            assert set(project.events) == event_ids and set(project.purchases) == purchase_ids

            def all_dead_letters() -> subprocess.CompletedProcess[str] | None:
                listed = cli(["dead-letters", "list"], env)
                return listed if f"{sum(dead.values())} matching" in listed.stdout else None

            listed = await asyncio.to_thread(wait_for, all_dead_letters, 60, 1, what="the dead letters")
            outputs.append(listed.stdout + listed.stderr)
            assert listed.returncode == 0, listed.stderr
            for reason, count in dead.items():
                assert f"  {reason}: {count}\n" in listed.stdout

            received = project.counters.events_received
            replayed = cli(["replay", "--from-time", "1h", "--type", "track,page"], env)
            outputs.append(replayed.stdout + replayed.stderr)
            assert replayed.returncode == 0, replayed.stderr
            assert f"produced to {env['FPI_REPLAY_TOPIC']}" in replayed.stderr  # the summary goes to stderr
            # the worker reads the replay topic over SASL_SSL too: the events arrive again, same ids
            await asyncio.to_thread(wait_for, lambda: project.counters.events_received > received, 60,
                                    what="replayed events in the emulator")
            assert set(project.events) == event_ids

            checked = cli(["check"], env)
            outputs.append(checked.stdout + checked.stderr)
            assert checked.returncode == 0, checked.stdout + checked.stderr
            assert f"connected to {secure_kafka.sasl_ssl}" in checked.stdout
        except BaseException:
            print(worker.log_text()[-6000:])
            raise
        finally:
            worker.stop()
    assert_no_secrets_or_emails(worker.log_text(), lines)
    for text in [worker.log_text(), *outputs]:
        assert secure_kafka.password not in text


async def test_mutual_tls(secure_kafka: SecureKafka) -> None:
    app_id = unique("mtls")
    tls = secure_kafka.tls_dir
    settings = settings_of({"FPI_KAFKA_BOOTSTRAP": secure_kafka.mutual_tls, "FPI_KAFKA_SECURITY_PROTOCOL": "SSL",
                            "FPI_KAFKA_SSL_CAFILE": str(tls / "ca.pem"),
                            "FPI_KAFKA_SSL_CERTFILE": str(tls / "client.pem"),
                            "FPI_KAFKA_SSL_KEYFILE": str(tls / "client-key.pem"), "FPI_APP_ID": app_id})
    results = {result.name: result for result in await run_checks(settings)}
    assert results["kafka"].status == "pass", results["kafka"]
    assert results[f"topic {app_id}-by-device"].status == "warn"  # connected and listed the topics


def one_error_line(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 1, result.stdout + result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    return lines[0]


@pytest.mark.parametrize("command", [["produce", "-"], ["dead-letters", "list"]])
def test_wrong_password_is_one_line(secure_kafka: SecureKafka, command: list[str]) -> None:
    env = {**secure_kafka.env(), "FPI_KAFKA_SASL_PASSWORD": "not-the-password"}
    line = one_error_line(cli(command, env))
    assert line == (f"error [broker_unavailable]: Kafka at {secure_kafka.sasl_ssl} refused the SASL credentials "
                    f"of user '{secure_kafka.username}' (SCRAM-SHA-512): check FPI_KAFKA_SASL_USERNAME and "
                    "FPI_KAFKA_SASL_PASSWORD, and that FPI_KAFKA_SASL_MECHANISM is the mechanism the user was "
                    "created for")
    assert "not-the-password" not in line


def test_unknown_ca_is_one_line(secure_kafka: SecureKafka, tmp_path: Path) -> None:
    other_ca = tmp_path / "other-ca.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=other",
                    "-keyout", str(tmp_path / "other-key.pem"), "-out", str(other_ca)],
                   check=True, capture_output=True)
    for cafile in (str(other_ca), ""):  # another CA, and none (the system's CAs)
        env = {**secure_kafka.env(), "FPI_KAFKA_SSL_CAFILE": cafile}
        line = one_error_line(cli(["produce", "-"], env))
        assert line.startswith(f"error [broker_unavailable]: Kafka at {secure_kafka.sasl_ssl} presented a TLS "
                               "certificate this client does not trust (")
        assert line.endswith("): set FPI_KAFKA_SSL_CAFILE to the CA bundle that signed the brokers' certificates")


def test_plaintext_client_on_the_tls_port_is_one_line(secure_kafka: SecureKafka) -> None:
    env = {"FPI_KAFKA_BOOTSTRAP": secure_kafka.sasl_ssl}
    assert one_error_line(cli(["dead-letters", "list"], env)) == (
        f"error [broker_unavailable]: Kafka at {secure_kafka.sasl_ssl} speaks TLS, but "
        "FPI_KAFKA_SECURITY_PROTOCOL=PLAINTEXT: set it to SSL or SASL_SSL and FPI_KAFKA_SSL_CAFILE to the "
        "brokers' CA bundle")


def test_missing_client_certificate_is_one_line(secure_kafka: SecureKafka) -> None:
    env = {"FPI_KAFKA_BOOTSTRAP": secure_kafka.mutual_tls, "FPI_KAFKA_SECURITY_PROTOCOL": "SSL",
           "FPI_KAFKA_SSL_CAFILE": str(secure_kafka.tls_dir / "ca.pem")}
    assert one_error_line(cli(["produce", "-"], env)) == (
        f"error [broker_unavailable]: Kafka at {secure_kafka.mutual_tls} requires a client certificate (mutual "
        "TLS): set FPI_KAFKA_SSL_CERTFILE and FPI_KAFKA_SSL_KEYFILE to a certificate signed by a CA the brokers "
        "trust")


def test_worker_with_a_wrong_password_says_so_and_exits_1(secure_kafka: SecureKafka, tmp_path: Path) -> None:
    env = worker_env(secure_kafka.sasl_ssl, "http://127.0.0.1:9", tmp_path / "data",
                     **{**secure_kafka.env(), "FPI_KAFKA_SASL_PASSWORD": "not-the-password"})
    result = cli(["worker"], {**env, "FPI_LOG_FORMAT": "json"})
    assert result.returncode == 1, result.stdout + result.stderr
    [line] = result.stdout.splitlines()  # one JSON log record, nothing else
    record = json.loads(line)
    assert (record["level"], record["reason"]) == ("error", "broker_unavailable")
    assert "refused the SASL credentials" in record["message"]
    assert "not-the-password" not in result.stdout + result.stderr
