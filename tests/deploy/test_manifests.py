"""The deployment files validate offline (dev/validate-deploy), and the validation rejects broken ones.

dev/validate-deploy installs its tools on first use (a cached virtualenv, kustomize via Go, the KEDA
and Prometheus Operator modules for their CRDs), so the first run on a fresh machine takes about a
minute and a half; later runs take about a second each.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "dev" / "validate-deploy"

pytestmark = pytest.mark.timeout(900)


def run(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(SCRIPT), *map(str, args)], cwd=ROOT, capture_output=True, text=True,
                          timeout=850, check=False)


@pytest.fixture(scope="module", autouse=True)
def _tools() -> None:
    result = run("--install-only")
    assert result.returncode == 0, result.stderr


@pytest.fixture
def copy(tmp_path: Path) -> Path:
    """A scratch copy of the deployment files to break."""
    shutil.copytree(ROOT / "k8s", tmp_path / "k8s")
    for name in ("docker-compose.yml", "Dockerfile"):
        shutil.copy(ROOT / name, tmp_path / name)
    return tmp_path


def edit(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text, f"{old!r} not in {path}"
    path.write_text(text.replace(old, new, 1))


class TestRepositoryFiles:
    def test_everything_validates(self) -> None:
        result = run()
        assert result.returncode == 0, result.stdout + result.stderr
        assert "validate: all valid" in result.stdout
        for overlay in ("dev", "prod", "prod-hpa"):
            assert f"kustomize build k8s/overlays/{overlay}: ok" in result.stderr
        for provider in ("confluent-cloud", "msk-scram", "strimzi", "aiven"):
            assert f"kustomize build prod+kafka-{provider}: ok" in result.stderr
        assert "docker-compose.yml" in result.stdout

    @pytest.mark.parametrize(("overlay", "kinds"), [
        ("dev", {"Deployment", "ConfigMap", "Secret", "NetworkPolicy", "PodDisruptionBudget", "Job"}),
        ("prod", {"StatefulSet", "ScaledObject", "PrometheusRule", "ServiceMonitor", "NetworkPolicy",
                  "PodDisruptionBudget", "Job"}),
        ("prod-hpa", {"StatefulSet", "HorizontalPodAutoscaler"}),
    ])
    def test_overlay_renders_expected_kinds(self, overlay: str, kinds: set[str]) -> None:
        cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
        kustomize = next((cache / "freshpaint-iterable" / "deploy-tools").glob("kustomize-*/kustomize"))
        rendered = subprocess.run([str(kustomize), "build", f"k8s/overlays/{overlay}"], cwd=ROOT,
                                  capture_output=True, text=True, check=True).stdout
        found = {line.removeprefix("kind: ") for line in rendered.splitlines() if line.startswith("kind: ")}
        assert kinds <= found
        if overlay == "prod-hpa":
            assert "ScaledObject" not in found
        assert "FPI_ITERABLE_API_KEY:" not in rendered  # never a ConfigMap key


# (file to break, old text, new text, message expected on stderr)
BROKEN = {
    "unknown field in a pod spec": (
        "k8s/components/worker/pod-template.yaml", "terminationGracePeriodSeconds: 120",
        "terminationGracePeriodSecond: 120", "'terminationGracePeriodSecond' was unexpected"),
    "wrong type": (
        "k8s/overlays/prod/statefulset.yaml", "replicas: 3", "replicas: three", "is not of type 'integer'"),
    "KEDA field of the wrong type": (
        "k8s/overlays/prod/scaledobject.yaml", "pollingInterval: 30", "pollingInterval: soon",
        "ScaledObject/freshpaint-iterable"),
    "autoscaler on faust's group, not the source reader's": (
        "k8s/overlays/prod/scaledobject.yaml", "consumerGroup: freshpaint-iterable-source",
        "consumerGroup: freshpaint-iterable", "KEDA consumerGroup 'freshpaint-iterable' is not the group"),
    "autoscaler beyond the partitions": (
        "k8s/overlays/prod/scaledobject.yaml", "maxReplicaCount: 12", "maxReplicaCount: 20",
        "max replicas 20 != FPI_TOPIC_PARTITIONS 12"),
    "API key in the ConfigMap": (
        "k8s/base/settings.env", "FPI_ITERABLE_REGION=us", "FPI_ITERABLE_REGION=us\nFPI_ITERABLE_API_KEY=abc",
        "use a Secret"),
    "writable root filesystem": (
        "k8s/components/worker/pod-template.yaml", "readOnlyRootFilesystem: true",
        "readOnlyRootFilesystem: false", "readOnlyRootFilesystem must be true"),
    "missing resource file": (
        "k8s/overlays/dev/kustomization.yaml", "  - emulator.yaml", "  - emulator.yaml\n  - missing.yaml",
        "kustomize build failed"),
    "two scrape paths (annotations and a ServiceMonitor)": (
        "k8s/overlays/prod/kustomization.yaml", "  - ../../monitoring\n",
        "  - ../../monitoring\n  - ../../components/scrape-annotations\n", "scraped twice"),
    "CA bundle on no mounted volume": (
        "k8s/components/worker/pod-template.yaml", "mountPath: /etc/freshpaint-iterable-ca",
        "mountPath: /etc/kafka-ca", "FPI_KAFKA_SSL_CAFILE=/etc/freshpaint-iterable-ca/ca.crt is on no volume"),
    "KEDA trigger with another SASL mechanism than the worker": (
        "k8s/overlays/prod/scaledobject.yaml", "sasl: scram_sha512", "sasl: scram_sha256",
        "KEDA sasl 'scram_sha256' does not fit"),
    "KEDA without the worker's CA": (
        "k8s/overlays/prod/scaledobject.yaml", "    - parameter: ca\n", "    - parameter: cert\n",
        "KEDA's ca and FPI_KAFKA_SSL_CAFILE disagree"),
    "egress blocks the brokers' port": (
        "k8s/base/networkpolicy.yaml", "          port: 9093", "          port: 9094",
        "no egress rule allows port 9093"),
    "PrometheusRule with an unknown field": (
        "k8s/monitoring/prometheusrule.yaml", "      interval: 30s", "      intervall: 30s",
        "PrometheusRule/freshpaint-iterable"),
}


class TestBrokenManifests:
    @pytest.mark.parametrize("case", list(BROKEN))
    def test_overlay_is_rejected(self, copy: Path, case: str) -> None:
        path, old, new, message = BROKEN[case]
        edit(copy / path, old, new)
        overlay = "dev" if "/dev/" in path or "settings.env" in path else "prod"
        result = run("--overlay", copy / "k8s" / "overlays" / overlay)
        assert result.returncode == 1, result.stdout + result.stderr
        assert message in result.stderr

    def test_rendered_manifest_is_rejected(self, tmp_path: Path) -> None:
        bad = tmp_path / "bad.yaml"
        bad.write_text("apiVersion: v1\nkind: Service\nmetadata:\n  name: x\nspec:\n  ports:\n"
                       "    - port: http-port\n")
        result = run("--manifests", bad)
        assert result.returncode == 1
        assert "Service/x" in result.stderr


BROKEN_OTHER = {
    "compose: bad healthcheck key": (
        "docker-compose.yml", "      start_period: 30s", "      start_periods: 30s", "--compose",
        "[compose-spec]"),
    "compose: no KRaft": (
        "docker-compose.yml", "KAFKA_PROCESS_ROLES", "KAFKA_PROCESS_ROLEZ", "--compose", "KRaft"),
    "compose: producer restarts": (
        "docker-compose.yml", "      - ./tests/data:/data:ro\n    restart: \"no\"",
        "      - ./tests/data:/data:ro\n    restart: always", "--compose", "one-shot"),
    "compose: producer without the registry": (
        "docker-compose.yml", ', "--registry-url", "http://registry:8080/apis/ccompat/v7"]', "]", "--compose",
        "--registry-url"),
    "compose: topics by hand": (
        "docker-compose.yml", 'command: ["topics", "create"]', 'command: ["topics", "list"]', "--compose",
        "topics create"),
    "Dockerfile: runs as root": ("Dockerfile", "USER 10001:10001", "USER root", "--dockerfile", "non-root"),
    "Dockerfile: no lock file": (
        "Dockerfile", "--constraint constraints.txt ", "", "--dockerfile", "constraints.txt"),
    "Dockerfile: schemas left out of the package": (
        "Dockerfile", "COPY avro ./avro\n", "", "--dockerfile", "avro/ and setup.py"),
    "Dockerfile: depends on FPI_AVRO_DIR": (
        "Dockerfile", "FPI_STORE=rocksdb:// \\\n", "FPI_STORE=rocksdb:// \\\n    FPI_AVRO_DIR=/app/avro \\\n",
        "--dockerfile", "must not set FPI_AVRO_DIR"),
    "Dockerfile: no CA build argument": (
        "Dockerfile", 'ARG EXTRA_CA_CERTS=""', 'ARG EXTRA_CERTS=""', "--dockerfile", "EXTRA_CA_CERTS"),
    "rules: unknown series": (
        "k8s/monitoring/prometheusrule.yaml", "max by (namespace) (fpi_sender_paused)",
        "max by (namespace) (fpi_sender_pausd)", "--rules", "fpi_sender_pausd is not defined"),
    "rules: PromQL syntax": (
        "k8s/monitoring/prometheusrule.yaml", "increase(fpi_dead_letters_total[15m])",
        "increase(fpi_dead_letters_total[15m]", "--rules", "does not parse"),
    "rules: runbook_url to no section": (
        "k8s/monitoring/prometheusrule.yaml", "operations.md#freshpaintiterablenoworker", "operations.md#nowhere",
        "--rules", "names no section of docs/operations.md"),
    "rules: alert without a runbook": (
        "k8s/monitoring/prometheusrule.yaml",
        "            runbook_url: https://example.com/freshpaint-iterable/docs/operations.md"
        "#freshpaintiterablenoworker\n", "", "--rules", "needs a runbook_url annotation"),
    "dashboard: an empty row": (
        "k8s/monitoring/dashboards/freshpaint-iterable.json", '"type": "row",\n      "title": "Iterable"',
        '"type": "row",\n      "title": "Nothing",\n      "gridPos": {"h": 1, "w": 24, "x": 0, "y": 25}\n'
        '    },\n    {\n      "id": 99,\n      "type": "row",\n      "title": "Iterable"',
        "--dashboard", "empty row"),
    "dashboard: unknown series": (
        "k8s/monitoring/dashboards/freshpaint-iterable.json", "fpi_events_in_total", "fpi_events_total",
        "--dashboard", "fpi_events_total is not defined"),
}


class TestBrokenOtherFiles:
    @pytest.mark.parametrize("case", list(BROKEN_OTHER))
    def test_file_is_rejected(self, copy: Path, case: str) -> None:
        path, old, new, flag, message = BROKEN_OTHER[case]
        edit(copy / path, old, new)
        result = run(flag, copy / path)
        assert result.returncode == 1, result.stdout + result.stderr
        assert message in result.stderr

    @pytest.mark.parametrize(("flag", "path"), [
        ("--compose", "docker-compose.yml"), ("--dockerfile", "Dockerfile"),
        ("--rules", "k8s/monitoring/prometheusrule.yaml"),
        ("--dashboard", "k8s/monitoring/dashboards/freshpaint-iterable.json"),
    ])
    def test_unbroken_copy_passes(self, copy: Path, flag: str, path: str) -> None:
        result = run(flag, copy / path)
        assert result.returncode == 0, result.stderr


class TestComposeKey:
    def test_hard_coded_worker_key_is_rejected(self, copy: Path) -> None:
        edit(copy / "docker-compose.yml", "${FPI_ITERABLE_API_KEY:-emulator-key}", "sk-live-123")
        result = run("--compose", copy / "docker-compose.yml")
        assert result.returncode == 1
        assert "FPI_ITERABLE_API_KEY must come from the environment" in result.stderr
