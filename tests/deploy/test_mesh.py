"""The mesh configurations of docs/mesh.md, checked without a cluster or an Envoy binary.

- Istio objects: validated with jsonschema against the openAPIV3Schema of Istio's own CRDs
  (istio.io/api, fetched through the Go module proxy), unknown fields refused as
  `kubectl apply`'s strict field validation does; then decoded strictly into istio.io/api's
  protobuf types and every CEL rule of the CRDs evaluated (deploy/mesh/check).
- Envoy: the bootstrap decoded strictly into go-control-plane's protobuf types and checked
  with their protoc-gen-validate rules, typed_config payloads included (deploy/mesh/check).
- Their values agree with tokend's: issuer, JWKS URL on the HTTP port, audience, lifetime,
  leeway, cache duration under jwks_consumer_refresh, typ at+jwt.
Each checker is shown to refuse broken variants, so a pass means something.
"""

from __future__ import annotations

import copy
import json
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from tokend.config import Settings, load_settings

from .support import Obj, find

# The first test builds deploy/mesh/check: on a fresh machine that downloads and compiles
# go-control-plane and istio.io/api (measured in the docs/mesh.md "Checking" section).
pytestmark = pytest.mark.timeout(900)

ROOT = Path(__file__).resolve().parents[2]
MESH = ROOT / "deploy" / "mesh"
CHECK = MESH / "check"
ISTIO_FILES = sorted((MESH / "istio").glob("*.yaml"))
ENVOY_FILE = MESH / "envoy" / "envoy.yaml"
DOC = ROOT / "docs" / "mesh.md"
BASE_CONFIG = ROOT / "deploy" / "kubernetes" / "base" / "config" / "tokend.yaml"


def go() -> str:
    path = shutil.which("go")
    assert path, "the Go toolchain is needed (scripts/setup installs it for clients/go)"
    return path


@pytest.fixture(scope="module")
def checker(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """deploy/mesh/check, built once (modules come from the Go module proxy)."""
    binary = tmp_path_factory.mktemp("mesh-check") / "check"
    subprocess.run([go(), "build", "-o", str(binary), "."], cwd=CHECK, check=True, timeout=900)
    return binary


@pytest.fixture(scope="module")
def crd_file() -> Path:
    """Istio's CRDs, from the istio.io/api version that deploy/mesh/check/go.mod pins."""
    out = subprocess.run([go(), "mod", "download", "-json", "istio.io/api"], cwd=CHECK,
                         check=True, capture_output=True, text=True, timeout=600).stdout
    path = Path(json.loads(out)["Dir"]) / "kubernetes" / "customresourcedefinitions.gen.yaml"
    assert path.is_file(), path
    return path


@pytest.fixture(scope="module")
def crd_schemas(crd_file: Path) -> dict[str, Obj]:
    schemas = {}
    for crd in yaml.safe_load_all(crd_file.read_text(encoding="utf-8")):
        if not crd:
            continue
        spec = crd["spec"]
        for version in spec["versions"]:
            key = f"{spec['group']}/{version['name']}/{spec['names']['kind']}"
            schema = strict(version["schema"]["openAPIV3Schema"])
            # The API server adds these to every CRD's root schema itself.
            schema["properties"].update(apiVersion={"type": "string"},
                                        kind={"type": "string"}, metadata={"type": "object"})
            schemas[key] = schema
    return schemas


def strict(schema: Any) -> Any:
    """Refuse unknown fields, as the API server does with kubectl's default strict field
    validation: an object schema with properties and nothing else allowed."""
    if isinstance(schema, dict):
        schema = {k: strict(v) for k, v in schema.items()}
        if ("properties" in schema and "additionalProperties" not in schema
                and not schema.get("x-kubernetes-preserve-unknown-fields")):
            schema["additionalProperties"] = False
        return schema
    if isinstance(schema, list):
        return [strict(item) for item in schema]
    return schema


def istio_objects() -> list[Obj]:
    return [o for path in ISTIO_FILES for o in yaml.safe_load_all(path.read_text()) if o]


def schema_errors(obj: Obj, schemas: dict[str, Obj]) -> list[str]:
    schema = schemas[f"{obj['apiVersion']}/{obj['kind']}"]
    validator = jsonschema.Draft7Validator(schema)
    return [f"{'/'.join(map(str, e.absolute_path))}: {e.message}"
            for e in validator.iter_errors(obj)]


def run_check(checker: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(checker), *args], capture_output=True, text=True, timeout=120)


