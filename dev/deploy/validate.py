"""Offline validation of the deployment files; run by dev/validate-deploy in its tools virtualenv.

Checks, without a cluster, a Docker engine or the internet:

* rendered Kubernetes manifests (``kustomize build`` output) against the Kubernetes JSON schemas
  bundled in the ``kubernetes-validate`` package (strict: unknown fields are errors), for each
  requested Kubernetes version; custom resources against the ``openAPIV3Schema`` of the CRDs given
  with ``--crd`` (KEDA and Prometheus Operator CRDs from the Go module cache); plus our own rules
  (security context, probes, resources, no secrets in ConfigMaps, autoscaler bound = partitions);
* the compose file against the compose-spec JSON schema vendored in ``check-jsonschema``, plus
  structural rules (services, health checks, the one-shot producer);
* Prometheus rules and Grafana dashboard queries: every expression must parse (``promql-parser``)
  and every ``fpi_*`` series it reads must be defined in streams/metrics.py.

Exit status 0 when everything is valid, 1 with one line per problem otherwise.
"""

from __future__ import annotations

import argparse
import importlib.resources
import json
import re
import sys
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jsonschema
import promql_parser
import yaml
from kubernetes_validate import utils as kv_utils
from referencing import Registry, Resource

__all__ = ["Problems", "main"]

POD_KINDS = {"Deployment", "StatefulSet", "DaemonSet", "Job", "CronJob", "ReplicaSet", "Pod"}
SECRET_SETTINGS = {"FPI_ITERABLE_API_KEY", "FPI_KAFKA_SASL_PASSWORD", "FPI_SCHEMA_REGISTRY_PASSWORD",
                   "FPI_SCHEMA_REGISTRY_USER_INFO", "FPI_SCHEMA_REGISTRY_TOKEN"}
FILE_SETTINGS = ("FPI_KAFKA_SSL_CAFILE", "FPI_KAFKA_SSL_CERTFILE", "FPI_KAFKA_SSL_KEYFILE",
                 "FPI_SCHEMA_REGISTRY_CAFILE", "FPI_TRANSFORMATIONS_FILE")
SCRAPE_ANNOTATION = "prometheus.io/scrape"
GRAFANA_VARS = re.compile(r"\$__(rate_interval|interval|range)|\$\{__(rate_interval|interval|range)\}")
OTHER_VARS = re.compile(r"\$\{?[A-Za-z_][A-Za-z0-9_]*\}?")


@dataclass
class Problems:
    items: list[str] = field(default_factory=list)

    def add(self, where: str, message: str) -> None:
        self.items.append(f"{where}: {message}")


# --- Kubernetes ------------------------------------------------------------------------------


class K8sSchemas:
    """Validators for built-in kinds (kubernetes-validate) and for CRDs, cached per (version, kind)."""

    def __init__(self, crd_files: Iterable[Path]) -> None:
        self._builtin: dict[tuple[str, str, str], jsonschema.protocols.Validator | None] = {}
        self._crds: dict[tuple[str, str], jsonschema.protocols.Validator] = {}
        self._definitions: dict[str, Registry] = {}
        for path in crd_files:
            for doc in yaml.safe_load_all(path.read_text()):
                if not doc or doc.get("kind") != "CustomResourceDefinition":
                    continue
                group = doc["spec"]["group"]
                kind = doc["spec"]["names"]["kind"]
                for version in doc["spec"]["versions"]:
                    schema = version.get("schema", {}).get("openAPIV3Schema")
                    if schema is not None:
                        self._crds[(f"{group}/{version['name']}", kind)] = jsonschema.Draft7Validator(
                            _crd_schema(schema))

    @property
    def crd_kinds(self) -> list[str]:
        return sorted(f"{kind} ({api})" for api, kind in self._crds)

    def validator(self, api_version: str, kind: str, k8s_version: str
                  ) -> jsonschema.protocols.Validator | None:
        crd = self._crds.get((api_version, kind))
        if crd is not None:
            return crd
        key = (k8s_version, api_version, kind)
        if key not in self._builtin:
            self._builtin[key] = self._load_builtin(api_version, kind, k8s_version)
        return self._builtin[key]

    def _load_builtin(self, api_version: str, kind: str, k8s_version: str
                      ) -> jsonschema.protocols.Validator | None:
        group_version = re.sub(r"^([^./]*)(?:\.[^/]*)?/", r"\1-", api_version)
        schema_dir = f"v{k8s_version}-local-strict"
        try:
            schema = kv_utils.schema_contents(
                f"kubernetes-json-schema/{schema_dir}/{kind.lower()}-{group_version}.json", k8s_version)
        except FileNotFoundError:
            return None
        if k8s_version not in self._definitions:
            definitions = kv_utils.schema_contents(
                f"kubernetes-json-schema/{schema_dir}/_definitions.json", k8s_version)
            self._definitions[k8s_version] = Resource.from_contents(definitions) @ Registry()
        registry = Resource.from_contents(schema) @ self._definitions[k8s_version]
        return jsonschema.Draft202012Validator(schema, registry=registry)


