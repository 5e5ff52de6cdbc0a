#!/usr/bin/env python3
"""Checks the Helm chart helm/floe without a Kubernetes cluster.

Needs `pip install helm-python-sdk kubernetes-validate promql-parser pyyaml` (Helm's own Go library
through helm_python, and the Kubernetes OpenAPI schemas). Modes:

  scripts/chart_check.py
      every check below; exits 1 on any failure, printing what it checked:
      - `helm lint --strict` of the defaults and of every ci/*.yaml: no errors, no warnings;
      - values.schema.json's `config` is the setting table of docs/configuration.md, and
        README.md's values table is the `# --` comments of values.yaml;
      - the defaults and every ci/*.yaml render, and every document passes
        kubernetes-validate for Kubernetes 1.31 in strict mode (ServiceMonitor and
        PrometheusRule, CRDs it has no schema for, get a structural check instead: each
        alert's PromQL parses, with promql-parser, and names only metrics that
        docs/configuration.md lists, on this release's `job`);
      - the alerts, rendered with the default thresholds, fire and stay quiet as
        tests/alerts/floe_test.yaml says, under `promtool test rules` (Prometheus's engine);
      - the rendered floe.toml holds only settings docs/configuration.md lists, in known
        sections, with integers as integers; the broker Deployment gets the per-pod
        settings from the downward API, mounts what floe.toml points at (every `*_file`
        is an item of a read-only mounted Secret), and is rolled by a change of it;
      - the security values (tls, auth.jwt, auth.internalSecret, etcd.tls,
        store.s3CaSecret, serviceMonitor.bearerTokenSecret, internalPort) each render the
        mounts, floe.toml settings, probe scheme, advertised URLs, ServiceMonitor
        endpoint and NetworkPolicy rule they stand for, and no --allow-anonymous once
        requests authenticate;
      - bad values fail, each with a message naming the value (schema and template
        checks, the latter also with schema validation skipped).
  scripts/chart_check.py --deployment-env VALUES_FILE [--set key=value ...]
      prints, as JSON, the broker container's command, args, env and volumeMounts and the
      ConfigMap's floe.toml, rendered with VALUES_FILE (a process test runs `floe` with
      exactly those settings). Python callers: `deployment_env(values)`.
  scripts/chart_check.py --write-config-schema | --write-readme
      regenerates values.schema.json's `config` from docs/configuration.md, or README.md's
      values table from values.yaml.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import tomllib
from pathlib import Path
from typing import Any, Callable

import helm_python as helm
import kubernetes_validate
import promql_parser
import yaml

ROOT = Path(__file__).resolve().parent.parent
CHART = ROOT / "helm" / "floe"
DOCS = ROOT / "docs" / "configuration.md"
KUBE_VERSION = "1.31"
RELEASE = "floe"
NAMESPACE = "streams"
SECTIONS = ["server", "store", "broker", "cache", "sequencer", "cluster", "jobs", "groups", "auth", "quotas", "tracing"]
# Custom resources kubernetes-validate has no schema for: checked structurally instead.
CRD_KINDS = {("monitoring.coreos.com/v1", "ServiceMonitor"), ("monitoring.coreos.com/v1", "PrometheusRule")}
README_START = "<!-- values:start (scripts/chart_check.py --write-readme) -->"
README_END = "<!-- values:end -->"


# ----------------------------------------------------------------------------- values


def deep_merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    """`override` over `base`, maps merged key by key as Helm merges -f files."""
    merged = copy.deepcopy(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def load_values(*files: Path | str, sets: list[str] | None = None) -> dict[str, Any]:
    values: dict[str, Any] = {}
    for file in files:
        values = deep_merge(values, yaml.safe_load(Path(file).read_text()) or {})
    for expression in sets or []:
        values = deep_merge(values, helm.parse_set_string(expression))
    return values


def render(values: dict[str, Any], chart: Path | None = None) -> list[dict[str, Any]]:
    """Every document the chart renders with `values` (test hooks included)."""
    with helm.Chart.load(str(chart or CHART)) as loaded:
        manifests = loaded.render(values, name=RELEASE, namespace=NAMESPACE)
    documents = []
    for template, text in sorted(manifests.items()):
        if template.endswith("NOTES.txt"):
            continue
        for document in yaml.safe_load_all(text):
            if document:
                document["__template__"] = template
                documents.append(document)
    return documents


def find(documents: list[dict[str, Any]], kind: str, name: str | None = None) -> dict[str, Any]:
    for document in documents:
        if document["kind"] == kind and (name is None or document["metadata"]["name"] == name):
            return document
    raise LookupError(f"no {kind} {name or ''} rendered")


def broker_deployment(documents: list[dict[str, Any]]) -> dict[str, Any]:
    for document in documents:
        labels = document["metadata"].get("labels", {})
        if document["kind"] == "Deployment" and labels.get("app.kubernetes.io/component") == "broker":
            return document
    raise LookupError("no broker Deployment rendered")


def deployment_env(values: dict[str, Any], chart: Path | None = None) -> dict[str, Any]:
    """What a broker container runs with: command, args, env, volumeMounts, floe.toml."""
    documents = render(values, chart)
    deployment = broker_deployment(documents)
    container = next(c for c in deployment["spec"]["template"]["spec"]["containers"] if c["name"] == "floe")
    config_map = find(documents, "ConfigMap", deployment["metadata"]["name"])
    pod = deployment["spec"]["template"]["spec"]
    tests = [
        doc
        for doc in documents
        if doc.get("kind") == "Pod"
        and doc.get("metadata", {}).get("annotations", {}).get("helm.sh/hook") == "test"
    ]
    test_steps = []
    for test in tests:
        annotations = test["metadata"].get("annotations", {})
        for step in test["spec"].get("initContainers", []) + test["spec"]["containers"]:
            test_steps.append({"name": step["name"], "command": step.get("command", []) + step.get("args", [])})
    return {
        "release": RELEASE,
        "namespace": NAMESPACE,
        "command": container.get("command", []),
        "args": container.get("args", []),
        "env": container.get("env", []),
        "volumeMounts": container.get("volumeMounts", []),
        "floe_toml": config_map["data"]["floe.toml"],
        "termination_grace_period_seconds": pod.get("terminationGracePeriodSeconds", 30),
        "test_steps": test_steps,
        "test_annotations": annotations if tests else {},
    }



# ------------------------------------------------------------- docs/configuration.md


def server_sections() -> list[str]:
    """The sections `floe serve` reads (`SECTIONS` in crates/floe-server/src/config.rs)."""
    source = (ROOT / "crates/floe-server/src/config.rs").read_text()
    match = re.search(r"pub const SECTIONS: \[&str; \d+\] = \[(.*?)\];", source, re.S)
    assert match, "SECTIONS not found in config.rs"
    return re.findall(r'"([a-z_]+)"', match.group(1))


def documented_settings() -> dict[str, dict[str, str]]:
    """The setting table of docs/configuration.md: {section: {key: default cell}}."""
    assert SECTIONS == server_sections(), f"chart_check SECTIONS {SECTIONS} != config.rs {server_sections()}"
    helpers = (CHART / "templates" / "_helpers.tpl").read_text()
    chart = re.search(r'\$sections := list ((?:"[a-z_]+" ?)+)', helpers)
    assert chart and re.findall(r'"([a-z_]+)"', chart.group(1)) == SECTIONS, "the chart's section list differs"
    settings: dict[str, dict[str, str]] = {section: {} for section in SECTIONS}
    for line in DOCS.read_text().splitlines():
        match = re.match(r"^\| `([a-z_]+)\.([a-z_0-9]+)` \| [^|]* \| ([^|]*) \|", line)
        if match and match.group(1) in settings:
            settings[match.group(1)][match.group(2)] = match.group(3).strip()
    return settings


# Settings whose type the default column does not show.
SETTING_TYPES = {
    "store.s3_path_style": "boolean",
    "cluster.etcd": "string",
    "auth.tokens_file": "string",
    "tracing.sample_ratio": "number",
    "tracing.otlp_endpoint": "string",
}
DURATION = {"type": "string", "minLength": 1, "description": "a duration: 250ms, 5s, 2m, 7days"}
SETTING_SCHEMAS = {
    # Shown as `0` (local store) in the docs, but a duration like the linger it follows.
    "broker.min_flush_interval": DURATION,
    "auth.super_users": {"type": "array", "items": {"type": "string", "minLength": 1}},
    "quotas.principals": {"type": "object", "additionalProperties": {"type": "object"}},
}


def setting_schema(path: str, default: str) -> dict[str, Any]:
    if path in SETTING_SCHEMAS:
        return SETTING_SCHEMAS[path]
    if path in SETTING_TYPES:
        return {"type": SETTING_TYPES[path]}
    shown = re.search(r"`([^`]*)`", default)
    value = shown.group(1) if shown else ""
    if value in ("true", "false"):
        return {"type": "boolean"}
    if re.fullmatch(r"-?[0-9]+", value):
        return {"type": "integer"}
    if re.fullmatch(r"[0-9]+ ?(ns|us|ms|s|m|h|d|days?|w|weeks?)", value):
        return DURATION
    if value:
        return {"type": "string"}
    return {"type": ["string", "integer", "boolean"]}


def config_schema() -> dict[str, Any]:
    sections = {}
    for section, keys in documented_settings().items():
        sections[section] = {
            "type": "object",
            "additionalProperties": False,
            "properties": {key: setting_schema(f"{section}.{key}", default) for key, default in keys.items()},
        }
    return {
        "$comment": "generated from docs/configuration.md by scripts/chart_check.py --write-config-schema",
        "type": "object",
        "description": "floe.toml settings by section, as in docs/configuration.md",
        "additionalProperties": False,
        "properties": sections,
    }


def write_config_schema() -> None:
    path = CHART / "values.schema.json"
    schema = json.loads(path.read_text())
    schema["properties"]["config"] = config_schema()
    path.write_text(json.dumps(schema, indent=2) + "\n")
    print(f"wrote the config part of {path.relative_to(ROOT)} from {DOCS.relative_to(ROOT)}")


# ---------------------------------------------------------------- README values table


def documented_values() -> list[tuple[str, str]]:
    """(dotted path, description) of every `# --` comment of values.yaml, in file order."""
    entries = []
    stack: list[tuple[int, str]] = []
    comment: list[str] = []
    for line in (CHART / "values.yaml").read_text().splitlines():
        stripped = line.strip()
        if stripped.startswith("#"):
            text = stripped.lstrip("#").strip()
            if text.startswith("-- "):
                comment = [text[3:]]
            elif comment:
                comment.append(text)
            continue
        match = re.match(r"^( *)([A-Za-z0-9_]+):", line)
        if not match:
            comment = []
            continue
        indent = len(match.group(1))
        while stack and stack[-1][0] >= indent:
            stack.pop()
        stack.append((indent, match.group(2)))
        if comment:
            entries.append((".".join(key for _, key in stack), " ".join(comment)))
        comment = []
    return entries


def value_at(values: dict[str, Any], path: str) -> Any:
    node: Any = values
    for key in path.split("."):
        node = node[key]
    return node


def leaf_paths(node: Any, prefix: str = "") -> list[str]:
    if isinstance(node, dict) and node:
        return [p for key, child in node.items() for p in leaf_paths(child, f"{prefix}{key}.")]
    return [prefix.rstrip(".")]


def readme_table() -> str:
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    rows = ["| value | default | what it does |", "|---|---|---|"]
    for path, description in documented_values():
        default = json.dumps(value_at(values, path), separators=(",", ":"))
        cell = description.replace("|", "\\|")
        rows.append(f"| `{path}` | `{default}` | {cell} |")
    return "\n".join(rows)


def write_readme() -> None:
    path = CHART / "README.md"
    text = path.read_text()
    start, end = text.index(README_START) + len(README_START), text.index(README_END)
    path.write_text(text[:start] + "\n" + readme_table() + "\n" + text[end:])
    print(f"wrote the values table of {path.relative_to(ROOT)} from values.yaml")


# --------------------------------------------------------------------------- checks


class Checker:
    def __init__(self) -> None:
        self.failures: list[str] = []
        self.passed = 0

    def check(self, name: str, condition: bool, detail: str = "") -> bool:
        if condition:
            self.passed += 1
            print(f"  ok    {name}")
        else:
            self.failures.append(f"{name}: {detail}")
            print(f"  FAIL  {name}: {detail}")
        return condition

    def run(self, name: str, action: Callable[[], None]) -> None:
        """Counts `action` as one check that fails on any exception."""
        try:
            action()
        except Exception as error:  # noqa: BLE001 - every failure is reported, none hidden
            self.check(name, False, f"{type(error).__name__}: {error}")
        else:
            self.check(name, True)


def value_files() -> list[tuple[str, dict[str, Any]]]:
    files = [("defaults", {})]
    for path in sorted((CHART / "ci").glob("*.yaml")):
        files.append((f"ci/{path.name}", load_values(path)))
    return files


def check_lint(checker: Checker) -> None:
    print(f"helm lint --strict (Kubernetes {KUBE_VERSION}):")
    for label, values in value_files():
        report = helm.lint(str(CHART), values, strict=True, namespace=NAMESPACE, kube_version=f"v{KUBE_VERSION}.0")
        problems = [m for m in report.get("messages", []) if m.get("severity", 0) >= 2]
        infos = [f"{m['path']}: {m['error'].strip()}" for m in report.get("messages", []) if m.get("severity", 0) < 2]
        detail = "; ".join(f"{m['path']}: {m['error'].strip()}" for m in problems) or "; ".join(report.get("errors", []))
        checker.check(f"lint {label}", not problems and not report.get("errors"), detail)
        for info in infos:
            print(f"        (info) {info}")


def check_generated(checker: Checker) -> None:
    print("generated parts:")
    schema = json.loads((CHART / "values.schema.json").read_text())
    checker.check(
        "values.schema.json config = docs/configuration.md settings",
        schema["properties"].get("config") == config_schema(),
        "stale: run scripts/chart_check.py --write-config-schema",
    )
    readme = (CHART / "README.md").read_text()
    current = README_START in readme and README_END in readme and readme_table() in readme
    checker.check("README.md values table = values.yaml comments", current, "stale: run scripts/chart_check.py --write-readme")
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    documented = [path for path, _ in documented_values()]
    undocumented = [
        leaf
        for leaf in leaf_paths(values)
        if not any(leaf == path or leaf.startswith(path + ".") for path in documented)
    ]
    checker.check("every value has a `# --` comment", not undocumented, ", ".join(undocumented))
    schema_top = set(schema["properties"]) - {"global"}
    checker.check("values.schema.json knows every top-level value", schema_top == set(values), f"schema {sorted(schema_top ^ set(values))}")


ENDPOINT_FIELDS = {"port", "path", "scheme", "tlsConfig", "authorization", "interval", "scrapeTimeout", "metricRelabelings", "relabelings"}


def documented_metrics() -> set[str]:
    """The metric names docs/configuration.md lists (floe's and kafka_exporter's)."""
    text = DOCS.read_text()
    return set(re.findall(r"\b(?:floe|kafka)_[a-z0-9_]+", text))


def selectors(node: Any) -> list[Any]:
    """Every vector selector of a parsed PromQL expression (promql_parser's tree)."""
    if isinstance(node, promql_parser.VectorSelector):
        return [node]
    if isinstance(node, promql_parser.MatrixSelector):
        return [node.vector_selector]
    found = []
    for field in ("expr", "lhs", "rhs", "param"):
        child = getattr(node, field, None)
        if child is not None and not isinstance(child, (str, int, float)):
            found += selectors(child)
    for child in getattr(node, "args", None) or []:
        found += selectors(child)
    return found


def headless_service(documents: list[dict[str, Any]]) -> str:
    """The headless Service's name: the `job` Prometheus gives the ServiceMonitor's series."""
    headless = [d for d in documents if d["kind"] == "Service"
                and d["metadata"].get("labels", {}).get("floe-streaming.io/service") == "headless"]
    assert len(headless) == 1, "no headless Service"
    return headless[0]["metadata"]["name"]


def check_rules(document: dict[str, Any], documents: list[dict[str, Any]]) -> None:
    """A PrometheusRule's alerts: fields, PromQL that parses, documented metrics only, and
    the release's own series (`job` is the headless Service, as the ServiceMonitor scrapes)."""
    documented = documented_metrics()
    job = headless_service(documents)
    groups = document["spec"]["groups"]
    assert groups and all(group["rules"] for group in groups), "no rules"
    for group in groups:
        for rule in group["rules"]:
            assert set(rule) <= {"alert", "record", "expr", "for", "labels", "annotations"}, rule
            name = rule.get("alert") or rule.get("record")
            assert name, f"a rule without alert or record: {rule}"
            if "for" in rule:
                assert re.fullmatch(r"(\d+(ms|[smhdwy]))+", rule["for"]), f"{name}: for {rule['for']}"
            expr = promql_parser.parse(str(rule["expr"]))
            found = selectors(expr)
            assert found, f"{name}: no metric"
            for selector in found:
                metric = re.sub(r"_(bucket|count|sum)$", "", selector.name or "")
                assert metric in documented, f"{name}: {selector.name} is not in docs/configuration.md"
            if not name.startswith("Floe"):
                continue  # additionalRules: the user's own names
            assert rule["labels"]["severity"] in ("info", "warning", "critical"), f"{name}: severity"
            assert {"summary", "description"} <= set(rule["annotations"]), f"{name}: annotations"
            for selector in found:
                jobs = [m for m in selector.matchers.matchers if m.name == "job"]
                assert [(m.op, m.value) for m in jobs] == [(promql_parser.MatchOp.Equal, job)], \
                    f"{name}: {selector.name} is not scoped to job={job!r}"


def check_crd(document: dict[str, Any], documents: list[dict[str, Any]]) -> None:
    """A structural check of a ServiceMonitor or PrometheusRule, which kubernetes-validate
    has no schema for."""
    if document["kind"] == "PrometheusRule":
        check_rules(document, documents)
        return
    spec = document["spec"]
    assert spec["selector"]["matchLabels"], "empty selector"
    for endpoint in spec["endpoints"]:
        assert endpoint["port"] == "http" and endpoint["path"] == "/metrics", endpoint
        assert set(endpoint) <= ENDPOINT_FIELDS, sorted(set(endpoint) - ENDPOINT_FIELDS)
        assert endpoint["scheme"] in ("http", "https"), endpoint["scheme"]
        assert ("tlsConfig" in endpoint) == (endpoint["scheme"] == "https"), "tlsConfig goes with scheme https"
        tls = endpoint.get("tlsConfig", {})
        assert set(tls) <= {"serverName", "ca"}, tls
        if "ca" in tls:
            assert set(tls["ca"]["secret"]) == {"name", "key"}, tls["ca"]
        if "authorization" in endpoint:
            authorization = endpoint["authorization"]
            assert authorization["type"] == "Bearer", authorization
            assert set(authorization["credentials"]) == {"name", "key"}, authorization


ALERT_TESTS = ROOT / "tests" / "alerts" / "floe_test.yaml"


def check_alerts(checker: Checker) -> None:
    """The alerts' behaviour, not only their syntax: the rules rendered with the default
    thresholds, evaluated over the series of tests/alerts/floe_test.yaml by Prometheus's
    own engine (`promtool test rules`; $FLOE_PROMTOOL or promtool on PATH)."""
    print("alerts under promtool test rules:")
    promtool = os.environ.get("FLOE_PROMTOOL") or shutil.which("promtool")
    if not promtool:
        checker.check("promtool test rules", False, "no promtool: scripts/bootstrap.sh installs it")
        return
    documents = render(load_values(sets=["prometheusRule.enabled=true"]))
    rule = find(documents, "PrometheusRule")
    job = headless_service(documents)
    groups = copy.deepcopy(rule["spec"]["groups"])
    for group in groups:
        for item in group["rules"]:
            # The texts are for people; the tests hold the expressions and labels.
            item.pop("annotations", None)
    with tempfile.TemporaryDirectory() as scratch:
        Path(scratch, "rules.yaml").write_text(yaml.safe_dump({"groups": groups}))
        Path(scratch, "floe_test.yaml").write_text(ALERT_TESTS.read_text().replace("$JOB", job))
        result = subprocess.run([promtool, "test", "rules", "floe_test.yaml"], cwd=scratch,
                                capture_output=True, text=True, timeout=120)
    checker.check(f"promtool test rules {ALERT_TESTS.relative_to(ROOT)} (job={job})",
                  result.returncode == 0, (result.stdout + result.stderr).strip())


def check_render(checker: Checker) -> dict[str, list[dict[str, Any]]]:
    print(f"render and kubernetes-validate {KUBE_VERSION} --strict:")
    rendered = {}
    documentation = documented_settings()
    for label, values in value_files():
        try:
            documents = render(values)
        except (helm.HelmError, yaml.YAMLError) as error:
            checker.check(f"render {label}", False, str(error))
            continue
        rendered[label] = documents
        kinds = [document["kind"] for document in documents]
        errors = validation_errors(documents)
        skipped = [k for k in kinds if any(k == crd for _, crd in CRD_KINDS)]
        summary = ", ".join(f"{kinds.count(k)} {k}" for k in sorted(set(kinds)))
        checker.check(f"render {label}: {summary}", not errors, "; ".join(errors))
        if skipped:
            print(f"        ({', '.join(skipped)}: custom resource, no schema in kubernetes-validate; structure checked)")
        checker.run(f"broker pod of {label}", lambda: check_broker(documents, values, documentation))
    return rendered


def validation_errors(documents: list[dict[str, Any]]) -> list[str]:
    """kubernetes-validate's complaints about `documents` (the structural check for CRDs)."""
    errors = []
    for document in documents:
        template = document.pop("__template__")
        try:
            if (document["apiVersion"], document["kind"]) in CRD_KINDS:
                check_crd(document, documents)
            else:
                kubernetes_validate.validate(document, KUBE_VERSION, strict=True)
        except Exception as error:  # noqa: BLE001
            message = getattr(error, "message", str(error))
            path = ".".join(str(p) for p in getattr(error, "path", []))
            errors.append(f"{template} {document['kind']} {path}: {message}")
        document["__template__"] = template
    return errors


def env_map(container: dict[str, Any]) -> dict[str, Any]:
    return {entry["name"]: entry.get("value", entry.get("valueFrom")) for entry in container.get("env", [])}


def check_broker(documents: list[dict[str, Any]], values: dict[str, Any], documentation: dict[str, dict[str, str]]) -> None:
    deployment = broker_deployment(documents)
    pod = deployment["spec"]["template"]
    container = next(c for c in pod["spec"]["containers"] if c["name"] == "floe")
    env = env_map(container)
    assert container["command"] == ["floe"], container["command"]
    assert container["args"][:2] == ["serve", "--config"], container["args"]
    config_path = container["args"][2]
    assert env["FLOE_BROKER__ID"] == {"fieldRef": {"fieldPath": "metadata.name"}}, env["FLOE_BROKER__ID"]
    assert env["POD_IP"] == {"fieldRef": {"fieldPath": "status.podIP"}}, env["POD_IP"]
    names = [entry["name"] for entry in container["env"]]
    assert names.index("POD_IP") < names.index("FLOE_SERVER__ADVERTISE"), "POD_IP must precede its use"
    check_advertise(documents, pod, env, names)
    assert env["FLOE_SERVER__LISTEN"] == "0.0.0.0:8080", env["FLOE_SERVER__LISTEN"]
    assert env["FLOE_SERVER__LOG_FORMAT"] in ("json", "text")
    for name in env:
        if name.startswith("FLOE_") and "__" in name:
            section, key = name[5:].lower().split("__", 1)
            assert key in documentation.get(section, {}), f"{name} is no setting of docs/configuration.md"
    assert pod["spec"]["enableServiceLinks"] is False, "service links add FLOE_* variables"
    assert "checksum/config" in pod["metadata"]["annotations"], "no checksum/config annotation"
    assert container["startupProbe"]["httpGet"]["path"] == "/healthz"
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    pre_stop = container.get("lifecycle", {}).get("preStop", {})
    assert set(pre_stop) <= {"sleep"}, f"preStop must use the sleep action, not {sorted(pre_stop)}"
    security = container["securityContext"]
    assert security["readOnlyRootFilesystem"] and not security["allowPrivilegeEscalation"], security
    assert pod["spec"]["securityContext"]["runAsNonRoot"], pod["spec"]["securityContext"]

    config_map = find(documents, "ConfigMap", deployment["metadata"]["name"])
    settings = tomllib.loads(config_map["data"]["floe.toml"])
    for section, keys in settings.items():
        assert section in documentation, f"floe.toml: unknown section [{section}]"
        for key, value in keys.items():
            assert key in documentation[section], f"floe.toml: {section}.{key} is not in docs/configuration.md"
            # Only a setting documented as a number may be fractional; integers stay integers.
            shown = setting_schema(f"{section}.{key}", documentation[section][key])["type"]
            assert shown == "number" or not isinstance(value, float), f"floe.toml: {section}.{key} = {value} is a float"
            kinds = {bool: "boolean", int: "integer", float: "number", str: "string", list: "array", dict: "object"}
            kind = kinds[type(value)]
            assert kind == shown or (isinstance(shown, list) and kind in shown), f"floe.toml: {section}.{key} = {value!r} is not a {shown}"
    for owned in ("listen", "advertise", "log_format"):
        assert owned not in settings.get("server", {}), f"floe.toml sets server.{owned}, which the environment overrides"
    assert "id" not in settings.get("broker", {}), "floe.toml sets broker.id"
    assert re.match(r"^s3://[^/]+", settings["store"]["url"]), settings["store"]["url"]
    assert settings["cluster"]["etcd"], "no [cluster] etcd"

    mounts = {mount["mountPath"]: mount["name"] for mount in container["volumeMounts"]}
    volumes = {volume["name"]: volume for volume in pod["spec"]["volumes"]}
    assert config_path.rsplit("/", 1)[0] in mounts, f"{config_path} is not mounted"
    assert "configMap" in volumes[mounts[config_path.rsplit("/", 1)[0]]]
    assert settings["server"]["data_dir"] in mounts, "server.data_dir is not on a volume"
    check_files_mounted(settings, container, pod["spec"])
    if authenticates(settings):
        assert "allow_anonymous" not in settings.get("auth", {}), "auth.allow_anonymous with authentication on"
        assert not any("--allow-anonymous" in arg for arg in container["args"]), container["args"]
        assert "FLOE_AUTH__ALLOW_ANONYMOUS" not in env, "FLOE_AUTH__ALLOW_ANONYMOUS with authentication on"
    disk_bytes = settings["cache"]["disk_bytes"]
    if disk_bytes:
        cache_volume = volumes[mounts[settings["cache"]["dir"]]]
        if "emptyDir" in cache_volume:
            limit = quantity_bytes(cache_volume["emptyDir"]["sizeLimit"])
        else:
            limit = quantity_bytes(cache_volume["ephemeral"]["volumeClaimTemplate"]["spec"]["resources"]["requests"]["storage"])
        assert 0 < disk_bytes < limit, f"cache.disk_bytes {disk_bytes} is not below the volume's {limit}"


def check_advertise(documents: list[dict[str, Any]], pod: dict[str, Any], env: dict[str, Any], names: list[str]) -> None:
    """Without TLS a broker advertises its IP; with TLS a DNS name of the headless Service
    that a wildcard certificate covers, and the internal listener mirrors the public one."""
    advertise = env["FLOE_SERVER__ADVERTISE"]
    if "https://" not in advertise:
        assert advertise == "http://$(POD_IP):8080", advertise
        assert "subdomain" not in pod["spec"], pod["spec"]["subdomain"]
        host = "$(POD_IP)"
    else:
        headless = find(documents, "Service", pod["spec"]["subdomain"])
        assert headless["spec"]["clusterIP"] == "None", "the pods' subdomain must be the headless Service"
        host = f"$(POD_NAME).{pod['spec']['subdomain']}.{NAMESPACE}.svc"
        assert advertise == f"https://{host}:8080", advertise
        assert env["POD_NAME"] == {"fieldRef": {"fieldPath": "metadata.name"}}, env["POD_NAME"]
        assert names.index("POD_NAME") < names.index("FLOE_SERVER__ADVERTISE"), "POD_NAME must precede its use"
    internal = env.get("FLOE_SERVER__INTERNAL_LISTEN")
    assert ("FLOE_SERVER__INTERNAL_ADVERTISE" in env) == (internal is not None), "internal listen and advertise go together"
    if internal is not None:
        port = internal.removeprefix("0.0.0.0:")
        scheme = advertise.split("://")[0]
        assert env["FLOE_SERVER__INTERNAL_ADVERTISE"] == f"{scheme}://{host}:{port}", env["FLOE_SERVER__INTERNAL_ADVERTISE"]


def check_files_mounted(settings: dict[str, Any], container: dict[str, Any], pod_spec: dict[str, Any]) -> None:
    """Every `*_file` setting of floe.toml is an item of a Secret mounted read-only."""
    mounts = {mount["mountPath"]: mount for mount in container["volumeMounts"]}
    volumes = {volume["name"]: volume for volume in pod_spec["volumes"]}
    for section, keys in settings.items():
        for key, value in keys.items():
            if not key.endswith("_file"):
                continue
            directory, name = value.rsplit("/", 1)
            assert directory in mounts, f"{section}.{key} = {value}: {directory} is not mounted"
            mount = mounts[directory]
            assert mount.get("readOnly") and "subPath" not in mount, f"{section}.{key}: mount it read-only, whole (a subPath never updates)"
            secret = volumes[mount["name"]].get("secret")
            assert secret, f"{section}.{key}: {directory} is not a Secret"
            paths = [item["path"] for item in secret.get("items", [])]
            assert name in paths, f"{section}.{key}: Secret {secret['secretName']} mounts {paths}, not {name}"


def authenticates(settings: dict[str, Any]) -> bool:
    """Whether floe with these settings makes requests authenticate (docs/configuration.md)."""
    auth = settings.get("auth", {})
    server = settings.get("server", {})
    return any(key in auth for key in ("tokens_file", "jwks_file", "jwks_url")) or "tls_client_ca_file" in server


def quantity_bytes(quantity: str) -> int:
    units = {"": 1, "Ki": 1 << 10, "Mi": 1 << 20, "Gi": 1 << 30, "Ti": 1 << 40, "k": 10**3, "M": 10**6, "G": 10**9, "T": 10**12}
    match = re.fullmatch(r"([0-9]+)([A-Za-z]*)", str(quantity))
    assert match and match.group(2) in units, quantity
    return int(match.group(1)) * units[match.group(2)]


# ------------------------------------------------------------------- security values

# An external etcd over TLS and an S3 endpoint with a private CA need production values.
PRODUCTION: dict[str, Any] = {
    "store": {"url": "s3://acme-floe/prod", "s3Endpoint": "https://s3.storage.svc:9000", "credentials": {"existingSecret": "floe-s3"}},
    "etcd": {"endpoints": ["https://etcd-0.etcd.etcd.svc:2379"], "dev": {"enabled": False}},
    "minio": {"dev": {"enabled": False}},
}
JWT = {"issuer": "https://idp.example.com/realms/acme", "audience": "floe", "jwksUrl": "https://idp.example.com/realms/acme/certs"}


class Broker:
    """The broker pod of a render, with what the security checks look at."""

    def __init__(self, documents: list[dict[str, Any]]) -> None:
        self.documents = documents
        deployment = broker_deployment(documents)
        self.pod = deployment["spec"]["template"]["spec"]
        self.container = next(c for c in self.pod["containers"] if c["name"] == "floe")
        self.env = env_map(self.container)
        self.settings = tomllib.loads(find(documents, "ConfigMap", deployment["metadata"]["name"])["data"]["floe.toml"])

    def setting(self, path: str) -> Any:
        section, key = path.split(".")
        return self.settings.get(section, {}).get(key)

    def secret_volume(self, mount_path: str) -> dict[str, Any]:
        """The Secret mounted at `mount_path`, {secretName, items}; read-only, no subPath."""
        mount = next(m for m in self.container["volumeMounts"] if m["mountPath"] == mount_path)
        assert mount.get("readOnly") is True and "subPath" not in mount, mount
        volume = next(v for v in self.pod["volumes"] if v["name"] == mount["name"])
        return volume["secret"]

    def items(self, mount_path: str) -> dict[str, str]:
        return {item["key"]: item["path"] for item in self.secret_volume(mount_path)["items"]}

    def anonymous(self) -> bool:
        """Whether the chart lets floe serve without authentication, by any route."""
        return bool(
            self.setting("auth.allow_anonymous")
            or "FLOE_AUTH__ALLOW_ANONYMOUS" in self.env
            or any("allow-anonymous" in arg for arg in self.container["command"] + self.container["args"])
        )


def test_pod(documents: list[dict[str, Any]]) -> dict[str, Any]:
    return next(d for d in documents if d["kind"] == "Pod" and d["metadata"].get("annotations", {}).get("helm.sh/hook") == "test")


def test_steps(documents: list[dict[str, Any]]) -> list[dict[str, Any]]:
    spec = test_pod(documents)["spec"]
    return spec["initContainers"] + spec["containers"]


def service_monitor_endpoint(documents: list[dict[str, Any]]) -> dict[str, Any]:
    return find(documents, "ServiceMonitor")["spec"]["endpoints"][0]


def broker_policy(documents: list[dict[str, Any]]) -> dict[str, Any]:
    return next(
        d for d in documents
        if d["kind"] == "NetworkPolicy" and d["spec"]["podSelector"]["matchLabels"].get("app.kubernetes.io/component") == "broker"
    )


def expect_equal(actual: Any, expected: Any, what: str) -> None:
    assert actual == expected, f"{what}: {actual!r}, expected {expected!r}"


def security_defaults(documents: list[dict[str, Any]]) -> None:
    broker = Broker(documents)
    assert broker.anonymous(), "without authentication the brokers need auth.allow_anonymous on 0.0.0.0"
    for key in ("tls_cert_file", "tls_key_file", "tls_client_ca_file", "peer_ca_file", "internal_listen"):
        assert broker.setting(f"server.{key}") is None, key
    expect_equal(broker.env["FLOE_SERVER__ADVERTISE"], "http://$(POD_IP):8080", "advertise")
    for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
        assert "scheme" not in broker.container[probe]["httpGet"], probe
    assert all(step["args"][1].startswith("http://") for step in test_steps(documents)), "helm test over http"


def security_tls(documents: list[dict[str, Any]]) -> None:
    broker = Broker(documents)
    expect_equal(broker.setting("server.tls_cert_file"), "/etc/floe-tls/tls.crt", "server.tls_cert_file")
    expect_equal(broker.setting("server.tls_key_file"), "/etc/floe-tls/tls.key", "server.tls_key_file")
    expect_equal(broker.setting("server.peer_ca_file"), "/etc/floe-tls/ca.crt", "server.peer_ca_file")
    expect_equal(broker.secret_volume("/etc/floe-tls")["secretName"], "floe-tls", "the tls volume")
    expect_equal(broker.items("/etc/floe-tls"), {"tls.crt": "tls.crt", "tls.key": "tls.key", "ca.crt": "ca.crt"}, "the tls items")
    for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
        expect_equal(broker.container[probe]["httpGet"].get("scheme"), "HTTPS", f"{probe} scheme")
    expect_equal(broker.env["FLOE_SERVER__ADVERTISE"], f"https://$(POD_NAME).floe-headless.{NAMESPACE}.svc:8080", "advertise")
    expect_equal(broker.pod.get("subdomain"), "floe-headless", "the pods' subdomain")
    assert broker.anonymous(), "TLS alone authenticates nobody: allow_anonymous stays"
    endpoint = service_monitor_endpoint(documents)
    expect_equal(endpoint["scheme"], "https", "ServiceMonitor scheme")
    expect_equal(endpoint["tlsConfig"], {"serverName": f"floe.{NAMESPACE}.svc", "ca": {"secret": {"name": "floe-tls", "key": "ca.crt"}}}, "ServiceMonitor tlsConfig")
    pod = test_pod(documents)
    for step in test_steps(documents):
        assert step["args"][:2] == ["-s", "https://floe:8080"], step["args"]
        ca = env_map(step)["FLOE_CA"]
        assert any(ca.startswith(m["mountPath"] + "/") for m in step["volumeMounts"]), f"{step['name']}: FLOE_CA {ca} is not mounted"
    secrets = [v["secret"] for v in pod["spec"]["volumes"] if "secret" in v]
    expect_equal(secrets, [{"secretName": "floe-tls", "items": [{"key": "ca.crt", "path": "ca.crt"}]}], "the test pod's Secrets (never tls.key)")


def security_tls_public_ca(documents: list[dict[str, Any]]) -> None:
    broker = Broker(documents)
    assert broker.setting("server.peer_ca_file") is None, "tls.peerCa false: the system's roots"
    expect_equal(broker.items("/etc/floe-tls"), {"tls.crt": "tls.crt", "tls.key": "tls.key"}, "the tls items")
    expect_equal(service_monitor_endpoint(documents)["tlsConfig"], {"serverName": f"floe.{NAMESPACE}.svc"}, "ServiceMonitor tlsConfig")
    assert all("FLOE_CA" not in env_map(step) for step in test_steps(documents)), "FLOE_CA without a CA"


def security_mutual_tls(documents: list[dict[str, Any]]) -> None:
    broker = Broker(documents)
    expect_equal(broker.setting("server.tls_client_ca_file"), "/etc/floe-tls-client-ca/ca.crt", "server.tls_client_ca_file")
    expect_equal(broker.secret_volume("/etc/floe-tls-client-ca")["secretName"], "clients-ca", "the client CA volume")
    expect_equal(broker.items("/etc/floe-tls-client-ca"), {"bundle.pem": "ca.crt"}, "the client CA items")
    assert not broker.anonymous(), "mutual TLS authenticates: no allow_anonymous"


def security_jwt(documents: list[dict[str, Any]]) -> None:
    broker = Broker(documents)
    expect_equal(broker.setting("auth.jwt_issuer"), JWT["issuer"], "auth.jwt_issuer")
    expect_equal(broker.setting("auth.jwt_audience"), JWT["audience"], "auth.jwt_audience")
    expect_equal(broker.setting("auth.jwks_url"), JWT["jwksUrl"], "auth.jwks_url")
    expect_equal(broker.setting("auth.jwt_principal_claim"), "email", "auth.jwt_principal_claim")
    expect_equal(broker.setting("auth.jwks_ca_file"), "/etc/floe-jwks-ca/ca.crt", "auth.jwks_ca_file")
    expect_equal(broker.items("/etc/floe-jwks-ca"), {"ca.crt": "ca.crt"}, "the JWKS CA items")
    assert not broker.anonymous(), "--allow-anonymous passed with JWTs on"


def security_jwt_default_claim(documents: list[dict[str, Any]]) -> None:
    broker = Broker(documents)
    expect_equal(broker.setting("auth.jwt_principal_claim"), "sub", "auth.jwt_principal_claim")
    assert broker.setting("auth.jwks_ca_file") is None, "no JWKS CA without jwksCaSecret"
    assert not broker.anonymous(), "--allow-anonymous passed with JWTs on"


def security_internal_secret(documents: list[dict[str, Any]]) -> None:
    broker = Broker(documents)
    expect_equal(broker.setting("auth.internal_secret_file"), "/etc/floe-internal-secret/secret", "auth.internal_secret_file")
    expect_equal(broker.secret_volume("/etc/floe-internal-secret")["secretName"], "floe-internal", "the internal secret volume")
    expect_equal(broker.items("/etc/floe-internal-secret"), {"secret": "secret"}, "the internal secret items")


def security_etcd_tls(documents: list[dict[str, Any]]) -> None:
    broker = Broker(documents)
    expect_equal(broker.setting("cluster.etcd_ca_file"), "/etc/floe-etcd-tls/ca.crt", "cluster.etcd_ca_file")
    expect_equal(broker.setting("cluster.etcd_cert_file"), "/etc/floe-etcd-tls/tls.crt", "cluster.etcd_cert_file")
    expect_equal(broker.setting("cluster.etcd_key_file"), "/etc/floe-etcd-tls/tls.key", "cluster.etcd_key_file")
    expect_equal(broker.items("/etc/floe-etcd-tls"), {"ca.crt": "ca.crt", "tls.crt": "tls.crt", "tls.key": "tls.key"}, "the etcd items")
    expect_equal(broker.setting("cluster.etcd"), "https://etcd-0.etcd.etcd.svc:2379", "cluster.etcd")


def security_etcd_ca_only(documents: list[dict[str, Any]]) -> None:
    broker = Broker(documents)
    expect_equal(broker.setting("cluster.etcd_ca_file"), "/etc/floe-etcd-tls/ca.crt", "cluster.etcd_ca_file")
    assert broker.setting("cluster.etcd_cert_file") is None and broker.setting("cluster.etcd_key_file") is None, "no client certificate"
    expect_equal(broker.items("/etc/floe-etcd-tls"), {"ca.crt": "ca.crt"}, "the etcd items")


def security_s3_ca(documents: list[dict[str, Any]]) -> None:
    broker = Broker(documents)
    expect_equal(broker.setting("store.s3_ca_file"), "/etc/floe-s3-ca/ca.crt", "store.s3_ca_file")
    expect_equal(broker.items("/etc/floe-s3-ca"), {"ca.crt": "ca.crt"}, "the S3 CA items")
    job = next(d for d in documents if d["kind"] == "Job")
    spec = job["spec"]["template"]["spec"]
    args = spec["containers"][0]["args"]
    expect_equal(args[args.index("--s3-ca") + 1], "/etc/floe-s3-ca/ca.crt", "the bucket Job's --s3-ca")
    mounts = {m["mountPath"]: m["name"] for m in spec["containers"][0]["volumeMounts"]}
    volume = next(v for v in spec["volumes"] if v["name"] == mounts["/etc/floe-s3-ca"])
    expect_equal(volume["secret"]["secretName"], "s3-ca", "the bucket Job's CA volume")


def security_metrics_token(documents: list[dict[str, Any]]) -> None:
    endpoint = service_monitor_endpoint(documents)
    expect_equal(endpoint["authorization"], {"type": "Bearer", "credentials": {"name": "prometheus-floe", "key": "floe-token"}}, "ServiceMonitor authorization")
    expect_equal(endpoint["scheme"], "http", "ServiceMonitor scheme without TLS")
    assert "tlsConfig" not in endpoint, "tlsConfig without TLS"


def security_internal_port(documents: list[dict[str, Any]], public_rule: dict[str, Any]) -> None:
    broker = Broker(documents)
    expect_equal(broker.env["FLOE_SERVER__INTERNAL_LISTEN"], "0.0.0.0:9093", "FLOE_SERVER__INTERNAL_LISTEN")
    expect_equal(broker.env["FLOE_SERVER__INTERNAL_ADVERTISE"], "http://$(POD_IP):9093", "FLOE_SERVER__INTERNAL_ADVERTISE")
    ports = {port["name"]: port["containerPort"] for port in broker.container["ports"]}
    expect_equal(ports, {"http": 8080, "internal": 9093}, "container ports")
    rules = broker_policy(documents)["spec"]["ingress"]
    expect_equal(len(rules), 2, "broker NetworkPolicy rules")
    expect_equal(rules[0], public_rule, "the public port's rule (unchanged by internalPort)")
    selector = broker_deployment(documents)["spec"]["selector"]["matchLabels"]
    expect_equal(rules[1], {"ports": [{"port": "internal", "protocol": "TCP"}], "from": [{"podSelector": {"matchLabels": selector}}]}, "the internal port's rule")
    for service in (d for d in documents if d["kind"] == "Service" and d["metadata"]["name"].startswith("floe") and "headless" not in d["metadata"]["name"]):
        assert all(port["targetPort"] != "internal" for port in service["spec"]["ports"]), f"Service {service['metadata']['name']} publishes the internal port"


def security_internal_port_tls(documents: list[dict[str, Any]]) -> None:
    broker = Broker(documents)
    expect_equal(broker.env["FLOE_SERVER__INTERNAL_ADVERTISE"], f"https://$(POD_NAME).floe-headless.{NAMESPACE}.svc:9093", "FLOE_SERVER__INTERNAL_ADVERTISE")
    rules = broker_policy(documents)["spec"]["ingress"]
    assert "from" not in rules[0], "allowExternal opens the public port to every source"
    assert rules[1]["from"], "allowExternal must not open the internal port"


def security_test_token(documents: list[dict[str, Any]]) -> None:
    for step in test_steps(documents):
        expect_equal(env_map(step).get("FLOE_TOKEN"), {"secretKeyRef": {"name": "helm-test-token", "key": "token"}}, f"{step['name']} FLOE_TOKEN")


def check_security(checker: Checker) -> None:
    print("security values render what they stand for:")
    tls = {"tls": {"secret": "floe-tls"}}
    public_rule = broker_policy(render({"networkPolicy": {"enabled": True}}))["spec"]["ingress"][0]
    cases: list[tuple[str, dict[str, Any], Callable[[list[dict[str, Any]]], None]]] = [
        ("defaults: plain HTTP, anonymous", {}, security_defaults),
        ("tls.secret: HTTPS, peer CA, probes, advertise, ServiceMonitor, helm test", deep_merge(tls, {"serviceMonitor": {"enabled": True}}), security_tls),
        ("tls.peerCa false: the system's roots", {"tls": {"secret": "floe-tls", "peerCa": False}, "serviceMonitor": {"enabled": True}}, security_tls_public_ca),
        ("tls.clientCaSecret: mutual TLS, no allow_anonymous", {"tls": {"secret": "floe-tls", "clientCaSecret": "clients-ca", "clientCaKey": "bundle.pem"}}, security_mutual_tls),
        ("auth.jwt: JWT settings, no --allow-anonymous", {"auth": {"jwt": dict(JWT, principalClaim="email", jwksCaSecret="idp-ca"), "allowAnonymous": True}}, security_jwt),
        ("auth.jwt: principal claim sub by default", {"auth": {"jwt": JWT}}, security_jwt_default_claim),
        ("auth.internalSecret", {"auth": {"internalSecret": "floe-internal"}}, security_internal_secret),
        ("etcd.tls: CA and client certificate", deep_merge(PRODUCTION, {"etcd": {"tls": {"secret": "etcd-client"}}}), security_etcd_tls),
        ("etcd.tls: CA only", deep_merge(PRODUCTION, {"etcd": {"tls": {"secret": "etcd-ca", "clientCertificate": False}}}), security_etcd_ca_only),
        ("store.s3CaSecret: brokers and the bucket Job", deep_merge(PRODUCTION, {"store": {"s3CaSecret": "s3-ca", "initBucket": {"enabled": True}}}), security_s3_ca),
        ("serviceMonitor.bearerTokenSecret", {"serviceMonitor": {"enabled": True, "bearerTokenSecret": {"name": "prometheus-floe", "key": "floe-token"}}}, security_metrics_token),
        ("internalPort: listener, port, NetworkPolicy", {"internalPort": 9093, "networkPolicy": {"enabled": True}}, lambda d: security_internal_port(d, public_rule)),
        ("internalPort with TLS and allowExternal", deep_merge(tls, {"internalPort": 9093, "networkPolicy": {"enabled": True, "allowExternal": True}}), security_internal_port_tls),
        ("tests.tokenSecret", {"tests": {"tokenSecret": {"name": "helm-test-token"}}}, security_test_token),
    ]
    documentation = documented_settings()
    for name, values, check in cases:
        def run(values: dict[str, Any] = values, check: Callable[[list[dict[str, Any]]], None] = check) -> None:
            documents = render(values)
            errors = validation_errors(documents)
            assert not errors, "; ".join(errors)
            check_broker(documents, values, documentation)
            check(documents)

        checker.run(f"security: {name}", run)


# (case, values over the defaults, strings of which one must be in the message)
BAD_VALUES: list[tuple[str, dict[str, Any], list[str]]] = [
    ("no etcd endpoints with etcd.dev off", {"etcd": {"dev": {"enabled": False}}}, ["etcd/endpoints", "etcd.endpoints"]),
    ("etcd endpoints and etcd.dev both", {"etcd": {"endpoints": ["http://etcd:2379"]}}, ["etcd/endpoints", "etcd.endpoints"]),
    ("store.url without a bucket", {"store": {"url": "s3:///prefix"}}, ["store/url", "store.url"]),
    ("store.url s3:// alone", {"store": {"url": "s3://"}}, ["store/url", "store.url"]),
    ("store.url not on S3", {"store": {"url": "file:///var/lib/floe/objects"}}, ["store/url", "store.url"]),
    ("replicaCount 0", {"replicaCount": 0}, ["replicaCount"]),
    ("replicaCount a string", {"replicaCount": "three"}, ["replicaCount"]),
    ("unknown top-level value", {"replicas": 3}, ["replicas"]),
    ("cache.disk.size a fraction", {"cache": {"disk": {"size": "4.5Gi"}}}, ["cache/disk/size", "cache.disk.size"]),
    ("unknown floe setting", {"config": {"broker": {"lingr": "5ms"}}}, ["lingr"]),
    ("unknown floe section", {"config": {"brokers": {"linger": "5ms"}}}, ["brokers"]),
    ("floe setting of the wrong type", {"config": {"broker": {"linger": 5}}}, ["config/broker/linger", "config.broker.linger"]),
    ("a setting the chart derives", {"config": {"server": {"listen": "0.0.0.0:9090"}}}, ["config.server.listen"]),
    ("store in config instead of store.url", {"config": {"store": {"url": "s3://other"}}}, ["config.store.url"]),
    ("ingress publishing /", {"ingress": {"enabled": True, "hosts": [{"host": "a", "paths": [{"path": "/"}]}]}}, ["ingress"]),
    ("bundled MinIO with a short password", {"minio": {"dev": {"rootPassword": "short"}}}, ["rootPassword"]),
    ("autoscaling min above max", {"autoscaling": {"enabled": True, "minReplicas": 5, "maxReplicas": 3}}, ["autoscaling.minReplicas"]),
    ("preStop sleep past the grace period", {"preStopSleepSeconds": 60, "terminationGracePeriodSeconds": 30}, ["preStopSleepSeconds"]),
    ("logFormat not json or text", {"logFormat": "xml"}, ["logFormat"]),
    ("an alert label overriding the severity", {"prometheusRule": {"enabled": True, "alertLabels": {"severity": "page"}}}, ["prometheusRule/alertLabels", "prometheusRule.alertLabels"]),
    ("an alert threshold as a duration", {"prometheusRule": {"enabled": True, "produceLatencyP99Seconds": "1s"}}, ["prometheusRule/produceLatencyP99Seconds", "prometheusRule.produceLatencyP99Seconds"]),
    ("mutual TLS without tls.secret", {"tls": {"clientCaSecret": "clients-ca"}}, ["tls.clientCaSecret"]),
    ("JWTs without an audience", {"auth": {"jwt": {"issuer": "https://idp", "jwksUrl": "https://idp/certs"}}}, ["auth.jwt", "auth/jwt"]),
    ("JWTs without a JWKS URL", {"auth": {"jwt": {"issuer": "https://idp", "audience": "floe"}}}, ["auth.jwt.jwksUrl"]),
    ("a JWKS CA without a JWKS URL", {"auth": {"jwt": {"jwksCaSecret": "idp-ca"}}}, ["auth.jwt.jwksCaSecret"]),
    ("etcd.tls with the development etcd", {"etcd": {"tls": {"secret": "etcd-ca"}}}, ["etcd.tls.secret"]),
    ("etcd.tls with an http:// endpoint", deep_merge(PRODUCTION, {"etcd": {"endpoints": ["http://etcd:2379"], "tls": {"secret": "etcd-ca"}}}), ["etcd.endpoints"]),
    ("store.s3CaSecret with the plain-HTTP MinIO", {"store": {"s3CaSecret": "s3-ca"}}, ["store.s3CaSecret"]),
    ("internalPort the public port", {"internalPort": 8080}, ["internalPort"]),
    ("a TLS file in config instead of tls.secret", {"config": {"server": {"tls_cert_file": "/etc/x.pem"}}}, ["config.server.tls_cert_file"]),
    ("allow_anonymous in config", {"config": {"auth": {"allow_anonymous": True}}}, ["config.auth.allow_anonymous"]),
    ("a JWT issuer in config instead of auth.jwt", {"config": {"auth": {"jwt_issuer": "https://idp"}}}, ["config.auth.jwt_issuer"]),
]
# Cases a template `fail` catches too: they must fail with schema validation skipped.
TEMPLATE_CASES = {
    "no etcd endpoints with etcd.dev off",
    "etcd endpoints and etcd.dev both",
    "store.url without a bucket",
    "store.url s3:// alone",
    "store.url not on S3",
    "a setting the chart derives",
    "unknown floe section",
    "ingress publishing /",
    "mutual TLS without tls.secret",
    "JWTs without an audience",
    "JWTs without a JWKS URL",
    "a JWKS CA without a JWKS URL",
    "etcd.tls with the development etcd",
    "etcd.tls with an http:// endpoint",
    "store.s3CaSecret with the plain-HTTP MinIO",
    "internalPort the public port",
    "a TLS file in config instead of tls.secret",
}


def check_bad_values(checker: Checker) -> None:
    print("bad values fail, naming the value (template checks also with the schema left out):")
    with tempfile.TemporaryDirectory() as scratch:
        schemaless = Path(scratch) / "floe"
        shutil.copytree(CHART, schemaless)
        (schemaless / "values.schema.json").unlink()
        check_each_bad_value(checker, schemaless)


def check_each_bad_value(checker: Checker, schemaless: Path) -> None:
    for case, overrides, names in BAD_VALUES:
        try:
            render(overrides)
        except helm.HelmError as error:
            message = str(error)
            named = any(name in message for name in names)
            checker.check(f"refused: {case}", named, f"the message does not name {names[0]}: {message}")
            if named:
                print(f"        -> {one_line(message)}")
        else:
            checker.check(f"refused: {case}", False, "rendered without an error")
        if case in TEMPLATE_CASES:
            try:
                render(overrides, schemaless)
            except helm.HelmError as error:
                named = any(name in str(error) for name in names)
                checker.check(f"refused without the schema: {case}", named, f"the message does not name {names[0]}: {error}")
                if named:
                    print(f"        -> {one_line(str(error))}")
            else:
                checker.check(f"refused without the schema: {case}", False, "rendered without an error")


def one_line(message: str) -> str:
    lines = [line.strip() for line in message.splitlines() if line.strip()]
    relevant = [line for line in lines if line.startswith("- at") or "error calling fail" in line or "execution error" in line]
    text = (relevant or lines)[-1]
    return text if len(text) < 180 else text[:177] + "..."


def run_checks() -> int:
    helm.disable_logging()
    print(f"chart {CHART.relative_to(ROOT)} (helm SDK {helm.helm_sdk_version()}, kubernetes-validate {kubernetes_validate.__version__})")
    checker = Checker()
    check_lint(checker)
    check_generated(checker)
    check_render(checker)
    check_alerts(checker)
    check_security(checker)
    check_bad_values(checker)
    print(f"{checker.passed} checks passed, {len(checker.failures)} failed")
    for failure in checker.failures:
        print(f"FAILED {failure}")
    return 1 if checker.failures else 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--deployment-env", metavar="VALUES_FILE", help="print the broker container's settings as JSON")
    mode.add_argument("--write-config-schema", action="store_true", help="regenerate values.schema.json's config")
    mode.add_argument("--write-readme", action="store_true", help="regenerate README.md's values table")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="with --deployment-env: a value over the file, as helm --set")
    args = parser.parse_args()
    if args.deployment_env:
        helm.disable_logging()
        try:
            settings = deployment_env(load_values(args.deployment_env, sets=args.set))
        except (helm.HelmError, OSError, yaml.YAMLError) as error:
            print(f"chart_check: {args.deployment_env}: {error}", file=sys.stderr)
            return 2
        print(json.dumps(settings, indent=2))
        return 0
    if args.write_config_schema:
        write_config_schema()
        return 0
    if args.write_readme:
        write_readme()
        return 0
    return run_checks()


if __name__ == "__main__":
    sys.exit(main())
