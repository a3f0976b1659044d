"""`make chart`: the Helm chart (deploy/helm/stepwise) linted by helm and its rendering validated by kubeconform
against the JSON Schemas committed in deploy/helm/schemas (kubeconform downloads nothing).

    python -m tools.deploy.chart            # helm lint --strict, helm template | kubeconform -strict
    python -m tools.deploy.chart schemas    # rewrite deploy/helm/schemas from the pinned sources

helm and kubeconform are built from the Go module proxy at the versions go.mod beside this file pins (go.sum checks
them), once per machine, into ~/.cache/stepwise (about 6 minutes on two cores from nothing: hence not part of
`make test`). The schemas: Kubernetes' own OpenAPI documents (the k8s.io/kubernetes module, api/openapi-spec/v3) and
the ServiceMonitor CRD that controller-gen makes from the Prometheus Operator's API types, each turned into a
standalone, strict JSON Schema (every $ref inlined, no property a schema does not name), for the kinds the chart
renders only.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from tools.dev.servers import cache_dir

ROOT = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent / "chart_tools"
CHART = ROOT / "deploy" / "helm" / "stepwise"
SCHEMAS = ROOT / "deploy" / "helm" / "schemas"
HELM, KUBECONFORM = "helm.sh/helm/v4", "github.com/yannh/kubeconform"
KUBERNETES, CONTROLLER_TOOLS = "k8s.io/kubernetes", "sigs.k8s.io/controller-tools"
MONITORING = "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring"
KINDS = {
    # kind: (OpenAPI document, schema name, kubeconform's file name)
    "Deployment": ("apis__apps__v1_openapi.json", "io.k8s.api.apps.v1.Deployment", "deployment-apps-v1"),
    "Service": ("api__v1_openapi.json", "io.k8s.api.core.v1.Service", "service-v1"),
    "ConfigMap": ("api__v1_openapi.json", "io.k8s.api.core.v1.ConfigMap", "configmap-v1"),
    "Secret": ("api__v1_openapi.json", "io.k8s.api.core.v1.Secret", "secret-v1"),
    "PodDisruptionBudget": (
        "apis__policy__v1_openapi.json",
        "io.k8s.api.policy.v1.PodDisruptionBudget",
        "poddisruptionbudget-policy-v1",
    ),
    "NetworkPolicy": (
        "apis__networking.k8s.io__v1_openapi.json",
        "io.k8s.api.networking.v1.NetworkPolicy",
        "networkpolicy-networking-v1",
    ),
}
SERVICE_MONITOR = "servicemonitor-monitoring-v1"


def pinned(module: str) -> str:
    match = re.search(rf"^\s*{re.escape(module)} (v\S+)$", (HERE / "go.mod").read_text(), re.MULTILINE)
    assert match, f"{HERE / 'go.mod'} does not pin {module}"
    return match.group(1)


def _go(*arguments: str, cwd: Path = HERE) -> str:
    env = {**os.environ, "GOFLAGS": "-mod=readonly"}
    done = subprocess.run(["go", *arguments], cwd=cwd, env=env, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"go {' '.join(arguments)} failed:\n{done.stdout}{done.stderr}")
    return done.stdout


def module_dir(module: str) -> Path:
    """The pinned module's source, downloaded through the Go module proxy and checked against go.sum."""
    return Path(json.loads(_go("mod", "download", "-json", module))["Dir"])


def tool(module: str, package: str, name: str) -> Path:
    """A Go tool built from its own module at the pinned version, cached per version."""
    target = cache_dir() / f"{name}-{pinned(module)}" / name
    if target.exists():
        return target
    print(f"building {name} {pinned(module)} from the Go module proxy (first run on this machine)…", flush=True)
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_suffix(f".{os.getpid()}.partial")
    _go("build", "-trimpath", "-o", str(partial), package, cwd=module_dir(module))
    partial.replace(target)
    return target


# The schemas.


def strict(schema: Any, resolve: Callable[[str], Any], seen: tuple[str, ...] = ()) -> Any:
    """A standalone, strict JSON Schema from an OpenAPI one: $refs inlined, no property a schema does not name."""
    if isinstance(schema, list):
        return [strict(item, resolve, seen) for item in schema]
    if not isinstance(schema, dict):
        return schema
    if "$ref" in schema:
        name = schema["$ref"].rsplit("/", 1)[-1]
        if name in seen:  # a recursive type: accept what it holds
            return {}
        return strict(resolve(name), resolve, (*seen, name))
    out = {key: strict(value, resolve, seen) for key, value in schema.items() if key != "description"}
    if len(out.get("allOf", [])) == 1:  # OpenAPI 3's way of giving a $ref a default
        out |= out.pop("allOf")[0]
    if out.get("nullable") is True and isinstance(out.get("type"), str):
        out["type"] = [out["type"], "null"]
    if out.pop("x-kubernetes-int-or-string", False):
        out["oneOf"] = [{"type": "string"}, {"type": "integer"}]
    if "properties" in out and "additionalProperties" not in out:
        out["additionalProperties"] = False
    return {key: value for key, value in out.items() if not key.startswith("x-kubernetes") and key != "nullable"}