def write_yaml(directory: Path, name: str, documents: list[Any]) -> Path:
    path = directory / name
    path.write_text(yaml.safe_dump_all(documents, sort_keys=False))
    return path


# -- Istio ------------------------------------------------------------------------------


def test_istio_objects_match_istios_crd_schemas(crd_schemas: dict[str, Obj]) -> None:
    objects = istio_objects()
    assert {o["kind"] for o in objects} == {"RequestAuthentication", "AuthorizationPolicy"}
    for obj in objects:
        assert obj["apiVersion"] == "security.istio.io/v1"
        assert schema_errors(obj, crd_schemas) == [], obj["metadata"]["name"]


def test_istio_objects_decode_and_pass_the_crds_cel_rules(checker: Path, crd_file: Path) -> None:
    result = run_check(checker, "-istio", "-crds", str(crd_file), *map(str, ISTIO_FILES))
    assert result.returncode == 0, result.stderr
    assert result.stdout.count("ok istio") == len(istio_objects())


def broken_istio_variants() -> Iterator[tuple[str, Obj, str]]:
    """(what, object, which check must refuse it: schema, check or both)."""
    authn = next(o for o in istio_objects() if o["kind"] == "RequestAuthentication")
    rule = authn["spec"]["jwtRules"][0]
    for what, change, by in [
        ("misspelt field", lambda r: r.update(audience=["orders"]), "both"),
        ("audiences not a list", lambda r: r.update(audiences="orders"), "both"),
        ("jwksUri and jwks together", lambda r: r.update(jwks='{"keys":[]}'), "check"),
        ("jwksUri not http(s)", lambda r: r.update(jwksUri="ftp://tokend/jwks"), "check"),
        ("timeout not a duration", lambda r: r.update(timeout="soon"), "check"),
        ("timeout below 1ms", lambda r: r.update(timeout="0s"), "check"),
    ]:
        variant = copy.deepcopy(authn)
        change(variant["spec"]["jwtRules"][0])
        assert variant["spec"]["jwtRules"][0] != rule
        yield what, variant, by
    policy = next(o for o in istio_objects() if o["kind"] == "AuthorizationPolicy")
    variant = copy.deepcopy(policy)
    variant["spec"]["rules"][0]["from"][0]["source"]["requestPrincipal"] = ["x/*"]
    yield "misspelt requestPrincipals", variant, "both"
    variant = copy.deepcopy(policy)
    variant["spec"]["targetRefs"] = [{"kind": "Gateway", "group": "gateway.networking.k8s.io",
                                      "name": "public"}]
    yield "selector and targetRefs together", variant, "check"


@pytest.mark.parametrize(("what", "variant", "by"), list(broken_istio_variants()),
                         ids=[v[0] for v in broken_istio_variants()])
def test_broken_istio_objects_are_refused(what: str, variant: Obj, by: str, checker: Path,
                                          crd_file: Path, crd_schemas: dict[str, Obj],
                                          tmp_path: Path) -> None:
    if by in ("schema", "both"):
        assert schema_errors(variant, crd_schemas), what
    if by in ("check", "both"):
        path = write_yaml(tmp_path, "broken.yaml", [variant])
        result = run_check(checker, "-istio", "-crds", str(crd_file), str(path))
        assert result.returncode == 1 and "invalid:" in result.stderr, what


# -- Envoy ------------------------------------------------------------------------------


def test_envoy_bootstrap_decodes_and_validates(checker: Path) -> None:
    result = run_check(checker, "-envoy", str(ENVOY_FILE))
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"ok envoy bootstrap {ENVOY_FILE}"


def envoy_config() -> Obj:
    return yaml.safe_load(ENVOY_FILE.read_text())