def _crd_schema(schema: dict[str, Any]) -> dict[str, Any]:
    """A CRD's structural schema as plain JSON schema (drop x-kubernetes-* keys it does not need)."""
    def clean(node: Any) -> Any:
        if isinstance(node, dict):
            out = {k: clean(v) for k, v in node.items() if not k.startswith("x-kubernetes-")}
            if node.get("x-kubernetes-int-or-string"):
                out.pop("type", None)
                out["anyOf"] = [{"type": "integer"}, {"type": "string"}]
            if node.get("x-kubernetes-preserve-unknown-fields"):
                out.pop("additionalProperties", None)
            elif out.get("type") == "object" and "properties" in out and "additionalProperties" not in out:
                # Kubernetes prunes unknown fields of structural schemas; treat them as typos.
                out["additionalProperties"] = False
            return out
        if isinstance(node, list):
            return [clean(v) for v in node]
        return node

    cleaned = clean(schema)
    props = cleaned.setdefault("properties", {})
    props.setdefault("apiVersion", {"type": "string"})
    props.setdefault("kind", {"type": "string"})
    props["metadata"] = {"type": "object"}
    return dict(cleaned)


def _available_k8s_versions() -> list[str]:
    return list(kv_utils.all_versions())


def _name(doc: dict[str, Any]) -> str:
    meta = doc.get("metadata") or {}
    return f"{doc.get('kind', '?')}/{meta.get('name', '?')}"


def _path(error: jsonschema.ValidationError) -> str:
    return ".".join(str(p) for p in error.absolute_path) or "(root)"


def validate_manifests(path: Path, schemas: K8sSchemas, k8s_versions: list[str], problems: Problems) -> int:
    text = path.read_text()
    try:
        docs = [d for d in yaml.safe_load_all(text) if d is not None]
    except yaml.YAMLError as exc:
        problems.add(str(path), f"not YAML: {exc}")
        return 0
    if not docs:
        problems.add(str(path), "no Kubernetes objects")
    for doc in docs:
        where = f"{path} {_name(doc)}"
        if not isinstance(doc, dict) or "apiVersion" not in doc or "kind" not in doc:
            problems.add(where, "not a Kubernetes object (apiVersion and kind are required)")
            continue
        for version in k8s_versions:
            validator = schemas.validator(doc["apiVersion"], doc["kind"], version)
            if validator is None:
                problems.add(where, f"no schema for {doc['apiVersion']} {doc['kind']} in Kubernetes "
                                    f"{version} nor in the CRDs ({', '.join(schemas.crd_kinds)})")
                break
            errors = sorted(validator.iter_errors(doc), key=lambda e: list(e.absolute_path))
            for error in errors[:10]:
                problems.add(f"{where} [k8s {version}]", f"{_path(error)}: {error.message}")
            if errors:
                break
    check_policies(path, docs, problems)
    return len(docs)


def _pod_spec(doc: dict[str, Any]) -> dict[str, Any] | None:
    kind = doc.get("kind")
    spec = doc.get("spec") or {}
    if kind == "Pod":
        return spec
    if kind == "CronJob":
        spec = (spec.get("jobTemplate") or {}).get("spec") or {}
    if kind in POD_KINDS:
        return ((spec.get("template") or {}).get("spec")) or {}
    return None


