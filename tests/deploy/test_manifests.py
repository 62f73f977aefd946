"""The Kubernetes manifests: valid for the Kubernetes versions we support, and safe.

Every kustomization is rendered with the real (pinned) kustomize, then checked against
the Kubernetes OpenAPI schemas (cert-manager objects structurally) and against the
invariants the deployment relies on: non-root and read-only pods, HTTP probes (the gRPC
port requires client certificates), mutual TLS on, the Vault token projected where the
configuration reads it, a configuration that tokend itself accepts.
"""

from __future__ import annotations

import fnmatch
import os
from pathlib import Path, PurePosixPath
from typing import Any

import pytest
import yaml

from tokend.config import Settings, load_settings, split_host_port

from .support import (
    DOCKERFILE,
    KUBERNETES_VERSIONS,
    KUSTOMIZATIONS,
    OVERLAYS,
    Obj,
    containers,
    find,
    image_problems,
    one,
    schema_problems,
)

# The first use builds kustomize (about 90 s on a machine with no Go cache).
pytestmark = pytest.mark.timeout(300)

UID = 10001
CONFIG_PATH = "/etc/tokend/tokend.yaml"
# In a pod, tokend must listen on the pod's address, not only loopback.
ALL_INTERFACES = "0.0.0.0"  # noqa: S104
# Stand-ins for values a Secret supplies at run time.
SECRET_PLACEHOLDERS = {"TOKEND_STORE_URL": "postgresql://tokend:x@postgres.postgres.svc/tokend"}


# -- helpers -------------------------------------------------------------------------


def tokend_container(objects: list[Obj]) -> Obj:
    (container,) = (c for c in containers(one(objects, "Deployment", "tokend"))
                    if c["name"] == "tokend")
    return container


def pod_spec(objects: list[Obj]) -> Obj:
    return one(objects, "Deployment", "tokend")["spec"]["template"]["spec"]


def volume_for_mount(objects: list[Obj], mount_path: str) -> Obj:
    """The pod volume mounted at `mount_path` in the tokend container."""
    (mount,) = (m for m in tokend_container(objects)["volumeMounts"]
                if m["mountPath"] == mount_path)
    (volume,) = (v for v in pod_spec(objects)["volumes"] if v["name"] == mount["name"])
    return volume


def mount_of(objects: list[Obj], path: str) -> Obj | None:
    """The tokend container's volume mount that holds `path`, if any."""
    for mount in tokend_container(objects)["volumeMounts"]:
        if PurePosixPath(path).is_relative_to(mount["mountPath"]):
            return mount
    return None


def config_map_data(objects: list[Obj]) -> dict[str, str]:
    """The data of the ConfigMap mounted at /etc/tokend (its generated name has a hash)."""
    name = volume_for_mount(objects, "/etc/tokend")["configMap"]["name"]
    return one(objects, "ConfigMap", name)["data"]


def container_env(objects: list[Obj]) -> dict[str, str]:
    """The tokend container's environment; Secret references become placeholders."""
    env = {}
    for item in tokend_container(objects).get("env", []):
        if "value" in item:
            env[item["name"]] = item["value"]
        else:
            assert "secretKeyRef" in item["valueFrom"], f"{item['name']}: only Secrets expected"
            env[item["name"]] = SECRET_PLACEHOLDERS.get(item["name"], "placeholder")
    return env


def effective_settings(objects: list[Obj], tmp_path: Path,
                       monkeypatch: pytest.MonkeyPatch) -> Settings:
    """What tokend would load in the pod: the ConfigMap's tokend.yaml plus the container's
    environment, nothing from this machine's. The policy file is copied next to it so a
    loader that reads it finds it (its in-pod path is checked separately)."""
    data = config_map_data(objects)
    policy = tmp_path / "policy.yaml"
    policy.write_text(data["policy.yaml"])
    config = yaml.safe_load(data["tokend.yaml"])
    config["policy_file"] = str(policy)
    config_file = tmp_path / "tokend.yaml"
    config_file.write_text(yaml.safe_dump(config))
    for name in list(os.environ):
        if name.startswith(("TOKEND_", "VAULT_")):
            monkeypatch.delenv(name)
    for name, value in container_env(objects).items():
        monkeypatch.setenv(name, value)
    return load_settings(config_file)


