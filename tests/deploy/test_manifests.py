"""The Kubernetes manifests: valid for the Kubernetes versions we support, and safe.

Every kustomization is rendered with the real (pinned) kustomize, then checked against
the Kubernetes OpenAPI schemas (cert-manager objects structurally) and against the
invariants the deployment relies on: non-root and read-only pods, HTTP probes (the gRPC
port requires client certificates), mutual TLS on, the Vault token projected where the
configuration reads it, a configuration that tokend itself accepts.
"""

from __future__ import annotations

import fnmatch
from pathlib import Path

import pytest
import yaml

from . import invariants as inv
from .invariants import config_map_data, effective_settings, pod_spec, tokend_container
from .support import (
    ALERTS,
    KUBERNETES_VERSIONS,
    KUSTOMIZATIONS,
    OVERLAYS,
    Obj,
    find,
    image_problems,
    one,
    schema_problems,
)

# The first use builds kustomize (about 90 s on a machine with no Go cache).
pytestmark = pytest.mark.timeout(300)


# -- every kustomization -------------------------------------------------------------


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
@pytest.mark.parametrize("name", KUSTOMIZATIONS)
def test_objects_match_the_kubernetes_schemas(rendered: dict[str, list[Obj]], name: str,
                                              version: str) -> None:
    assert rendered[name], f"{name} rendered nothing"
    assert schema_problems(rendered[name], version) == []


@pytest.mark.parametrize("name", KUSTOMIZATIONS)
def test_images_are_pinned_never_latest(rendered: dict[str, list[Obj]], name: str) -> None:
    assert list(image_problems(rendered[name])) == []


@pytest.mark.parametrize("name", ["base", *OVERLAYS, "examples"])
def test_pods_are_non_root_read_only_and_unprivileged(rendered: dict[str, list[Obj]],
                                                      name: str) -> None:
    inv.check_pods_non_root_read_only_unprivileged(rendered[name])


# -- the tokend pod, in each overlay -------------------------------------------------


@pytest.fixture(params=OVERLAYS)
def overlay(request: pytest.FixtureRequest, rendered: dict[str, list[Obj]]) -> list[Obj]:
    return rendered[request.param]


