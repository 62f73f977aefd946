"""HTTP endpoints, gRPC health and reflection on a running tokend."""

from __future__ import annotations

import json
import urllib.request

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from tests.api.test_issue_verify import issue, verify
from tests.support.tokend import ISSUER, RunningTokend
from tokend_client.v1 import tokend_pb2 as pb


def get(tokend: RunningTokend, path: str) -> tuple[int, dict[str, str], bytes]:
    try:
        with urllib.request.urlopen(tokend.http_url + path, timeout=5) as response:  # noqa: S310
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as error:
        return error.code, dict(error.headers), error.read()


def test_jwks_matches_grpc_and_is_cacheable(tokend: RunningTokend) -> None:
    status, headers, body = get(tokend, "/.well-known/jwks.json")
    assert status == 200 and headers["Cache-Control"] == "public, max-age=300"
    assert headers["Content-Type"].startswith("application/jwk-set+json")
    grpc_jwks = tokend.stub.GetJwks(pb.GetJwksRequest(), timeout=5).jwks_json
    assert json.loads(body) == json.loads(grpc_jwks)
    (key,) = json.loads(body)["keys"]
    assert key["kty"] == "EC" and key["alg"] == "ES256" and key["use"] == "sig"
    assert "d" not in key


def test_discovery(tokend: RunningTokend) -> None:
    status, _, body = get(tokend, "/.well-known/openid-configuration")
    document = json.loads(body)
    assert status == 200 and document["issuer"] == ISSUER
    assert document["jwks_uri"] == ISSUER + "/.well-known/jwks.json"
    assert document["access_token_signing_alg_values_supported"] == ["ES256"]
    assert document["id_token_signing_alg_values_supported"] == []  # no ID tokens issued


def test_health_and_readiness(tokend: RunningTokend) -> None:
    assert get(tokend, "/healthz")[0] == 200
    status, _, body = get(tokend, "/readyz")
    checks = {"keys": True, "store": True, "grpc": True}
    assert status == 200 and json.loads(body) == {"ready": True, "checks": checks}
    health = health_pb2_grpc.HealthStub(tokend.channel)
    for service in ("", "tokend.v1.TokenService"):
        answer = health.Check(health_pb2.HealthCheckRequest(service=service), timeout=5)
        assert answer.status == health_pb2.HealthCheckResponse.SERVING


def test_metrics_count_what_happened(tokend: RunningTokend) -> None:
    token = issue(tokend).access_token
    verify(tokend, token)
    verify(tokend, token, audience="elsewhere")
    _, _, body = get(tokend, "/metrics")
    text = body.decode()
    assert 'tokend_tokens_issued_total{kind="issue"}' in text
    assert 'tokend_verifications_total{outcome="invalid",reason="WRONG_AUDIENCE"}' in text
    assert 'tokend_rpc_duration_seconds_bucket{code="OK",le="0.001",method="Verify"}' in text


def test_reflection_lists_the_services(tokend: RunningTokend) -> None:
    stub = reflection_pb2_grpc.ServerReflectionStub(tokend.channel)
    request = reflection_pb2.ServerReflectionRequest(list_services="")
    (answer,) = stub.ServerReflectionInfo(iter([request]), timeout=5)
    names = {s.name for s in answer.list_services_response.service}
    assert {"tokend.v1.TokenService", "grpc.health.v1.Health"} <= names


def test_unknown_rpc_is_unimplemented(tokend: RunningTokend) -> None:
    call = tokend.channel.unary_unary("/tokend.v1.TokenService/Nope")
    try:
        call(b"", timeout=5)
    except grpc.RpcError as error:
        assert error.code() == grpc.StatusCode.UNIMPLEMENTED
    else:
        raise AssertionError("expected UNIMPLEMENTED")
