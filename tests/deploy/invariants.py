"""What every rendering of tokend's deployment must hold, whoever rendered it: the
kustomize overlays (test_manifests.py) and the Helm chart (test_helm.py) are checked by
these same functions, so the two cannot drift apart on what matters.

Non-root and read-only pods, HTTP probes (the gRPC port requires client certificates),
mutual TLS on with cert-manager's Secret, the Vault token projected where the
configuration reads it, a configuration that tokend itself accepts.
"""

from __future__ import annotations

import os
from pathlib import Path, PurePosixPath
from typing import Any

import pytest
import yaml

from tokend.config import Settings, load_settings, split_host_port

from .support import DOCKERFILE, Obj, containers, find, one

UID = 10001
CONFIG_PATH = "/etc/tokend/tokend.yaml"
# In a pod, tokend must listen on the pod's address, not only loopback.
ALL_INTERFACES = "0.0.0.0"  # noqa: S104
# Stand-ins for values a Secret supplies at run time.
SECRET_PLACEHOLDERS = {"TOKEND_STORE_URL": "postgresql://tokend:x@postgres.postgres.svc/tokend"}
CALLERS = ("tokend/client", "true")
MONITORING = ("kubernetes.io/metadata.name", "monitoring")
# JWKS readers that are no callers (docs/mesh.md): istiod, ingress controllers, gateways.
ISTIOD = ("kubernetes.io/metadata.name", "istio-system")
JWKS_READERS = ("tokend/jwks-reader", "true")


# -- looking things up ---------------------------------------------------------------


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
    """The data of the ConfigMap mounted at /etc/tokend (kustomize's name has a hash)."""
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


# -- the invariants ------------------------------------------------------------------


def check_pods_non_root_read_only_unprivileged(objects: list[Obj]) -> None:
    workloads = [*find(objects, "Deployment"), *find(objects, "Job")]
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


def check_configuration_loads(objects: list[Obj], tmp_path: Path,
                              monkeypatch: pytest.MonkeyPatch) -> Settings:
    settings = effective_settings(objects, tmp_path, monkeypatch)
    assert settings.insecure_plaintext is False
    ports = {p["name"]: p["containerPort"] for p in tokend_container(objects)["ports"]}
    assert split_host_port(settings.grpc_listen) == (ALL_INTERFACES, ports["grpc"])
    assert split_host_port(settings.http_listen) == (ALL_INTERFACES, ports["http"])
    assert settings.vault.create_key is False
    return settings


def check_container_runs_the_images_command(objects: list[Obj]) -> None:
    container = tokend_container(objects)
    assert "command" not in container, "the image's ENTRYPOINT (tokend) must stay"
    assert container["args"][:3] == ["serve", "--config", CONFIG_PATH]
    assert container["args"][3:] in ([], ["--workers", container["args"][-1]])
    assert 'CMD ["serve", "--config", "/etc/tokend/tokend.yaml"]' in DOCKERFILE.read_text()
    data = config_map_data(objects)
    assert set(data) == {"tokend.yaml", "policy.yaml"}
    assert raw_config(objects)["policy_file"] == "/etc/tokend/policy.yaml"


def check_mutual_tls_uses_the_cert_manager_secret(objects: list[Obj]) -> None:
    tls = raw_config(objects)["tls"]
    assert tls.get("client_ca_file"), "mutual TLS is off: tls.client_ca_file is not set"
    mounts = {key: mount_of(objects, path) for key, path in tls.items()}
    assert len({m["mountPath"] for m in mounts.values() if m}) == 1, mounts
    mount = mounts["cert_file"]
    assert mount is not None and mount["readOnly"] is True
    assert "subPath" not in mount, "a subPath mount never sees cert-manager's renewals"
    volume = volume_for_mount(objects, mount["mountPath"])
    certificate = one(objects, "Certificate", "tokend-server")
    assert volume["secret"]["secretName"] == certificate["spec"]["secretName"]
    # cert-manager's Secret keys.
    assert {PurePosixPath(tls[k]).name for k in tls} == {"tls.crt", "tls.key", "ca.crt"}
    assert "server auth" in certificate["spec"]["usages"]


def check_server_certificate_names_every_service(objects: list[Obj]) -> None:
    names = set(one(objects, "Certificate", "tokend-server")["spec"]["dnsNames"])
    for service in find(objects, "Service"):
        meta = service["metadata"]
        assert f"{meta['name']}.{meta['namespace']}.svc" in names
        assert f"{meta['name']}.{meta['namespace']}.svc.cluster.local" in names


def check_vault_login_uses_a_projected_token(objects: list[Obj]) -> None:
    auth = raw_config(objects)["vault"]["auth"]
    assert auth["method"] == "kubernetes" and auth["role"]
    jwt_file = PurePosixPath(auth["jwt_file"])
    volume = volume_for_mount(objects, str(jwt_file.parent))
    (source,) = volume["projected"]["sources"]
    assert source["serviceAccountToken"]["audience"] == "vault"
    assert source["serviceAccountToken"]["path"] == jwt_file.name
    account = one(objects, "ServiceAccount", pod_spec(objects)["serviceAccountName"])
    assert account["automountServiceAccountToken"] is False


def check_probes_use_http(objects: list[Obj]) -> None:
    """HTTP probes, because the gRPC port requires client certificates."""
    container = tokend_container(objects)
    expected = {"startupProbe": "/healthz", "livenessProbe": "/healthz",
                "readinessProbe": "/readyz"}
    for probe, path in expected.items():
        assert container[probe]["httpGet"] == {"path": path, "port": "http"}, probe
    assert raw_config(objects)["tls"]["client_ca_file"]


