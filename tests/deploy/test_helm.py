"""The Helm chart (deploy/helm/tokend): `helm lint`, `helm template` into the same
Kubernetes schema validation as the kustomize manifests, the same invariants
(tests/deploy/invariants.py), and in step with the kustomize base and production overlay.

helm is built from the Go module proxy on first use (support.ensure_helm); each value set
of support.CHART_VALUES is rendered once for the module.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from . import invariants as inv
from .support import (
    ALERTS,
    CHART_VALUES,
    KUBERNETES_VERSIONS,
    Obj,
    find,
    helm_lint,
    helm_template,
    image_problems,
    one,
    render_chart,
    schema_problems,
)

# The first use builds helm (several minutes on a machine with no Go cache).
pytestmark = pytest.mark.timeout(1500)


@pytest.fixture(scope="module")
def charts() -> dict[str, list[Obj]]:
    return {name: render_chart(name) for name in CHART_VALUES}


@pytest.fixture(params=list(CHART_VALUES))
def chart(request: pytest.FixtureRequest, charts: dict[str, list[Obj]]) -> list[Obj]:
    return charts[request.param]


def test_helm_lint_is_clean() -> None:
    result = helm_lint()
    assert result.returncode == 0, result.stdout + result.stderr
    assert "[ERROR]" not in result.stdout and "[WARNING]" not in result.stdout


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
def test_rendered_objects_match_the_kubernetes_schemas(chart: list[Obj], version: str) -> None:
    assert schema_problems(chart, version) == []
    assert list(image_problems(chart)) == []


def test_pods_are_non_root_read_only_and_unprivileged(chart: list[Obj]) -> None:
    inv.check_pods_non_root_read_only_unprivileged(chart)


def test_configuration_loads_with_tokend(chart: list[Obj], tmp_path: Path,
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    inv.check_configuration_loads(chart, tmp_path, monkeypatch)
    inv.check_container_runs_the_images_command(chart)
    inv.check_writes_go_to_volumes_only(chart, tmp_path, monkeypatch)


def test_mutual_tls_is_on_with_cert_manager(chart: list[Obj]) -> None:
    inv.check_mutual_tls_uses_the_cert_manager_secret(chart)
    inv.check_server_certificate_names_every_service(chart)


def test_probes_use_http(chart: list[Obj]) -> None:
    inv.check_probes_use_http(chart)


def test_vault_login_uses_a_projected_token(chart: list[Obj]) -> None:
    inv.check_vault_login_uses_a_projected_token(chart)


def test_services_policies_and_replicas(chart: list[Obj]) -> None:
    inv.check_service_ports_and_selectors(chart)
    inv.check_replicas_have_one_owner(chart)
    inv.check_network_policy(chart)


@pytest.mark.parametrize(("values", "refusal"), [
    ({"replicaCount": 2}, "SQLite (no store.existingSecret) keeps state in one pod"),
    ({"autoscaling": {"enabled": True}}, "SQLite (no store.existingSecret)"),
    ({"replicas": 3}, "additional properties 'replicas' not allowed"),
    ({"podAntiAffinity": "strict"}, "podAntiAffinity"),
    ({"store": {"existingSecret": "s"},
      "podDisruptionBudget": {"minAvailable": 2}}, "exactly one of minAvailable"),
    ({"image": {"digest": "sha256:short"}}, "digest"),
])
def test_values_that_would_break_the_deployment_are_refused(values: dict[str, object],
                                                            refusal: str) -> None:
    result = helm_template(values)
    assert result.returncode != 0 and refusal in result.stderr, result.stderr


# -- in step with the kustomize manifests --------------------------------------------


def _pod_without_names(objects: list[Obj]) -> Obj:
    """The pod template with what legitimately differs removed: the generated ConfigMap
    name, Helm's checksum annotation, the image reference, `--workers`, and the issuer
    (the overlay sets it by environment, the chart in tokend.yaml: the effective settings
    are compared instead)."""
    pod = yaml.safe_load(yaml.safe_dump(one(objects, "Deployment", "tokend")["spec"]["template"]))
    pod["metadata"]["annotations"].pop("checksum/config", None)
    for volume in pod["spec"]["volumes"]:
        volume.get("configMap", {}).pop("name", None) if volume["name"] == "config" else None
    for container in pod["spec"]["containers"]:
        container.pop("image")
        container["args"] = container["args"][:3]
        container["env"] = [e for e in container.get("env", [])
                            if e["name"] != "TOKEND_TOKENS__ISSUER"]
    return pod


@pytest.mark.parametrize(("chart_values", "overlay"), [("default", "base"),
                                                      ("production", "production")])
def test_the_chart_renders_what_kustomize_renders(
        charts: dict[str, list[Obj]], rendered: dict[str, list[Obj]], chart_values: str,
        overlay: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    helm, kustomize = charts[chart_values], rendered[overlay]
    # The settings tokend would run with (ConfigMap and environment together).
    assert (inv.effective_settings(helm, tmp_path, monkeypatch).model_dump()
            == inv.effective_settings(kustomize, tmp_path, monkeypatch).model_dump())
    assert _pod_without_names(helm) == _pod_without_names(kustomize)
    assert (yaml.safe_load(inv.config_map_data(helm)["policy.yaml"])
            == yaml.safe_load(inv.config_map_data(kustomize)["policy.yaml"]))
    for kind in ("PodDisruptionBudget", "HorizontalPodAutoscaler", "Certificate"):
        assert [o["spec"] for o in find(helm, kind)] == [o["spec"] for o in find(kustomize, kind)]
    for name in ("tokend", "tokend-headless"):
        assert one(helm, "Service", name)["spec"] == one(kustomize, "Service", name)["spec"]


def test_production_values_ship_alerts_scraping_and_the_public_issuer(
        charts: dict[str, list[Obj]]) -> None:
    production = charts["production"]
    rule = one(production, "PrometheusRule", "tokend")
    assert rule["spec"] == yaml.safe_load(ALERTS.read_text(encoding="utf-8"))
    (endpoint,) = one(production, "ServiceMonitor", "tokend")["spec"]["endpoints"]
    assert (endpoint["port"], endpoint["path"]) == ("http", "/metrics")
    inv.check_public_ingress_serves_only_discovery(production)
    default = charts["default"]
    assert not find(default, "PrometheusRule") and not find(default, "Ingress")