def check_policies(path: Path, docs: list[dict[str, Any]], problems: Problems) -> None:
    """Our own rules on top of the schemas."""
    partitions: int | None = None
    files = {name: value for doc in docs if doc.get("kind") == "ConfigMap"
             for name, value in (doc.get("data") or {}).items() if name in FILE_SETTINGS and value}
    monitors = [_name(doc) for doc in docs if doc.get("kind") == "ServiceMonitor"]
    for doc in docs:
        where = f"{path} {_name(doc)}"
        if doc.get("kind") == "ConfigMap":
            leaked = SECRET_SETTINGS & set(doc.get("data") or {})
            if leaked:
                problems.add(where, f"secret setting(s) {sorted(leaked)} in a ConfigMap; use a Secret")
            value = (doc.get("data") or {}).get("FPI_TOPIC_PARTITIONS")
            if value is not None:
                partitions = int(value)
        pod = _pod_spec(doc)
        if pod is None:
            continue
        annotations = ((((doc.get("spec") or {}).get("template") or {}).get("metadata") or {})
                       .get("annotations") or {})
        if monitors and annotations.get(SCRAPE_ANNOTATION) == "true":
            problems.add(where, f"scraped twice: {SCRAPE_ANNOTATION} annotation and {monitors[0]} (every "
                                "series doubles); keep one scrape path")
        pod_sc = pod.get("securityContext") or {}
        if (pod_sc.get("seccompProfile") or {}).get("type") != "RuntimeDefault":
            problems.add(where, "pod securityContext.seccompProfile.type must be RuntimeDefault")
        for container in [*pod.get("initContainers", []), *pod.get("containers", [])]:
            cwhere = f"{where} container {container.get('name')}"
            sc = container.get("securityContext") or {}
            if not (sc.get("runAsNonRoot") or pod_sc.get("runAsNonRoot")):
                problems.add(cwhere, "runAsNonRoot must be true")
            if sc.get("readOnlyRootFilesystem") is not True:
                problems.add(cwhere, "securityContext.readOnlyRootFilesystem must be true")
            if sc.get("allowPrivilegeEscalation") is not False:
                problems.add(cwhere, "securityContext.allowPrivilegeEscalation must be false")
            if "ALL" not in ((sc.get("capabilities") or {}).get("drop") or []):
                problems.add(cwhere, "securityContext.capabilities.drop must contain ALL")
            resources = container.get("resources") or {}
            if "memory" not in (resources.get("requests") or {}) or "memory" not in (
                    resources.get("limits") or {}):
                problems.add(cwhere, "memory requests and limits are required")
            for env in container.get("env") or []:
                if env.get("name") in SECRET_SETTINGS and "value" in env:
                    problems.add(cwhere, f"{env['name']} must come from a Secret (valueFrom.secretKeyRef)")
            if container.get("name") == "worker":
                mounts = [m.get("mountPath", "") for m in container.get("volumeMounts") or []]
                for name, value in sorted(files.items()):
                    if not any(value.startswith(mount.rstrip("/") + "/") for mount in mounts):
                        problems.add(cwhere, f"{name}={value} is on no volume mounted in the worker "
                                             "(mount the Secret or ConfigMap that holds it)")
                probes = {p: ((container.get(p) or {}).get("httpGet") or {}).get("path")
                          for p in ("livenessProbe", "readinessProbe")}
                if probes != {"livenessProbe": "/healthz", "readinessProbe": "/readyz"}:
                    problems.add(cwhere, f"worker probes must be /healthz (liveness) and /readyz "
                                         f"(readiness), found {probes}")
    settings = {k: str(v) for doc in docs if doc.get("kind") == "ConfigMap"
                and str((doc.get("metadata") or {}).get("name", "")).startswith("freshpaint-iterable-settings")
                for k, v in (doc.get("data") or {}).items()}
    if settings:
        check_kafka_wiring(path, docs, settings, problems)
    if partitions is None:
        return
    for doc in docs:
        spec = doc.get("spec") or {}
        bound = {"ScaledObject": spec.get("maxReplicaCount"),
                 "HorizontalPodAutoscaler": spec.get("maxReplicas")}.get(str(doc.get("kind")))
        if bound is not None and bound != partitions:
            problems.add(f"{path} {_name(doc)}", f"max replicas {bound} != FPI_TOPIC_PARTITIONS "
                                                 f"{partitions} (workers beyond the partitions stay idle)")


KEDA_SASL = {"PLAIN": "plaintext", "SCRAM-SHA-256": "scram_sha256", "SCRAM-SHA-512": "scram_sha512"}


def _url_port(url: str) -> int | None:
    match = re.match(r"(https?)://(?:[^@/]*@)?[^:/]+(?::(\d+))?", url)
    if not match:
        return None
    return int(match.group(2)) if match.group(2) else (443 if match.group(1) == "https" else 80)