def http_filters(config: Obj) -> list[Obj]:
    (listener,) = config["static_resources"]["listeners"]
    (chain,) = listener["filter_chains"]
    (hcm,) = chain["filters"]
    return hcm["typed_config"]["http_filters"]


def jwt_provider(config: Obj) -> Obj:
    (jwt,) = [f for f in http_filters(config) if f["name"] == "envoy.filters.http.jwt_authn"]
    return jwt["typed_config"]["providers"]["tokend"]


def _drop_uri(c: Obj) -> None:
    del jwt_provider(c)["remote_jwks"]["http_uri"]["uri"]


def _negative_cache(c: Obj) -> None:
    jwt_provider(c)["remote_jwks"]["cache_duration"] = "-5s"


def _misspelt(c: Obj) -> None:
    jwt_provider(c)["audience"] = jwt_provider(c).pop("audiences")


def _unknown_type(c: Obj) -> None:
    http_filters(c)[-1]["typed_config"]["@type"] = (
        "type.googleapis.com/envoy.extensions.filters.http.router.v3.Routr")


def _empty_rbac_regex(c: Obj) -> None:
    (rbac,) = [f for f in http_filters(c) if f["name"] == "envoy.filters.http.rbac"]
    policy = rbac["typed_config"]["rules"]["policies"]["tokend-access-token"]
    policy["principals"][0]["metadata"]["value"]["string_match"]["safe_regex"]["regex"] = ""


def _bad_rbac_regex(c: Obj) -> None:
    (rbac,) = [f for f in http_filters(c) if f["name"] == "envoy.filters.http.rbac"]
    policy = rbac["typed_config"]["rules"]["policies"]["tokend-access-token"]
    policy["principals"][0]["metadata"]["value"]["string_match"]["safe_regex"]["regex"] = "(a"


@pytest.mark.parametrize("breakage", [_drop_uri, _negative_cache, _misspelt, _unknown_type,
                                      _empty_rbac_regex, _bad_rbac_regex])
def test_broken_envoy_bootstraps_are_refused(breakage: Any, checker: Path,
                                             tmp_path: Path) -> None:
    """Each breakage sits inside a typed_config, two Any levels deep for the jwt_authn
    ones: refused only if the validation follows typed_config."""
    config = envoy_config()
    breakage(config)
    path = write_yaml(tmp_path, "envoy.yaml", [config])
    result = run_check(checker, "-envoy", str(path))
    assert result.returncode == 1 and "invalid:" in result.stderr, breakage.__name__


# -- agreement with tokend --------------------------------------------------------------


@pytest.fixture(scope="module")
def settings() -> Settings:
    """The Kubernetes base configuration's settings (TLS files need not exist to load)."""
    return load_settings(BASE_CONFIG)


def test_configurations_point_at_tokends_issuer_and_http_port(settings: Settings) -> None:
    issuer = settings.tokens.issuer
    jwks = issuer.rstrip("/") + "/.well-known/jwks.json"
    http_port = int(settings.http_listen.rsplit(":", 1)[1])
    assert jwks.split("/")[2].endswith(f":{http_port}")  # HTTP, never gRPC
    authn = next(o for o in istio_objects() if o["kind"] == "RequestAuthentication")
    (rule,) = authn["spec"]["jwtRules"]
    assert (rule["issuer"], rule["jwksUri"]) == (issuer, jwks)
    policy = next(o for o in istio_objects() if o["kind"] == "AuthorizationPolicy")
    principals = {p for r in policy["spec"]["rules"] for s in r["from"]
                  for p in s["source"]["requestPrincipals"]}
    assert principals == {issuer + "/*"}  # this issuer only
    provider = jwt_provider(envoy_config())
    assert provider["issuer"] == issuer
    assert provider["remote_jwks"]["http_uri"]["uri"] == jwks
    (cluster,) = [c for c in envoy_config()["static_resources"]["clusters"]
                  if c["name"] == provider["remote_jwks"]["http_uri"]["cluster"]]
    endpoint = cluster["load_assignment"]["endpoints"][0]["lb_endpoints"][0]["endpoint"]
    assert endpoint["address"]["socket_address"]["port_value"] == http_port
    assert rule["audiences"] == provider["audiences"] == ["orders"]