def test_configuration_loads_with_tokend(overlay: list[Obj], tmp_path: Path,
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    inv.check_configuration_loads(overlay, tmp_path, monkeypatch)


def test_container_runs_the_images_command(overlay: list[Obj]) -> None:
    inv.check_container_runs_the_images_command(overlay)


def test_mutual_tls_uses_the_cert_manager_secret(overlay: list[Obj]) -> None:
    inv.check_mutual_tls_uses_the_cert_manager_secret(overlay)


def test_server_certificate_names_every_service(overlay: list[Obj]) -> None:
    inv.check_server_certificate_names_every_service(overlay)


def test_vault_login_uses_a_projected_token_for_vault(overlay: list[Obj]) -> None:
    inv.check_vault_login_uses_a_projected_token(overlay)


def test_probes_use_http_because_grpc_requires_client_certificates(
        overlay: list[Obj]) -> None:
    inv.check_probes_use_http(overlay)


def test_writes_go_to_volumes_only(overlay: list[Obj], tmp_path: Path,
                                   monkeypatch: pytest.MonkeyPatch) -> None:
    inv.check_writes_go_to_volumes_only(overlay, tmp_path, monkeypatch)
    inv.check_replicas_have_one_owner(overlay)


def test_service_ports_and_selectors(overlay: list[Obj]) -> None:
    inv.check_service_ports_and_selectors(overlay)


def test_network_policy_admits_only_callers_and_monitoring(overlay: list[Obj]) -> None:
    inv.check_network_policy(overlay)


def test_policy_file_parses_and_admits_the_example_caller(
        overlay: list[Obj], rendered: dict[str, list[Obj]]) -> None:
    policy = yaml.safe_load(config_map_data(overlay)["policy.yaml"])
    assert policy["callers"]
    for caller in policy["callers"]:
        assert caller["identity"]
        assert set(caller["rpcs"]) <= {"Issue", "Refresh", "Revoke"}
    (uri,) = one(rendered["examples"], "Certificate")["spec"]["uris"]
    assert any(fnmatch.fnmatchcase(uri, c["identity"]) for c in policy["callers"])


# -- production ----------------------------------------------------------------------


@pytest.fixture
def production(rendered: dict[str, list[Obj]]) -> list[Obj]:
    return rendered["production"]


def test_production_runs_three_replicas_on_three_nodes(production: list[Obj]) -> None:
    deployment = one(production, "Deployment", "tokend")
    # The HPA alone sets the count, never below three.
    assert "replicas" not in deployment["spec"]
    assert one(production, "HorizontalPodAutoscaler", "tokend")["spec"]["minReplicas"] >= 3
    anti = pod_spec(production)["affinity"]["podAntiAffinity"]
    (term,) = anti["requiredDuringSchedulingIgnoredDuringExecution"]
    assert term["topologyKey"] == "kubernetes.io/hostname"
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert term["labelSelector"]["matchLabels"].items() <= labels.items()


def test_production_keeps_two_replicas_through_disruptions(production: list[Obj]) -> None:
    budget = one(production, "PodDisruptionBudget", "tokend")["spec"]
    assert budget["minAvailable"] == 2 and "maxUnavailable" not in budget


def test_production_autoscales_on_cpu(production: list[Obj]) -> None:
    spec = one(production, "HorizontalPodAutoscaler", "tokend")["spec"]
    assert spec["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment",
                                      "name": "tokend"}
    assert spec["minReplicas"] >= 3 and spec["maxReplicas"] > spec["minReplicas"]
    (metric,) = spec["metrics"]
    assert metric["resource"]["name"] == "cpu"


def test_production_state_is_in_postgresql(production: list[Obj], tmp_path: Path,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    settings = effective_settings(production, tmp_path, monkeypatch)
    assert settings.store_url.startswith("postgresql://")
    (store_env,) = (e for e in tokend_container(production)["env"]
                    if e["name"] == "TOKEND_STORE_URL")
    assert "secretKeyRef" in store_env["valueFrom"], "the URL carries a password"
    assert "data" not in {v["name"] for v in pod_spec(production)["volumes"]}
    egress = [p["port"] for rule in one(production, "NetworkPolicy", "tokend-database")
              ["spec"]["egress"] for p in rule["ports"]]
    assert egress == [5432]
    assert settings.tokens.issuer.startswith("https://")


# -- the public issuer URL and monitoring ----------------------------------------------


def test_public_issuer_ingress_serves_only_jwks_and_discovery(
        rendered: dict[str, list[Obj]]) -> None:
    public = rendered["public-issuer"]
    inv.check_public_ingress_serves_only_discovery([*rendered["production"], *public])
    # Its issuer is the production overlay's: discovery's jwks_uri lands on this host.
    (rule,) = one(public, "Ingress", "tokend-public")["spec"]["rules"]
    issuer = next(e["value"] for e in tokend_container(rendered["production"])["env"]
                  if e["name"] == "TOKEND_TOKENS__ISSUER")
    assert issuer == f"https://{rule['host']}"
    # The controller's namespace is labelled tokend/jwks-reader=true: the base policy
    # admits it on the HTTP port only, and the example adds no policy of its own.
    assert find(public, "NetworkPolicy") == []
    inv.check_network_policy([*rendered["production"], *public])


def test_public_issuer_gateway_route_serves_only_jwks_and_discovery(
        rendered: dict[str, list[Obj]]) -> None:
    public = rendered["public-issuer-gateway"]
    inv.check_public_route_serves_only_discovery([*rendered["production"], *public])
    (hostname,) = one(public, "HTTPRoute", "tokend-public")["spec"]["hostnames"]
    assert inv.raw_config(rendered["production"])["tls"]  # mutual TLS stays on gRPC
    issuer = next(e["value"] for e in tokend_container(rendered["production"])["env"]
                  if e["name"] == "TOKEND_TOKENS__ISSUER")
    assert issuer == f"https://{hostname}"
    assert find(public, "NetworkPolicy") == []
    inv.check_network_policy([*rendered["production"], *public])


def test_monitoring_scrapes_the_http_port_and_ships_the_alerts(
        rendered: dict[str, list[Obj]]) -> None:
    monitoring = rendered["monitoring"]
    (endpoint,) = one(monitoring, "ServiceMonitor", "tokend")["spec"]["endpoints"]
    service = one(rendered["production"], "Service", "tokend")
    assert endpoint["port"] in {p["name"] for p in service["spec"]["ports"]}
    selector = one(monitoring, "ServiceMonitor", "tokend")["spec"]["selector"]["matchLabels"]
    assert selector.items() <= service["metadata"]["labels"].items()
    assert one(monitoring, "PrometheusRule", "tokend")["spec"] == yaml.safe_load(
        ALERTS.read_text(encoding="utf-8")), "run scripts/sync-alerts"


def test_structural_checks_of_crd_objects_catch_mistakes(
        rendered: dict[str, list[Obj]]) -> None:
    # The Gateway API and prometheus-operator CRDs have no schemas in kubernetes-validate:
    # their checks must still refuse what the API server would.
    route = yaml.safe_load(yaml.safe_dump(one(rendered["public-issuer-gateway"], "HTTPRoute")))
    route["spec"]["rules"][0]["matches"][0]["path"]["type"] = "Prefix"
    route["spec"]["rules"][0]["backendRefs"][0]["port"] = "http"
    route["spec"]["hostname"] = "typo"
    assert len(schema_problems([route], KUBERNETES_VERSIONS[0])) == 3
    monitor = yaml.safe_load(yaml.safe_dump(one(rendered["monitoring"], "ServiceMonitor")))
    monitor["spec"]["endpoints"][0]["interval"] = "30 seconds"
    del monitor["spec"]["selector"]
    assert len(schema_problems([monitor], KUBERNETES_VERSIONS[0])) == 2