def _source_group(settings: dict[str, str]) -> str:
    """The consumer group whose lag on the source topic KEDA should read: ``streams.source_reader.source_group``
    (this script runs in its own environment, without the package)."""
    app_id = settings.get("FPI_APP_ID", "freshpaint-iterable")
    keyed = settings.get("FPI_SOURCE_KEYED_BY_DEVICE", "false").lower() in ("1", "true", "yes", "on")
    if settings.get("FPI_SOURCE_READER", "aiokafka") == "aiokafka" and not keyed:
        return f"{app_id}-source"
    return app_id


def check_kafka_wiring(path: Path, docs: list[dict[str, Any]], settings: dict[str, str],
                       problems: Problems) -> None:
    """The settings, the NetworkPolicy and KEDA's trigger describe the same Kafka and registry."""
    bootstrap = settings.get("FPI_KAFKA_BOOTSTRAP", "")
    protocol = settings.get("FPI_KAFKA_SECURITY_PROTOCOL", "PLAINTEXT")
    wanted_ports = {int(entry.rpartition(":")[2]) for entry in bootstrap.split(",")
                    if entry.rpartition(":")[2].isdigit()}
    registry_port = _url_port(settings.get("FPI_SCHEMA_REGISTRY_URL", ""))
    if registry_port is not None:
        wanted_ports.add(registry_port)
    for doc in docs:
        where = f"{path} {_name(doc)}"
        spec = doc.get("spec") or {}
        if doc.get("kind") == "NetworkPolicy" and "Egress" in (spec.get("policyTypes") or []):
            allowed = {port.get("port") for rule in spec.get("egress") or [] for port in rule.get("ports") or []}
            for port in sorted(wanted_ports - allowed):
                problems.add(where, f"no egress rule allows port {port} (FPI_KAFKA_BOOTSTRAP / "
                                    "FPI_SCHEMA_REGISTRY_URL): the worker could not connect")
        if doc.get("kind") == "ScaledObject":
            for trigger in spec.get("triggers") or []:
                if trigger.get("type") != "kafka":
                    continue
                meta = trigger.get("metadata") or {}
                group = _source_group(settings)
                if meta.get("consumerGroup") != group:
                    problems.add(where, f"KEDA consumerGroup {meta.get('consumerGroup')!r} is not the group that reads "
                                        f"the source topic, {group!r} (FPI_APP_ID, FPI_SOURCE_READER)")
                if meta.get("bootstrapServers") != bootstrap:
                    problems.add(where, f"KEDA bootstrapServers {meta.get('bootstrapServers')!r} is not "
                                        f"FPI_KAFKA_BOOTSTRAP {bootstrap!r}")
                tls = "enable" if protocol in ("SSL", "SASL_SSL") else "disable"
                if meta.get("tls", "disable") != tls:
                    problems.add(where, f"KEDA tls {meta.get('tls')!r} does not fit "
                                        f"FPI_KAFKA_SECURITY_PROTOCOL={protocol} (want {tls})")
                sasl = (KEDA_SASL.get(settings.get("FPI_KAFKA_SASL_MECHANISM", "PLAIN"), "?")
                        if protocol.startswith("SASL") else "none")
                if meta.get("sasl", "none") != sasl:
                    problems.add(where, f"KEDA sasl {meta.get('sasl')!r} does not fit the worker's "
                                        f"FPI_KAFKA_SASL_MECHANISM (want {sasl})")
        if doc.get("kind") == "TriggerAuthentication":
            has_ca = any(ref.get("parameter") == "ca" for ref in spec.get("secretTargetRef") or [])
            if has_ca != bool(settings.get("FPI_KAFKA_SSL_CAFILE")):
                problems.add(where, "KEDA's ca and FPI_KAFKA_SSL_CAFILE disagree: trust the same CA bundle as "
                                    "the worker (both set, or both unset for a public CA)")


# --- Compose ---------------------------------------------------------------------------------


def compose_schema() -> dict[str, Any]:
    ref = importlib.resources.files("check_jsonschema") / "builtin_schemas" / "vendor" / "compose-spec.json"
    return dict(json.loads(ref.read_text()))


