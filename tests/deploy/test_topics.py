"""The topics Job (k8s/base/topics-job.yaml) creates every topic the worker needs, as the worker would.

The Job's script runs here with a stand-in for kafka-topics.sh that records its arguments, so the test
needs no broker: the topics, partitions and cleanup policies it asks for must be those of
``streams.topics.worker_topics`` for the same settings, and the client.properties it writes for a
SASL_SSL cluster must carry the worker's mechanism, credentials and CA bundle.
"""

from __future__ import annotations

import os
import shlex
import subprocess
from pathlib import Path

import pytest
import yaml

from streams.settings import Settings
from streams.topics import worker_topics

ROOT = Path(__file__).resolve().parents[2]
JOB = ROOT / "k8s" / "base" / "topics-job.yaml"
KAFKA_TOPICS = "/opt/kafka/bin/kafka-topics.sh"


def base_settings() -> dict[str, str]:
    lines = (ROOT / "k8s" / "base" / "settings.env").read_text().splitlines()
    return dict(line.split("=", 1) for line in lines if line and not line.startswith("#"))


def job_script() -> str:
    job = yaml.safe_load(JOB.read_text())
    command = job["spec"]["template"]["spec"]["containers"][0]["command"]
    assert command[:2] == ["/bin/bash", "-ec"]
    return str(command[2])


def run_job(tmp_path: Path, env: dict[str, str], script: str | None = None) -> list[list[str]]:
    """The kafka-topics.sh calls the Job's script makes with ``env``, one argument list each."""
    log = tmp_path / "calls"
    stub = tmp_path / "kafka-topics.sh"
    stub.write_text(f'#!/bin/bash\nprintf "%q " "$@" >>{shlex.quote(str(log))}\necho >>{shlex.quote(str(log))}\n')
    stub.chmod(0o755)
    text = (script or job_script()).replace(KAFKA_TOPICS, str(stub)).replace("/tmp/client.properties",
                                                                            str(tmp_path / "client.properties"))
    subprocess.run(["/bin/bash", "-ec", text], env={"PATH": os.environ["PATH"], **env}, check=True,
                   capture_output=True, text=True)
    return [shlex.split(line) for line in log.read_text().splitlines()]


def created(calls: list[list[str]]) -> dict[str, tuple[int, dict[str, str]]]:
    """topic -> (partitions, configs) of every --create call."""
    found = {}
    for args in calls:
        assert "--create" in args and "--if-not-exists" in args, args
        configs = dict(args[i + 1].split("=", 1) for i, arg in enumerate(args) if arg == "--config")
        found[args[args.index("--topic") + 1]] = (int(args[args.index("--partitions") + 1]), configs)
    return found


class TestTopicsJob:
    @pytest.mark.parametrize("overrides", [
        {},
        {"FPI_APP_ID": "fpi-prod", "FPI_REPLAY_TOPIC": "events.replay", "FPI_TOPIC_PARTITIONS": "12"},
    ])
    def test_creates_every_worker_topic(self, tmp_path: Path, overrides: dict[str, str]) -> None:
        env = {**base_settings(), **overrides}
        topics = created(run_job(tmp_path, env))
        settings = Settings(**{name.removeprefix("FPI_").lower(): value for name, value in env.items()})
        expected = {spec.name: (spec.partitions, "compact" if spec.compacted else "delete")
                    for spec in worker_topics(settings)}
        assert {name: (n, configs["cleanup.policy"]) for name, (n, configs) in topics.items()} == expected
        assert settings.replay_topic in topics
        assert topics[settings.dead_letter_topic][1]["retention.ms"] == str(30 * 24 * 3600 * 1000)

    def test_sasl_ssl_client_properties(self, tmp_path: Path) -> None:
        env = {**base_settings(), "FPI_KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
               "FPI_KAFKA_SASL_MECHANISM": "SCRAM-SHA-512", "FPI_KAFKA_SASL_USERNAME": "fpi",
               "FPI_KAFKA_SASL_PASSWORD": 'p"a\\ss', "FPI_KAFKA_SSL_CAFILE": "/etc/freshpaint-iterable-ca/ca.crt"}
        calls = run_job(tmp_path, env)
        assert all(args[args.index("--command-config") + 1] == str(tmp_path / "client.properties")
                   for args in calls)
        props = (tmp_path / "client.properties").read_text().splitlines()
        assert props == [
            "security.protocol=SASL_SSL",
            "sasl.mechanism=SCRAM-SHA-512",
            'sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required '
            'username="fpi" password="p\\"a\\\\ss";',
            "ssl.truststore.type=PEM",
            "ssl.truststore.location=/etc/freshpaint-iterable-ca/ca.crt",
        ]

    def test_plain_mechanism_and_no_ca(self, tmp_path: Path) -> None:
        env = {**base_settings(), "FPI_KAFKA_SECURITY_PROTOCOL": "SASL_SSL", "FPI_KAFKA_SASL_MECHANISM": "PLAIN",
               "FPI_KAFKA_SASL_USERNAME": "KEY", "FPI_KAFKA_SASL_PASSWORD": "SECRET"}
        run_job(tmp_path, env)
        props = (tmp_path / "client.properties").read_text()
        assert "PlainLoginModule required username=\"KEY\" password=\"SECRET\";" in props
        assert "truststore" not in props

    def test_a_topic_left_out_is_noticed(self, tmp_path: Path) -> None:
        script = job_script().replace('create "${FPI_REPLAY_TOPIC}" --config cleanup.policy=delete\n', "")
        topics = created(run_job(tmp_path, base_settings(), script))
        needed = {spec.name for spec in worker_topics(Settings())}
        assert needed - set(topics) == {"freshpaint.replay"}
