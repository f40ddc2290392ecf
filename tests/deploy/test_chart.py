"""The Helm chart (charts/freshpaint-iterable) renders each values profile into what the kustomize overlay
of the same name deploys, and dev/validate-deploy rejects a broken chart.

Uses the helm and kustomize binaries dev/validate-deploy caches (its ``--install-only`` builds them).
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from streams.settings import Settings
from streams.source_reader import source_group

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "freshpaint-iterable"
SCRIPT = ROOT / "dev" / "validate-deploy"
TOOLS = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "freshpaint-iterable" / "deploy-tools"

pytestmark = pytest.mark.timeout(900)


@pytest.fixture(scope="module", autouse=True)
def _tools() -> None:
    result = subprocess.run([str(SCRIPT), "--install-only"], cwd=ROOT, capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr


def tool(name: str) -> str:
    return str(next(TOOLS.glob(f"{name}-*/{name}")))


def helm_template(chart: Path, profile: str, *extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([tool("helm"), "template", "freshpaint-iterable", str(chart), "--namespace",
                           "freshpaint-iterable", "--kube-version", "1.30.0", "-f",
                           str(chart / "ci" / f"{profile}-values.yaml"), *extra],
                          capture_output=True, text=True, check=False)


def docs(text: str) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(text) if d]


def kustomize(overlay: str) -> list[dict[str, Any]]:
    out = subprocess.run([tool("kustomize"), "build", f"k8s/overlays/{overlay}"], cwd=ROOT, capture_output=True,
                         text=True, check=True).stdout
    return docs(out)


def settings_of(objects: list[dict[str, Any]]) -> dict[str, str]:
    return next(d["data"] for d in objects if d["kind"] == "ConfigMap"
                and d["metadata"]["name"].startswith("freshpaint-iterable-settings"))


def worker(objects: list[dict[str, Any]]) -> dict[str, Any]:
    return next(d for d in objects if d["kind"] in ("Deployment", "StatefulSet")
                and d["metadata"]["name"] == "freshpaint-iterable")


@pytest.fixture
def chart_copy(tmp_path: Path) -> Path:
    shutil.copytree(CHART, tmp_path / "chart")
    return tmp_path / "chart"


class TestProfiles:
    @pytest.mark.parametrize("profile", ["dev", "prod", "prod-hpa"])
    def test_same_deployment_as_the_overlay(self, profile: str) -> None:
        result = helm_template(CHART, profile)
        assert result.returncode == 0, result.stderr
        chart, overlay = docs(result.stdout), kustomize(profile)
        assert {d["kind"] for d in chart} == {d["kind"] for d in overlay} - {"Namespace"}
        assert settings_of(chart) == settings_of(overlay)
        chart_worker, overlay_worker = worker(chart), worker(overlay)
        assert chart_worker["kind"] == overlay_worker["kind"]
        chart_pod = chart_worker["spec"]["template"]["spec"]
        overlay_pod = overlay_worker["spec"]["template"]["spec"]
        for key in ("securityContext", "terminationGracePeriodSeconds"):
            assert chart_pod[key] == overlay_pod[key]
        chart_env = {e["name"]: e.get("valueFrom") for e in chart_pod["containers"][0]["env"]}
        overlay_env = {e["name"]: e.get("valueFrom") for e in overlay_pod["containers"][0]["env"]}
        assert set(chart_env) == set(overlay_env) - {"POD_NAME"}
        assert chart_pod["containers"][0]["resources"] == overlay_pod["containers"][0]["resources"]
        mounts = {m["mountPath"] for m in chart_pod["containers"][0]["volumeMounts"]}
        if "FPI_KAFKA_SSL_CAFILE" in settings_of(chart):
            assert "/etc/freshpaint-iterable-ca" in mounts

    def test_topics_job_has_the_worker_settings(self) -> None:
        chart = docs(helm_template(CHART, "prod").stdout)
        job = next(d for d in chart if d["kind"] == "Job")
        container = job["spec"]["template"]["spec"]["containers"][0]
        assert container["args"] == ["topics", "create"]
        assert container["image"] == worker(chart)["spec"]["template"]["spec"]["containers"][0]["image"]
        env = {e["name"]: e.get("value") for e in container["env"] if "value" in e}
        settings = settings_of(chart)
        assert env == {k: v for k, v in settings.items() if k != "FPI_TRANSFORMATIONS_FILE"}
        assert env["FPI_REPLAY_TOPIC"] == "freshpaint.replay"
        assert {"FPI_KAFKA_SASL_USERNAME", "FPI_KAFKA_SASL_PASSWORD"} <= {e["name"] for e in container["env"]}


def reading_group(settings: dict[str, str]) -> str:
    """The consumer group whose members read the source topic, as the worker derives it (streams/app.py):
    the first stage's own group with the aiokafka reader, faust's group otherwise."""
    names = ("FPI_APP_ID", "FPI_SOURCE_READER", "FPI_SOURCE_KEYED_BY_DEVICE")
    parsed = Settings.model_validate({name.removeprefix("FPI_").lower(): settings[name]
                                      for name in names if name in settings})
    if parsed.source_reader == "aiokafka" and not parsed.source_keyed_by_device:
        return source_group(parsed.app_id)
    return parsed.app_id


def keda_group(objects: list[dict[str, Any]]) -> str:
    scaled = next(d for d in objects if d["kind"] == "ScaledObject")
    (trigger,) = scaled["spec"]["triggers"]
    return str(trigger["metadata"]["consumerGroup"])


class TestSourceGroup:
    """KEDA scales on the source topic's lag in the group that reads it: ``<FPI_APP_ID>-source`` with the
    aiokafka reader (the default), ``FPI_APP_ID`` with FPI_SOURCE_READER=faust or FPI_SOURCE_KEYED_BY_DEVICE."""

    @pytest.fixture(autouse=True)
    def _no_settings_from_the_environment(self, monkeypatch: pytest.MonkeyPatch) -> None:
        for name in ("FPI_APP_ID", "FPI_SOURCE_READER", "FPI_SOURCE_KEYED_BY_DEVICE"):
            monkeypatch.delenv(name, raising=False)

    @pytest.mark.parametrize(("extra", "group"), [
        ((), "freshpaint-iterable-source"),
        (("--set-string", "settings.FPI_SOURCE_READER=faust"), "freshpaint-iterable"),
        (("--set-string", "settings.FPI_SOURCE_KEYED_BY_DEVICE=true"), "freshpaint-iterable"),
        (("--set-string", "settings.FPI_SOURCE_READER=aiokafka,settings.FPI_SOURCE_KEYED_BY_DEVICE=false,"
          "settings.FPI_APP_ID=acme"), "acme-source"),
    ], ids=["default", "faust-reader", "keyed-by-device", "explicit-aiokafka"])
    def test_chart(self, extra: tuple[str, ...], group: str) -> None:
        result = helm_template(CHART, "prod", *extra)
        assert result.returncode == 0, result.stderr
        chart = docs(result.stdout)
        assert keda_group(chart) == group
        assert reading_group(settings_of(chart)) == group

    def test_chart_rejects_an_unknown_reader(self) -> None:
        result = helm_template(CHART, "prod", "--set-string", "settings.FPI_SOURCE_READER=kafka")
        assert result.returncode == 1
        assert "FPI_SOURCE_READER must be aiokafka or faust" in result.stderr

    def test_overlay(self) -> None:
        overlay = kustomize("prod")
        assert keda_group(overlay) == reading_group(settings_of(overlay)) == "freshpaint-iterable-source"


class TestCopies:
    """The chart cannot read files outside its folder, so it carries copies; they must not drift."""

    @pytest.mark.parametrize(("copy", "original"), [
        ("files/prometheusrule.yaml", "k8s/monitoring/prometheusrule.yaml"),
        ("files/dashboard.json", "k8s/monitoring/dashboards/freshpaint-iterable.json"),
    ])
    def test_same_file(self, copy: str, original: str) -> None:
        assert (CHART / copy).read_text() == (ROOT / original).read_text()


def validate_chart(chart: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(SCRIPT), "--chart", str(chart)], cwd=ROOT, capture_output=True, text=True,
                          check=False, timeout=850)


class TestBrokenChart:
    def test_unbroken_copy_passes(self, chart_copy: Path) -> None:
        result = validate_chart(chart_copy)
        assert result.returncode == 0, result.stderr
        assert result.stderr.count("helm lint + template") == 3

    @pytest.mark.parametrize(("path", "old", "new", "message"), [
        ("ci/prod-values.yaml", "monitoring: {serviceMonitor: true,", "monitoring: {podAnnotations: true, "
         "serviceMonitor: true,", "keep one scrape path"),
        ("templates/workload.yaml", "terminationGracePeriodSeconds: 120", "terminationGracePeriodSecond: 120",
         "'terminationGracePeriodSecond' was unexpected"),
        ("templates/autoscaling.yaml", "maxReplicaCount: {{ .Values.topics.partitions }}", "maxReplicaCount: 20",
         "max replicas 20 != FPI_TOPIC_PARTITIONS 12"),
        ("templates/workload.yaml", "mountPath: /etc/freshpaint-iterable-ca,", "mountPath: /etc/ca,",
         "is on no volume mounted in the worker"),
        ("Chart.yaml", "name: freshpaint-iterable", "name: Freshpaint_Iterable", "helm lint"),
    ])
    def test_is_rejected(self, chart_copy: Path, path: str, old: str, new: str, message: str) -> None:
        target = chart_copy / path
        assert old in target.read_text()
        target.write_text(target.read_text().replace(old, new, 1))
        result = validate_chart(chart_copy)
        assert result.returncode == 1, result.stdout + result.stderr
        assert message in result.stderr
