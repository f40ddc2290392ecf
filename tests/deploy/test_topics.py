"""The topics Job (k8s/base/topics-job.yaml) provisions what the worker needs, the way the worker connects.

It runs ``freshpaint-iterable topics create`` (tests/integration/test_check.py runs that command against a
broker and then a worker with FPI_CREATE_TOPICS=false); these tests hold the Job to the worker's image,
settings, credentials and CA bundle, and the base settings to the full topic list (the replay topic
included, which the Job left out before).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from streams.settings import Settings
from streams.topics import worker_topics

ROOT = Path(__file__).resolve().parents[2]
TOOLS = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "freshpaint-iterable" / "deploy-tools"


def base_settings() -> dict[str, str]:
    lines = (ROOT / "k8s" / "base" / "settings.env").read_text().splitlines()
    return dict(line.split("=", 1) for line in lines if line and not line.startswith("#"))


def rendered(overlay: str) -> list[dict[str, Any]]:
    kustomize = next(TOOLS.glob("kustomize-*/kustomize"), None)
    if kustomize is None:  # tests/deploy/test_manifests.py's fixture installs it; run it alone first
        subprocess.run([str(ROOT / "dev" / "validate-deploy"), "--install-only"], check=True, capture_output=True)
        kustomize = next(TOOLS.glob("kustomize-*/kustomize"))
    out = subprocess.run([str(kustomize), "build", f"k8s/overlays/{overlay}"], cwd=ROOT, capture_output=True,
                         text=True, check=True).stdout
    return [d for d in yaml.safe_load_all(out) if d]


def pod(objects: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    spec: dict[str, Any] = next(d for d in objects if d["kind"] == kind)["spec"]["template"]["spec"]
    return spec


class TestTopicsJob:
    @pytest.mark.parametrize("overlay", ["dev", "prod", "prod-hpa"])
    def test_runs_topics_create_as_the_worker_connects(self, overlay: str) -> None:
        objects = rendered(overlay)
        worker_pod = pod(objects, "StatefulSet" if overlay != "dev" else "Deployment")
        job_pod = pod(objects, "Job")
        worker, job = worker_pod["containers"][0], job_pod["containers"][0]
        assert job["image"] == worker["image"]
        assert job["args"] == ["topics", "create"]
        assert job["envFrom"] == worker["envFrom"]
        secret_env = {e["name"]: e["valueFrom"] for e in worker["env"] if e["name"].startswith("FPI_KAFKA_")}
        assert {e["name"]: e["valueFrom"] for e in job["env"]} == secret_env
        volumes = {v["name"]: v for v in worker_pod["volumes"]}
        for mount in job["volumeMounts"]:
            if mount["name"] != "tmp":
                assert mount in worker["volumeMounts"]
                assert next(v for v in job_pod["volumes"] if v["name"] == mount["name"]) == volumes[mount["name"]]

    def test_settings_name_every_topic(self) -> None:
        env = base_settings()
        names = {"FPI_SOURCE_TOPIC", "FPI_REPLAY_TOPIC", "FPI_BY_PERSON_TOPIC", "FPI_REQUESTS_TOPIC",
                 "FPI_DEAD_LETTER_TOPIC", "FPI_APP_ID", "FPI_TOPIC_PARTITIONS"}
        assert names <= set(env)

    def test_topics_list_of_the_base_settings(self) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith("FPI_")}
        env.update({k: v for k, v in base_settings().items() if k != "FPI_TRANSFORMATIONS_FILE"})
        out = subprocess.run([sys.executable, "-m", "streams", "topics", "list"], env=env, capture_output=True,
                             text=True, check=True).stdout
        listed = {line.split("\t")[0]: line.split("\t")[2] for line in out.splitlines()[1:]}
        settings = Settings(**{k.removeprefix("FPI_").lower(): v for k, v in base_settings().items()
                               if k != "FPI_TRANSFORMATIONS_FILE"})
        assert listed == {spec.name: spec.cleanup_policy for spec in worker_topics(settings)}
        assert "freshpaint.replay" in listed
        assert listed["freshpaint-iterable-identities-changelog"] == "compact"


class TestHeldChangelog:
    def test_listed_compacted_only_when_anonymous_events_are_held(self) -> None:
        def names(settings: Settings) -> dict[str, str]:
            return {spec.name: spec.cleanup_policy for spec in worker_topics(settings)}

        off = names(Settings(app_id="a", topic_partitions=6))
        on = worker_topics(Settings(app_id="a", topic_partitions=6, hold_anonymous_seconds=600))
        assert "a-held-changelog" not in off
        [held] = [spec for spec in on if spec.name == "a-held-changelog"]
        assert (held.cleanup_policy, held.partitions, held.exact) == ("compact", 6, True)


class TestCartsChangelog:
    def test_listed_compacted_only_when_carts_are_kept(self) -> None:
        off = {spec.name for spec in worker_topics(Settings(app_id="a", topic_partitions=6))}
        on = worker_topics(Settings(app_id="a", topic_partitions=6, carts=True))
        assert "a-carts-changelog" not in off
        [carts] = [spec for spec in on if spec.name == "a-carts-changelog"]
        assert (carts.cleanup_policy, carts.partitions, carts.exact) == ("compact", 6, True)


class TestDevicesChangelog:
    def test_listed_compacted_only_when_push_tokens_are_registered(self) -> None:
        off = {spec.name for spec in worker_topics(Settings(app_id="a", topic_partitions=6))}
        on = worker_topics(Settings(app_id="a", topic_partitions=6, push_app_name="com.example"))
        assert "a-devices-changelog" not in off
        [devices] = [spec for spec in on if spec.name == "a-devices-changelog"]
        assert (devices.cleanup_policy, devices.partitions, devices.exact) == ("compact", 6, True)

    def test_listed_compacted_only_when_a_subscription_trait_is_set(self) -> None:
        off = {spec.name for spec in worker_topics(Settings(app_id="a", topic_partitions=6))}
        on = worker_topics(Settings(app_id="a", topic_partitions=6, opt_out_traits={"email_opt_out": 12}))
        assert "a-subscriptions-changelog" not in off
        [entry] = [spec for spec in on if spec.name == "a-subscriptions-changelog"]
        assert (entry.cleanup_policy, entry.partitions, entry.exact) == ("compact", 6, True)
