"""The chart's several-projects values (issue 20 part 3): the routing file mounted beside the transformations,
FPI_PROJECTS_FILE pointing at it, and each project's key variable from its own Secret."""

from __future__ import annotations

from pathlib import Path

import pytest

from streams.mapping import MappingConfig
from streams.projects import load_routing
from tests.deploy.test_chart import CHART, docs, helm_template, worker

pytestmark = pytest.mark.timeout(900)

ROUTING = """[projects.staging]
values = ["env-456"]
api_key_env = "ITERABLE_KEY_STAGING"
project_type = "userId"
"""


def test_the_routing_file_and_the_key_secrets_reach_the_worker(tmp_path: Path) -> None:
    (tmp_path / "projects.toml").write_text(ROUTING)
    result = helm_template(CHART, "prod", "--set-file", f"projects.routing={tmp_path / 'projects.toml'}",
                           "--set", "projects.keySecrets.ITERABLE_KEY_STAGING=freshpaint-iterable-staging")
    assert result.returncode == 0, result.stderr
    objects = docs(result.stdout)
    container = worker(objects)["spec"]["template"]["spec"]["containers"][0]
    env = {e["name"]: e for e in container["env"]}
    assert env["FPI_PROJECTS_FILE"]["value"] == "/etc/freshpaint-iterable/projects.toml"
    assert env["ITERABLE_KEY_STAGING"]["valueFrom"] == {
        "secretKeyRef": {"name": "freshpaint-iterable-staging", "key": "api-key"}}
    mounted = next(d for d in objects
                   if d["kind"] == "ConfigMap" and d["metadata"]["name"].endswith("-transformations"))
    (tmp_path / "mounted.toml").write_text(mounted["data"]["projects.toml"])
    routing = load_routing(tmp_path / "mounted.toml", MappingConfig())
    assert routing.get("staging").api_key_env == "ITERABLE_KEY_STAGING"
    assert {"mountPath": "/etc/freshpaint-iterable", "name": "transformations", "readOnly": True} in \
        container["volumeMounts"]


def test_without_a_routing_file_nothing_is_added() -> None:
    objects = docs(helm_template(CHART, "prod").stdout)
    env = {e["name"] for e in worker(objects)["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert "FPI_PROJECTS_FILE" not in env