def kubernetes_schema(specs: Path, document: str, name: str) -> dict[str, Any]:
    components = json.loads((specs / document).read_text())["components"]["schemas"]
    schema = strict(components[name], components.__getitem__)
    [gvk] = components[name]["x-kubernetes-group-version-kind"]
    group_version = f"{gvk['group']}/{gvk['version']}" if gvk["group"] else gvk["version"]
    schema["properties"]["apiVersion"] = {"type": "string", "enum": [group_version]}
    schema["properties"]["kind"] = {"type": "string", "enum": [gvk["kind"]]}
    return {"$schema": "http://json-schema.org/schema#", **schema}


def service_monitor_schema() -> dict[str, Any]:
    """The ServiceMonitor CRD's schema, made by controller-gen from the Prometheus Operator's API types."""
    generate = tool(CONTROLLER_TOOLS, "./cmd/controller-gen", "controller-gen")
    with tempfile.TemporaryDirectory() as work:
        source = Path(work) / "monitoring"
        shutil.copytree(module_dir(MONITORING), source)
        for path in (source, *source.rglob("*")):
            path.chmod(path.stat().st_mode | 0o200)  # the module cache is read-only
        env = {**os.environ, "GOFLAGS": "-mod=mod"}
        command = [str(generate), "crd:crdVersions=v1,allowDangerousTypes=true", "paths=./v1/...",
                   f"output:crd:dir={work}/crd"]  # fmt: skip
        done = subprocess.run(command, cwd=source, env=env, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            raise RuntimeError(f"controller-gen failed:\n{done.stdout}{done.stderr}")
        crd = yaml.safe_load((Path(work) / "crd" / "monitoring.coreos.com_servicemonitors.yaml").read_text())
    [version] = [v for v in crd["spec"]["versions"] if v["name"] == "v1"]
    schema = strict(version["schema"]["openAPIV3Schema"], lambda _: {})
    schema["properties"]["apiVersion"] = {"type": "string", "enum": ["monitoring.coreos.com/v1"]}
    schema["properties"]["kind"] = {"type": "string", "enum": ["ServiceMonitor"]}
    schema["properties"]["metadata"] = {"type": "object"}
    return {"$schema": "http://json-schema.org/schema#", **schema}


def write_schemas() -> None:
    specs = module_dir(KUBERNETES) / "api" / "openapi-spec" / "v3"
    SCHEMAS.mkdir(parents=True, exist_ok=True)
    written = {file: kubernetes_schema(specs, document, name) for document, name, file in KINDS.values()}
    written[SERVICE_MONITOR] = service_monitor_schema()
    for file, schema in written.items():
        (SCHEMAS / f"{file}.json").write_text(json.dumps(schema, indent=1, sort_keys=True) + "\n")
    sources = f"{KUBERNETES} {pinned(KUBERNETES)}, {MONITORING} {pinned(MONITORING)}"
    print(f"wrote {len(written)} schemas in {SCHEMAS.relative_to(ROOT)} from {sources}")


# The check.


def check() -> int:
    helm = tool(HELM, "./cmd/helm", "helm")
    kubeconform = tool(KUBECONFORM, "./cmd/kubeconform", "kubeconform")
    lint = subprocess.run([str(helm), "lint", "--strict", str(CHART)], capture_output=True, text=True, check=False)
    print(lint.stdout + lint.stderr, end="")
    # With a secret file given, so that the Secret's data is rendered and validated too.
    template = [str(helm), "template", "stepwise", str(CHART), "--set", "secrets.files.api_tokens=checked"]
    rendered = subprocess.run(template, capture_output=True, text=True, check=False)
    if rendered.returncode != 0:
        print(rendered.stderr, file=sys.stderr)
        return 1
    location = f"{SCHEMAS}/{{{{ .ResourceKind }}}}{{{{ .KindSuffix }}}}.json"
    validate = [str(kubeconform), "-strict", "-summary", "-schema-location", location, "-"]
    validated = subprocess.run(validate, input=rendered.stdout, capture_output=True, text=True, check=False)
    print(validated.stdout + validated.stderr, end="")
    return 1 if lint.returncode or validated.returncode else 0


def main(argv: list[str] | None = None) -> int:
    arguments = sys.argv[1:] if argv is None else argv
    if arguments == ["schemas"]:
        write_schemas()
        return 0
    return check()


if __name__ == "__main__":
    sys.exit(main())