def validate_compose(path: Path, problems: Problems) -> None:
    try:
        doc = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        problems.add(str(path), f"not YAML: {exc}")
        return
    schema = compose_schema()
    validator = jsonschema.validators.validator_for(schema)(schema)
    for error in sorted(validator.iter_errors(doc), key=lambda e: list(e.absolute_path))[:20]:
        problems.add(f"{path} [compose-spec]", f"{_path(error)}: {error.message}")
    if not isinstance(doc, dict):
        return
    services = doc.get("services") or {}
    for name in ("kafka", "registry", "topics", "emulator", "worker", "producer"):
        if name not in services:
            problems.add(str(path), f"service {name!r} is missing")
    kafka = services.get("kafka") or {}
    if not str(kafka.get("image", "")).startswith("apache/kafka:"):
        problems.add(f"{path} kafka", "must use the official apache/kafka image")
    if "KAFKA_PROCESS_ROLES" not in (kafka.get("environment") or {}):
        problems.add(f"{path} kafka", "KAFKA_PROCESS_ROLES must be set (KRaft mode)")
    registry = services.get("registry") or {}
    if registry and not str(registry.get("image", "")).startswith("apicurio/apicurio-registry:"):
        problems.add(f"{path} registry", "must be Apicurio Registry (apicurio/apicurio-registry), as in the tests")
    producer_command = " ".join(map(str, (services.get("producer") or {}).get("command") or []))
    if "--registry-url" not in producer_command:
        problems.add(f"{path} producer", "must register the schema (--registry-url): a made-up schema id "
                                         "is what a real consumer would reject")
    topics_command = (services.get("topics") or {}).get("command") or []
    if list(topics_command)[:2] != ["topics", "create"]:
        problems.add(f"{path} topics", "must run `freshpaint-iterable topics create` (every worker topic)")
    for name in ("kafka", "registry", "emulator", "worker"):
        if name in services and "healthcheck" not in (services[name] or {}):
            problems.add(f"{path} {name}", "needs a healthcheck")
    producer = services.get("producer") or {}
    if producer and str(producer.get("restart", "no")) != "no":
        problems.add(f"{path} producer", "the producer is one-shot: restart must be \"no\"")
    for name, service in services.items():
        env = (service or {}).get("environment") or {}
        key = env.get("FPI_ITERABLE_API_KEY") if isinstance(env, dict) else None
        if name != "emulator" and key is not None and not str(key).startswith("${FPI_ITERABLE_API_KEY"):
            problems.add(f"{path} {name}", "FPI_ITERABLE_API_KEY must come from the environment "
                                           "(${FPI_ITERABLE_API_KEY...}), never be written here")
        depends_on = (service or {}).get("depends_on")
        for dep_name, dep in depends_on.items() if isinstance(depends_on, dict) else []:
            if dep_name not in services:
                problems.add(f"{path} {name}", f"depends on unknown service {dep_name!r}")
            elif dep.get("condition") == "service_healthy" and "healthcheck" not in (
                    services[dep_name] or {}):
                problems.add(f"{path} {name}",
                             f"waits for {dep_name} to be healthy but it has no healthcheck")


# --- Dockerfile ------------------------------------------------------------------------------


def validate_dockerfile(path: Path, problems: Problems) -> None:
    """Structural rules (no Docker engine here to build it)."""
    lines: list[str] = []
    for raw in re.sub(r"\\\n", " ", path.read_text()).splitlines():
        if raw.strip() and not raw.lstrip().startswith("#"):
            lines.append(raw.strip())
    instructions = [(line.split(None, 1)[0].upper(), line.split(None, 1)[1] if " " in line else "")
                    for line in lines]
    args = {m.group(1): m.group(2) for op, rest in instructions if op == "ARG"
            for m in [re.match(r"(\w+)=(\S+)", rest)] if m}
    froms = [re.sub(r"\$\{(\w+)\}", lambda m: args.get(m.group(1), m.group(0)), rest).split()[0]
             for op, rest in instructions if op == "FROM"]
    if not froms or not all(re.fullmatch(r"python:3\.11(\.\d+)?-slim(-\w+)?", f) for f in froms):
        problems.add(str(path), f"base images must be python:3.11-slim*, found {froms}")
    final = instructions[max(i for i, (op, _) in enumerate(instructions) if op == "FROM"):]
    users = [rest for op, rest in final if op == "USER"]
    if not users or users[-1].split(":")[0] in ("root", "0"):
        problems.add(str(path), "the final stage must switch to a non-root USER")
    runs = " ".join(rest for op, rest in instructions if op == "RUN")
    if "constraints.txt" not in runs or "rocksdb" not in runs:
        problems.add(str(path),
                     "must install the locked dependencies (constraints.txt) with the rocksdb extra")
    copies = " ".join(rest for op, rest in instructions if op == "COPY")
    if not re.search(r"(^|\s)avro(/|\s)", copies) or "setup.py" not in copies:
        problems.add(str(path), "must build the package with avro/ and setup.py (the wheel carries the schemas)")
    if any(re.search(r"\bFPI_AVRO_DIR\b", rest) for op, rest in final if op == "ENV"):
        problems.add(str(path), "must not set FPI_AVRO_DIR: the installed package finds its own schemas")
    if "EXTRA_CA_CERTS" not in args and not any(op == "ARG" and rest.split("=")[0] == "EXTRA_CA_CERTS"
                                                for op, rest in instructions):
        problems.add(str(path), "needs the build arg EXTRA_CA_CERTS (a CA for a TLS-re-signing proxy)")
    entry = " ".join(rest for op, rest in final if op in ("ENTRYPOINT", "CMD"))
    if "freshpaint-iterable" not in entry or "worker" not in entry:
        problems.add(str(path), f"entry point must run `freshpaint-iterable worker`, found {entry!r}")


