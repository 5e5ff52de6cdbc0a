#!/usr/bin/env python3
"""Checks the Helm chart helm/floe without a Kubernetes cluster.

Needs `pip install helm-python-sdk kubernetes-validate pyyaml` (Helm's own Go library
through helm_python, and the Kubernetes OpenAPI schemas). Modes:

  scripts/chart_check.py
      every check below; exits 1 on any failure, printing what it checked:
      - `helm lint --strict` of the defaults and of every ci/*.yaml: no errors, no warnings;
      - values.schema.json's `config` is the setting table of docs/configuration.md, and
        README.md's values table is the `# --` comments of values.yaml;
      - the defaults and every ci/*.yaml render, and every document passes
        kubernetes-validate for Kubernetes 1.31 in strict mode (ServiceMonitor, a CRD it
        has no schema for, gets a structural check instead);
      - the rendered floe.toml holds only settings docs/configuration.md lists, in known
        sections, with integers as integers; the broker Deployment gets the per-pod
        settings from the downward API, mounts what floe.toml points at, and is rolled by
        a change of it;
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
import re
import shutil
import sys
import tempfile
import tomllib
from pathlib import Path
from typing import Any, Callable

import helm_python as helm
import kubernetes_validate
import yaml

ROOT = Path(__file__).resolve().parent.parent
CHART = ROOT / "helm" / "floe"
DOCS = ROOT / "docs" / "configuration.md"
KUBE_VERSION = "1.31"
RELEASE = "floe"
NAMESPACE = "streams"
SECTIONS = ["server", "store", "broker", "cache", "sequencer", "cluster", "jobs", "groups", "auth", "quotas"]
# Custom resources kubernetes-validate has no schema for: checked structurally instead.
CRD_KINDS = {("monitoring.coreos.com/v1", "ServiceMonitor")}
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


def documented_settings() -> dict[str, dict[str, str]]:
    """The setting table of docs/configuration.md: {section: {key: default cell}}."""
    settings: dict[str, dict[str, str]] = {section: {} for section in SECTIONS}
    for line in DOCS.read_text().splitlines():
        match = re.match(r"^\| `([a-z_]+)\.([a-z_0-9]+)` \| [^|]* \| ([^|]*) \|", line)
        if match and match.group(1) in settings:
            settings[match.group(1)][match.group(2)] = match.group(3).strip()
    return settings


# Settings whose type the default column does not show.
SETTING_TYPES = {"store.s3_path_style": "boolean", "cluster.etcd": "string", "auth.tokens_file": "string"}
SETTING_SCHEMAS = {
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
        return {"type": "string", "minLength": 1, "description": "a duration: 250ms, 5s, 2m, 7days"}
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


def check_crd(document: dict[str, Any]) -> None:
    """A structural check of a ServiceMonitor, which kubernetes-validate has no schema for."""
    spec = document["spec"]
    assert spec["selector"]["matchLabels"], "empty selector"
    for endpoint in spec["endpoints"]:
        assert endpoint["port"] == "http" and endpoint["path"] == "/metrics", endpoint
        assert set(endpoint) <= {"port", "path", "scheme", "interval", "scrapeTimeout", "metricRelabelings", "relabelings"}, endpoint


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
        kinds = []
        errors = []
        for document in documents:
            template = document.pop("__template__")
            kinds.append(document["kind"])
            try:
                if (document["apiVersion"], document["kind"]) in CRD_KINDS:
                    check_crd(document)
                else:
                    kubernetes_validate.validate(document, KUBE_VERSION, strict=True)
            except Exception as error:  # noqa: BLE001
                message = getattr(error, "message", str(error))
                path = ".".join(str(p) for p in getattr(error, "path", []))
                errors.append(f"{template} {document['kind']} {path}: {message}")
            document["__template__"] = template
        skipped = [k for k in kinds if any(k == crd for _, crd in CRD_KINDS)]
        summary = ", ".join(f"{kinds.count(k)} {k}" for k in sorted(set(kinds)))
        checker.check(f"render {label}: {summary}", not errors, "; ".join(errors))
        if skipped:
            print(f"        ({', '.join(skipped)}: custom resource, no schema in kubernetes-validate; structure checked)")
        checker.run(f"broker pod of {label}", lambda: check_broker(documents, values, documentation))
    return rendered


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
    assert env["FLOE_SERVER__ADVERTISE"] == "http://$(POD_IP):8080", env["FLOE_SERVER__ADVERTISE"]
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
            assert not isinstance(value, float), f"floe.toml: {section}.{key} = {value} is a float"
            shown = setting_schema(f"{section}.{key}", documentation[section][key])["type"]
            kind = {bool: "boolean", int: "integer", str: "string"}[type(value)]
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
    disk_bytes = settings["cache"]["disk_bytes"]
    if disk_bytes:
        cache_volume = volumes[mounts[settings["cache"]["dir"]]]
        if "emptyDir" in cache_volume:
            limit = quantity_bytes(cache_volume["emptyDir"]["sizeLimit"])
        else:
            limit = quantity_bytes(cache_volume["ephemeral"]["volumeClaimTemplate"]["spec"]["resources"]["requests"]["storage"])
        assert 0 < disk_bytes < limit, f"cache.disk_bytes {disk_bytes} is not below the volume's {limit}"


def quantity_bytes(quantity: str) -> int:
    units = {"": 1, "Ki": 1 << 10, "Mi": 1 << 20, "Gi": 1 << 30, "Ti": 1 << 40, "k": 10**3, "M": 10**6, "G": 10**9, "T": 10**12}
    match = re.fullmatch(r"([0-9]+)([A-Za-z]*)", str(quantity))
    assert match and match.group(2) in units, quantity
    return int(match.group(1)) * units[match.group(2)]


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