def raw_config(objects: list[Obj]) -> dict[str, Any]:
    return yaml.safe_load(config_map_data(objects)["tokend.yaml"])


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
    workloads = [*find(rendered[name], "Deployment"), *find(rendered[name], "Job")]
    assert workloads
    for workload in workloads:
        pod = workload["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert pod["securityContext"]["runAsUser"] == UID
        assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
        assert pod["automountServiceAccountToken"] is False
        assert not pod.get("hostNetwork") and not pod.get("hostPID")
        for container in containers(workload):
            context = container["securityContext"]
            assert context["readOnlyRootFilesystem"] is True, container["name"]
            assert context["allowPrivilegeEscalation"] is False, container["name"]
            assert context["capabilities"] == {"drop": ["ALL"]}, container["name"]
            assert context.get("runAsNonRoot", True) is True
            assert not context.get("privileged")
            assert {"cpu", "memory"} <= set(container["resources"]["requests"])
            assert {"cpu", "memory"} <= set(container["resources"]["limits"])


# -- the tokend pod, in each overlay -------------------------------------------------


@pytest.fixture(params=OVERLAYS)
def overlay(request: pytest.FixtureRequest, rendered: dict[str, list[Obj]]) -> list[Obj]:
    return rendered[request.param]


def test_configuration_loads_with_tokend(overlay: list[Obj], tmp_path: Path,
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    settings = effective_settings(overlay, tmp_path, monkeypatch)
    assert settings.insecure_plaintext is False
    ports = {p["name"]: p["containerPort"] for p in tokend_container(overlay)["ports"]}
    assert split_host_port(settings.grpc_listen) == (ALL_INTERFACES, ports["grpc"])
    assert split_host_port(settings.http_listen) == (ALL_INTERFACES, ports["http"])
    assert settings.vault.create_key is False


def test_container_runs_the_images_command(overlay: list[Obj]) -> None:
    container = tokend_container(overlay)
    assert "command" not in container, "the image's ENTRYPOINT (tokend) must stay"
    assert container["args"] == ["serve", "--config", CONFIG_PATH]
    assert 'CMD ["serve", "--config", "/etc/tokend/tokend.yaml"]' in DOCKERFILE.read_text()
    data = config_map_data(overlay)
    assert set(data) == {"tokend.yaml", "policy.yaml"}
    assert raw_config(overlay)["policy_file"] == "/etc/tokend/policy.yaml"


def test_mutual_tls_uses_the_cert_manager_secret(overlay: list[Obj]) -> None:
    tls = raw_config(overlay)["tls"]
    assert tls.get("client_ca_file"), "mutual TLS is off: tls.client_ca_file is not set"
    mounts = {key: mount_of(overlay, path) for key, path in tls.items()}
    assert len({m["mountPath"] for m in mounts.values() if m}) == 1, mounts
    mount = mounts["cert_file"]
    assert mount is not None and mount["readOnly"] is True
    assert "subPath" not in mount, "a subPath mount never sees cert-manager's renewals"
    volume = volume_for_mount(overlay, mount["mountPath"])
    certificate = one(overlay, "Certificate", "tokend-server")
    assert volume["secret"]["secretName"] == certificate["spec"]["secretName"]
    # cert-manager's Secret keys.
    assert {PurePosixPath(tls[k]).name for k in tls} == {"tls.crt", "tls.key", "ca.crt"}
    assert "server auth" in certificate["spec"]["usages"]


def test_server_certificate_names_every_service(overlay: list[Obj]) -> None:
    names = set(one(overlay, "Certificate", "tokend-server")["spec"]["dnsNames"])
    for service in find(overlay, "Service"):
        meta = service["metadata"]
        assert f"{meta['name']}.{meta['namespace']}.svc" in names
        assert f"{meta['name']}.{meta['namespace']}.svc.cluster.local" in names


def test_vault_login_uses_a_projected_token_for_vault(overlay: list[Obj]) -> None:
    auth = raw_config(overlay)["vault"]["auth"]
    assert auth["method"] == "kubernetes" and auth["role"]
    jwt_file = PurePosixPath(auth["jwt_file"])
    volume = volume_for_mount(overlay, str(jwt_file.parent))
    (source,) = volume["projected"]["sources"]
    assert source["serviceAccountToken"]["audience"] == "vault"
    assert source["serviceAccountToken"]["path"] == jwt_file.name
    account = one(overlay, "ServiceAccount", pod_spec(overlay)["serviceAccountName"])
    assert account["automountServiceAccountToken"] is False


def test_probes_use_http_because_grpc_requires_client_certificates(
        overlay: list[Obj]) -> None:
    container = tokend_container(overlay)
    expected = {"startupProbe": "/healthz", "livenessProbe": "/healthz",
                "readinessProbe": "/readyz"}
    for probe, path in expected.items():
        assert container[probe]["httpGet"] == {"path": path, "port": "http"}, probe
    assert raw_config(overlay)["tls"]["client_ca_file"]


def test_writes_go_to_volumes_only(overlay: list[Obj], tmp_path: Path,
                                   monkeypatch: pytest.MonkeyPatch) -> None:
    settings = effective_settings(overlay, tmp_path, monkeypatch)
    writable = [m for m in tokend_container(overlay)["volumeMounts"] if not m.get("readOnly")]
    assert {"/tmp"} <= {m["mountPath"] for m in writable}
    if settings.store_url.startswith("sqlite:"):
        # SQLite keeps state in one pod: exactly one replica, on a writable volume.
        database = "/" + settings.store_url.removeprefix("sqlite:////")
        mount = mount_of(overlay, database)
        assert mount is not None and not mount.get("readOnly"), database
        assert one(overlay, "Deployment", "tokend")["spec"]["replicas"] == 1
        assert find(overlay, "HorizontalPodAutoscaler") == []


def test_service_ports_and_selectors(overlay: list[Obj]) -> None:
    labels = one(overlay, "Deployment", "tokend")["spec"]["template"]["metadata"]["labels"]
    service = one(overlay, "Service", "tokend")
    assert service["spec"]["type"] == "ClusterIP"
    ports = {(p["name"], p["port"], p["appProtocol"]) for p in service["spec"]["ports"]}
    assert ports == {("grpc", 50051, "tls"), ("http", 8080, "http")}
    selectors = [s["spec"]["selector"] for s in find(overlay, "Service")]
    selectors += [o["spec"]["selector"]["matchLabels"]
                  for o in find(overlay, "PodDisruptionBudget")]
    selectors += [o["spec"]["podSelector"]["matchLabels"]
                  for o in find(overlay, "NetworkPolicy")]
    for selector in selectors:
        assert selector.items() <= labels.items(), selector


def test_network_policy_admits_only_callers_and_monitoring(overlay: list[Obj]) -> None:
    policy = one(overlay, "NetworkPolicy", "tokend")
    assert set(policy["spec"]["policyTypes"]) == {"Ingress", "Egress"}
    admitted = {}
    for rule in policy["spec"]["ingress"]:
        (source,) = rule["from"]
        assert set(source) == {"namespaceSelector"}, "ingress must name its namespaces"
        label = tuple(source["namespaceSelector"]["matchLabels"].items())
        admitted[label] = {p["port"] for p in rule["ports"]}
    assert admitted == {(("tokend/client", "true"),): {50051, 8080},
                        (("kubernetes.io/metadata.name", "monitoring"),): {8080},
                        # JWKS readers (docs/mesh.md): HTTP only.
                        (("kubernetes.io/metadata.name", "istio-system"),): {8080},
                        (("tokend/jwks-reader", "true"),): {8080}}
    egress_ports = {p["port"] for np in find(overlay, "NetworkPolicy")
                    for rule in np["spec"].get("egress", []) for p in rule["ports"]}
    assert {53, 8200} <= egress_ports


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
    assert deployment["spec"]["replicas"] == 3
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