# --- PromQL: rules and dashboards ------------------------------------------------------------


def known_metrics(metrics_py: Path) -> set[str]:
    """Series names defined in streams/metrics.py, with the suffixes Prometheus adds."""
    names: set[str] = set()
    for kind, name in re.findall(r"\b(Counter|Gauge|Histogram|Summary)\(\s*\"(fpi_[a-z0-9_]+)\"",
                                 metrics_py.read_text()):
        names.add(name)
        if kind == "Counter":
            base = name.removesuffix("_total")
            names.update({f"{base}_total", f"{base}_created"})
        if kind in ("Histogram", "Summary"):
            names.update({f"{name}_bucket", f"{name}_sum", f"{name}_count", f"{name}_created"})
    return names


def check_promql(where: str, expr: str, metrics: set[str], recorded: set[str], problems: Problems) -> None:
    concrete = OTHER_VARS.sub("x", GRAFANA_VARS.sub("5m", expr))
    try:
        ast = promql_parser.parse(concrete)
    except ValueError as exc:
        problems.add(where, f"PromQL does not parse: {exc}: {expr.strip()}")
        return
    names: list[str] = []

    def visit(node: Any) -> bool:
        if isinstance(node, promql_parser.VectorSelector) and node.name:
            names.append(node.name)
        return True

    promql_parser.walk(ast, visit)
    for name in names:
        if name.startswith("fpi_") and name not in metrics:
            problems.add(where, f"series {name} is not defined in streams/metrics.py")
        if ":" in name and name not in recorded:
            problems.add(where, f"recorded series {name} has no recording rule")


def heading_anchors(markdown: Path) -> set[str]:
    """GitHub's anchors for the headings of ``markdown``."""
    anchors = set()
    for line in markdown.read_text().splitlines():
        match = re.match(r"#{1,6}\s+(.*)", line)
        if match:
            text = re.sub(r"[^\w\- ]", "", match.group(1).strip().lower())
            anchors.add(text.replace(" ", "-"))
    return anchors


def validate_rules(path: Path, metrics: set[str], problems: Problems, runbook: Path | None = None) -> set[str]:
    recorded: set[str] = set()
    docs = [d for d in yaml.safe_load_all(path.read_text()) if d]
    groups = [g for d in docs if d.get("kind") == "PrometheusRule" for g in d["spec"]["groups"]]
    if not groups:
        problems.add(str(path), "no PrometheusRule groups")
    rules = [r for g in groups for r in g.get("rules", [])]
    recorded = {r["record"] for r in rules if "record" in r}
    alerts = [r for r in rules if "alert" in r]
    for rule in rules:
        label = rule.get("alert") or rule.get("record")
        check_promql(f"{path} rule {label}", str(rule.get("expr", "")), metrics, recorded, problems)
    for alert in alerts:
        if "severity" not in (alert.get("labels") or {}):
            problems.add(f"{path} alert {alert['alert']}", "needs a severity label")
        if "summary" not in (alert.get("annotations") or {}):
            problems.add(f"{path} alert {alert['alert']}", "needs a summary annotation")
        url = str((alert.get("annotations") or {}).get("runbook_url", ""))
        if not url:
            problems.add(f"{path} alert {alert['alert']}", "needs a runbook_url annotation")
        elif runbook is not None and url.partition("#")[2] not in heading_anchors(runbook):
            problems.add(f"{path} alert {alert['alert']}",
                         f"runbook_url {url} names no section of {runbook}")
    return recorded