def check_writes_go_to_volumes_only(objects: list[Obj], tmp_path: Path,
                                    monkeypatch: pytest.MonkeyPatch) -> None:
    settings = effective_settings(objects, tmp_path, monkeypatch)
    writable = [m for m in tokend_container(objects)["volumeMounts"] if not m.get("readOnly")]
    assert {"/tmp"} <= {m["mountPath"] for m in writable}
    if settings.store_url.startswith("sqlite:"):
        # SQLite keeps state in one pod: exactly one replica, on a writable volume.
        database = "/" + settings.store_url.removeprefix("sqlite:////")
        mount = mount_of(objects, database)
        assert mount is not None and not mount.get("readOnly"), database
        assert one(objects, "Deployment", "tokend")["spec"]["replicas"] == 1
        assert find(objects, "HorizontalPodAutoscaler") == []


def check_replicas_have_one_owner(objects: list[Obj]) -> None:
    """With an HPA the Deployment sets no replicas: every apply would reset the count."""
    deployment = one(objects, "Deployment", "tokend")
    if find(objects, "HorizontalPodAutoscaler"):
        assert "replicas" not in deployment["spec"], "the HPA and the Deployment both set it"


def check_service_ports_and_selectors(objects: list[Obj]) -> None:
    labels = one(objects, "Deployment", "tokend")["spec"]["template"]["metadata"]["labels"]
    service = one(objects, "Service", "tokend")
    assert service["spec"]["type"] == "ClusterIP"
    ports = {(p["name"], p["port"], p["appProtocol"]) for p in service["spec"]["ports"]}
    assert ports == {("grpc", 50051, "tls"), ("http", 8080, "http")}
    selectors = [s["spec"]["selector"] for s in find(objects, "Service")]
    selectors += [o["spec"]["selector"]["matchLabels"]
                  for o in find(objects, "PodDisruptionBudget")]
    selectors += [o["spec"]["podSelector"]["matchLabels"]
                  for o in find(objects, "NetworkPolicy")]
    selectors += [o["spec"]["selector"]["matchLabels"] for o in find(objects, "ServiceMonitor")]
    for selector in selectors:
        assert selector.items() <= labels.items(), selector


def admitted_ingress(objects: list[Obj]) -> dict[tuple[tuple[str, str], ...], set[int]]:
    """Which namespaces (by label) the tokend pods admit, on which ports, over every
    NetworkPolicy that selects them (policies are additive)."""
    admitted: dict[tuple[tuple[str, str], ...], set[int]] = {}
    for policy in find(objects, "NetworkPolicy"):
        for rule in policy["spec"].get("ingress", []):
            (source,) = rule["from"]
            assert set(source) == {"namespaceSelector"}, "ingress must name its namespaces"
            label = tuple(source["namespaceSelector"]["matchLabels"].items())
            admitted.setdefault(label, set()).update(p["port"] for p in rule["ports"])
    return admitted


def check_network_policy(objects: list[Obj],
                         more: dict[tuple[tuple[str, str], ...], set[int]] | None = None) -> None:
    """Only callers get to gRPC; monitoring and JWKS readers (and `more`) to HTTP only;
    DNS and Vault are reachable."""
    policy = one(objects, "NetworkPolicy", "tokend")
    assert set(policy["spec"]["policyTypes"]) == {"Ingress", "Egress"}
    assert admitted_ingress(objects) == {(CALLERS,): {50051, 8080}, (MONITORING,): {8080},
                                         (ISTIOD,): {8080}, (JWKS_READERS,): {8080},
                                         **(more or {})}
    egress_ports = {p["port"] for np in find(objects, "NetworkPolicy")
                    for rule in np["spec"].get("egress", []) for p in rule["ports"]}
    assert {53, 8200} <= egress_ports


def check_public_ingress_serves_only_discovery(objects: list[Obj]) -> None:
    """The public issuer URL routes the JWKS and discovery paths, exactly, to the HTTP
    port: never the gRPC port, never a prefix that would expose /metrics or /readyz."""
    ingresses = find(objects, "Ingress")
    assert ingresses
    services = {s["metadata"]["name"]: s for s in find(objects, "Service")}
    for ingress in ingresses:
        assert "defaultBackend" not in ingress["spec"]
        for rule in ingress["spec"]["rules"]:
            paths = {(p["path"], p["pathType"]) for p in rule["http"]["paths"]}
            assert paths == {("/.well-known/jwks.json", "Exact"),
                             ("/.well-known/openid-configuration", "Exact")}
            for path in rule["http"]["paths"]:
                backend = path["backend"]["service"]
                ports = {p["name"]: p["port"]
                         for p in services[backend["name"]]["spec"]["ports"]}
                port = backend["port"].get("name") or backend["port"]["number"]
                assert port in ("http", ports["http"]), "only the HTTP port is public"


def check_public_route_serves_only_discovery(objects: list[Obj]) -> None:
    """The same for a Gateway API HTTPRoute: exact JWKS and discovery paths, HTTP port."""
    routes = find(objects, "HTTPRoute")
    assert routes
    http_port = {p["name"]: p["port"]
                 for p in one(objects, "Service", "tokend")["spec"]["ports"]}["http"]
    for route in routes:
        for rule in route["spec"]["rules"]:
            paths = {(m["path"]["type"], m["path"]["value"]) for m in rule["matches"]}
            assert paths == {("Exact", "/.well-known/jwks.json"),
                             ("Exact", "/.well-known/openid-configuration")}
            assert [(b["name"], b["port"]) for b in rule["backendRefs"]] == [
                ("tokend", http_port)], "only the HTTP port is public"