def seconds(duration: str) -> float:
    assert duration.endswith("s")
    return float(duration[:-1])


def test_envoy_limits_agree_with_tokends(settings: Settings) -> None:
    provider = jwt_provider(envoy_config())
    assert provider["require_expiration"] is True
    assert seconds(provider["max_lifetime"]) == settings.tokens.max_ttl
    assert provider["clock_skew_seconds"] == settings.tokens.leeway
    # Envoy ignores Cache-Control: its timer must be one tokend's key rotation waits for.
    cache = seconds(provider["remote_jwks"]["cache_duration"])
    assert cache <= settings.jwks_consumer_refresh
    assert "async_fetch" in provider["remote_jwks"]


def test_envoy_rbac_requires_typ_at_jwt() -> None:
    """Envoy's jwt_authn never looks at typ (RFC 9068 §4 asks for it); the RBAC filter
    after it matches the verified header, which jwt_authn puts in dynamic metadata."""
    config = envoy_config()
    names = [f["name"] for f in http_filters(config)]
    assert names == ["envoy.filters.http.jwt_authn", "envoy.filters.http.rbac",
                     "envoy.filters.http.router"]
    provider = jwt_provider(config)
    (rbac,) = [f for f in http_filters(config) if f["name"] == "envoy.filters.http.rbac"]
    rules = rbac["typed_config"]["rules"]
    assert rules["action"] == "ALLOW"
    (policy,) = rules["policies"].values()
    (principal,) = policy["principals"]
    matcher = principal["metadata"]
    assert matcher["filter"] == "envoy.filters.http.jwt_authn"
    assert [p["key"] for p in matcher["path"]] == [provider["header_in_metadata"], "typ"]
    # RE2 and Python agree on this pattern's syntax: test its meaning here.
    pattern = re.compile(matcher["value"]["string_match"]["safe_regex"]["regex"])
    for typ in ("at+jwt", "application/at+jwt", "AT+JWT"):
        assert pattern.search(typ), typ
    for typ in ("JWT", "jwt", "at+jwt2", "xat+jwt", "application/jwt", "", "at jwt"):
        assert not pattern.search(typ), typ


# -- the guide --------------------------------------------------------------------------


def test_the_guide_names_every_checked_file_and_its_inline_yaml_is_checked(
        crd_schemas: dict[str, Obj], checker: Path, crd_file: Path, tmp_path: Path) -> None:
    text = DOC.read_text(encoding="utf-8")
    for path in [*ISTIO_FILES, ENVOY_FILE]:
        assert str(path.relative_to(ROOT)) in text, path
    # Every Istio object shown inline in the guide passes the same schema check.
    blocks = re.findall(r"```yaml\n(.*?)```", text, flags=re.DOTALL)
    inline = [o for block in blocks for o in yaml.safe_load_all(block)
              if isinstance(o, dict) and str(o.get("apiVersion", "")).startswith(
                  "security.istio.io/")]
    assert inline, "the guide shows Istio objects inline"
    for obj in inline:
        assert schema_errors(obj, crd_schemas) == [], obj.get("metadata")
    path = write_yaml(tmp_path, "inline.yaml", inline)
    result = run_check(checker, "-istio", "-crds", str(crd_file), str(path))
    assert result.returncode == 0, result.stderr


# -- the NetworkPolicy ------------------------------------------------------------------


def test_network_policy_lets_istiod_and_jwks_readers_fetch_the_jwks_only(
        rendered: dict[str, list[Obj]]) -> None:
    for name in ("dev", "production"):
        admitted: dict[tuple[tuple[str, str], ...], set[int]] = {}
        for policy in find(rendered[name], "NetworkPolicy"):
            for rule in policy["spec"].get("ingress", []):
                for source in rule["from"]:
                    label = tuple(source["namespaceSelector"]["matchLabels"].items())
                    admitted.setdefault(label, set()).update(p["port"] for p in rule["ports"])
        assert admitted[(("kubernetes.io/metadata.name", "istio-system"),)] == {8080}, name
        assert admitted[(("tokend/jwks-reader", "true"),)] == {8080}, name