def _panels(panels: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    for panel in panels:
        yield panel
        yield from _panels(panel.get("panels") or [])


def validate_dashboard(path: Path, metrics: set[str], recorded: set[str], problems: Problems) -> None:
    try:
        dash = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        problems.add(str(path), f"not JSON: {exc}")
        return
    for key in ("uid", "title", "panels", "schemaVersion"):
        if key not in dash:
            problems.add(str(path), f"dashboard has no {key!r}")
    top = dash.get("panels") or []
    for i, panel in enumerate(top):
        following = next((p for p in top[i + 1:]), None)
        if panel.get("type") == "row" and not panel.get("panels") and (following is None or following.get(
                "type") == "row"):
            problems.add(f"{path} panel {panel.get('id')} {panel.get('title')!r}", "empty row")
    ids: set[int] = set()
    for panel in _panels(top):
        where = f"{path} panel {panel.get('id')} {panel.get('title')!r}"
        if panel.get("id") in ids:
            problems.add(where, "duplicate panel id")
        ids.add(panel.get("id"))
        grid = panel.get("gridPos") or {}
        if not all(isinstance(grid.get(k), int) for k in ("h", "w", "x", "y")) or grid.get("x", 0) + grid.get(
                "w", 0) > 24:
            problems.add(where, f"bad gridPos {grid}")
        if panel.get("type") == "row":
            continue
        targets = panel.get("targets") or []
        if not targets:
            problems.add(where, "panel has no query")
        for target in targets:
            check_promql(where, str(target.get("expr", "")), metrics, recorded, problems)


# --- main ------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--manifests", type=Path, action="append", default=[],
                        help="rendered multi-document Kubernetes YAML (repeatable)")
    parser.add_argument("--crd", type=Path, action="append", default=[], help="CRD YAML (repeatable)")
    parser.add_argument("--k8s-versions", default="1.30,latest",
                        help="comma-separated Kubernetes versions to validate against")
    parser.add_argument("--compose", type=Path, action="append", default=[])
    parser.add_argument("--rules", type=Path, action="append", default=[], help="PrometheusRule YAML")
    parser.add_argument("--dashboard", type=Path, action="append", default=[], help="Grafana dashboard JSON")
    parser.add_argument("--dockerfile", type=Path, action="append", default=[])
    parser.add_argument("--metrics-py", type=Path, default=Path("streams/metrics.py"))
    parser.add_argument("--runbook", type=Path, default=None,
                        help="markdown whose headings the alerts' runbook_url anchors must name")
    args = parser.parse_args(argv)

    problems = Problems()
    available = _available_k8s_versions()
    versions = []
    for wanted in args.k8s_versions.split(","):
        wanted = wanted.strip().removeprefix("v")
        if wanted == "latest":
            versions.append(available[-1])
            continue
        matches = [v for v in available if kv_utils.major_minor(v) == kv_utils.major_minor(wanted)]
        if not matches:
            print(f"validate: Kubernetes {wanted} is not bundled (have {', '.join(available)})",
                  file=sys.stderr)
            return 2
        versions.append(matches[-1])

    if args.manifests:
        schemas = K8sSchemas(args.crd)
        for path in args.manifests:
            count = validate_manifests(path, schemas, versions, problems)
            print(f"validate: {path}: {count} objects against Kubernetes {', '.join(versions)}")
    for path in args.compose:
        validate_compose(path, problems)
        print(f"validate: {path}: compose-spec schema and structure")
    for path in args.dockerfile:
        validate_dockerfile(path, problems)
        print(f"validate: {path}: Dockerfile structure")
    metrics = known_metrics(args.metrics_py) if (args.rules or args.dashboard) else set()
    recorded: set[str] = set()
    for path in args.rules:
        recorded |= validate_rules(path, metrics, problems, args.runbook)
        print(f"validate: {path}: alert rules")
    for path in args.dashboard:
        validate_dashboard(path, metrics, recorded, problems)
        print(f"validate: {path}: dashboard")

    for line in problems.items:
        print(f"INVALID {line}", file=sys.stderr)
    if problems.items:
        print(f"validate: {len(problems.items)} problem(s)", file=sys.stderr)
        return 1
    print("validate: all valid")
    return 0


if __name__ == "__main__":
    sys.exit(main())
