"""Issue and Verify over real gRPC against a tokend whose keys are in a real OpenBao."""

from __future__ import annotations

import base64
import json
import time
from pathlib import Path

import grpc
import pytest
from google.protobuf import duration_pb2, struct_pb2

from tests.support.tokend import ISSUER, RunningTokend
from tokend.app import max_request_bytes
from tokend_client import LocalVerifier
from tokend_client.v1 import tokend_pb2 as pb


def issue(tokend: RunningTokend, **fields: object) -> pb.IssueResponse:
    claims = fields.pop("claims", None)
    request = pb.IssueRequest(**{"subject": "alice", "audience": ["orders"], **fields})
    if claims is not None:
        request.claims.update(claims)
    return tokend.stub.Issue(request, timeout=10)


def verify(tokend: RunningTokend, token: str, audience: str = "orders",
           scopes: tuple[str, ...] = ()) -> pb.VerifyResponse:
    return tokend.stub.Verify(pb.VerifyRequest(token=token, audience=audience,
                                               required_scopes=scopes), timeout=10)


def segments(token: str) -> tuple[dict, dict]:
    def decode(part: str) -> dict:
        return json.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)))

    header, payload, _ = token.split(".")
    return decode(header), decode(payload)


def invalid_argument(call) -> str:  # type: ignore[no-untyped-def]
    with pytest.raises(grpc.RpcError) as info:
        call()
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT, info.value.details()
    return info.value.details()


def test_issued_token_follows_rfc9068_and_verifies_locally(tokend: RunningTokend) -> None:
    response = issue(tokend, scopes=["orders:read", "orders:write"], claims={"tenant": "acme"})
    header, claims = segments(response.access_token)
    assert header["typ"] == "at+jwt" and header["alg"] == "ES256" and header["kid"]
    assert claims["iss"] == ISSUER and claims["sub"] == "alice" and claims["aud"] == "orders"
    assert claims["scope"] == "orders:read orders:write"
    assert claims["client_id"] == "tokend-local" and claims["tenant"] == "acme"
    assert claims["exp"] - claims["iat"] == 900 and claims["nbf"] == claims["iat"]
    assert claims["jti"] == response.jti
    assert response.token_type == "Bearer"
    assert response.expires_at.seconds == claims["exp"]
    assert not response.refresh_token and not response.HasField("refresh_expires_at")

    jwks = tokend.stub.GetJwks(pb.GetJwksRequest(), timeout=10).jwks_json
    assert all("d" not in key for key in json.loads(jwks)["keys"])
    local = LocalVerifier(jwks, issuer=ISSUER, audience="orders")
    assert local.verify(response.access_token)["sub"] == "alice"


def test_verify_answers_valid_with_claims(tokend: RunningTokend) -> None:
    response = issue(tokend, scopes=["read"], claims={"n": 3, "nested": {"a": [1, "x"]}})
    result = verify(tokend, response.access_token, scopes=("read",))
    assert result.valid and result.reason == pb.REASON_UNSPECIFIED
    assert result.subject == "alice" and result.expires_at.seconds == response.expires_at.seconds
    assert result.claims["nested"]["a"][1] == "x"


def test_ttl_and_multiple_audiences(tokend: RunningTokend) -> None:
    response = issue(tokend, audience=["orders", "https://billing.example"],
                     ttl=duration_pb2.Duration(seconds=60))
    _, claims = segments(response.access_token)
    assert claims["aud"] == ["orders", "https://billing.example"]
    assert claims["exp"] - claims["iat"] == 60
    assert verify(tokend, response.access_token, audience="https://billing.example").valid


@pytest.mark.parametrize(("audience", "scopes", "reason"), [
    ("payments", (), pb.REASON_WRONG_AUDIENCE),
    ("orders", ("admin",), pb.REASON_MISSING_SCOPE),
])
def test_verify_reasons(tokend: RunningTokend, audience: str, scopes: tuple[str, ...],
                        reason: int) -> None:
    token = issue(tokend, scopes=["read"]).access_token
    result = verify(tokend, token, audience=audience, scopes=scopes)
    assert not result.valid and result.reason == reason
    assert not result.subject and not result.claims


def test_tampered_and_garbage_tokens(tokend: RunningTokend) -> None:
    token = issue(tokend).access_token
    header, payload, signature = token.split(".")
    forged = base64.urlsafe_b64encode(
        json.dumps({**segments(token)[1], "sub": "mallory"}).encode()).rstrip(b"=").decode()
    assert verify(tokend, f"{header}.{forged}.{signature}").reason == pb.REASON_BAD_SIGNATURE
    assert verify(tokend, "not-a-token").reason == pb.REASON_MALFORMED
    none_header = base64.urlsafe_b64encode(b'{"alg":"none","typ":"at+jwt"}').rstrip(b"=")
    assert verify(tokend, f"{none_header.decode()}.{payload}.").valid is False


def test_expired_token(bao, tmp_path) -> None:  # type: ignore[no-untyped-def]
    from tests.support.tokend import make_settings

    settings = make_settings(bao.addr, bao.token, tmp_path, vault={"key_name": "expiry"},
                             tokens={"leeway": 0})
    with RunningTokend(settings) as server:
        token = issue(server, ttl=duration_pb2.Duration(seconds=1)).access_token
        time.sleep(2.1)
        assert verify(server, token).reason == pb.REASON_EXPIRED


def audit_lines(server: RunningTokend, request_id: str, count: int) -> list[dict]:
    """The audit lines of a call: written after the answer, so waited for (bounded)."""
    path = Path(server.settings.audit_log)
    deadline = time.monotonic() + 5
    while True:
        lines = [json.loads(line) for line in path.read_text().splitlines()
                 if json.loads(line).get("request_id") == request_id]
        if len(lines) >= count or time.monotonic() > deadline:
            return lines
        time.sleep(0.02)


def test_a_refused_tokens_audit_line_names_it_only_if_its_signature_verified(
        bao, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """An expired token's line names its subject and jti (the verifier authenticated
    them); a forged token's line names neither, though its claims read as an expired
    token of this issuer."""
    from tests.support.tokend import make_settings

    settings = make_settings(bao.addr, bao.token, tmp_path, vault={"key_name": "refused-audit"},
                             tokens={"leeway": 0}, audit_log=str(tmp_path / "audit.log"))
    with RunningTokend(settings) as server:
        expiring = issue(server, subject="expired-sub", ttl=duration_pb2.Duration(seconds=1))
        genuine = issue(server, subject="honest-sub").access_token
        header, _, signature = genuine.split(".")
        forged_claims = {**segments(genuine)[1], "sub": "mallory-sub", "jti": "forged-jti",
                         "exp": int(time.time()) - 60}
        payload = base64.urlsafe_b64encode(json.dumps(forged_claims).encode()).rstrip(b"=")
        forged = f"{header}.{payload.decode()}.{signature}"
        time.sleep(2.1)  # leeway 0: past its exp
        batch = [pb.VerifyRequest(token=expiring.access_token, audience="orders"),
                 pb.VerifyRequest(token=forged, audience="orders")]
        for index, request in enumerate(batch):
            answer = server.stub.Verify(request, timeout=10,
                                        metadata=(("x-request-id", f"refused-{index}"),))
            assert answer.reason == (pb.REASON_EXPIRED, pb.REASON_BAD_SIGNATURE)[index]
        server.stub.VerifyMany(pb.VerifyManyRequest(requests=batch), timeout=10,
                               metadata=(("x-request-id", "refused-batch"),))
        lines = [*audit_lines(server, "refused-0", 1), *audit_lines(server, "refused-1", 1),
                 *audit_lines(server, "refused-batch", 2)]
    expired_lines, forged_lines = lines[0::2], lines[1::2]
    assert [line["reason"] for line in lines] == ["EXPIRED", "BAD_SIGNATURE"] * 2
    for line in expired_lines:
        assert (line["subject"], line["jti"]) == ("expired-sub", expiring.jti)
    for line in forged_lines:
        assert "subject" not in line and "jti" not in line
    audit = Path(settings.audit_log).read_text()
    assert "mallory-sub" not in audit and "forged-jti" not in audit
    # Nor the genuine token whose header and signature the forgery reused.
    assert not any(line.get("subject") == "honest-sub" for line in lines)


@pytest.mark.parametrize(("fields", "needle"), [
    ({"subject": ""}, "subject is required"),
    ({"subject": "a" * 257}, "subject must be"),
    ({"audience": []}, "audience is required"),
    ({"audience": ["has space"]}, "unknown format"),
    ({"scopes": ["two words"]}, "scope"),
    ({"ttl": duration_pb2.Duration(seconds=7200)}, "above the maximum"),
    ({"claims": {"sub": "root"}}, "registered claim"),
    ({"claims": {"client_id": "x"}}, "registered claim"),
    ({"claims": {"blob": "x" * 5000}}, "tokens.max_claims_bytes"),
    ({"claims": {"a": {"b": {"c": {"d": {"e": 1}}}}}}, "nested"),
])
def test_issue_refuses_bad_requests(tokend: RunningTokend, fields: dict, needle: str) -> None:
    assert needle in invalid_argument(lambda: issue(tokend, **fields))


def test_verify_refuses_bad_requests(tokend: RunningTokend) -> None:
    assert "token is required" in invalid_argument(lambda: verify(tokend, ""))
    assert "8192 bytes" in invalid_argument(lambda: verify(tokend, "a" * 8193))
    token = issue(tokend).access_token
    assert "audience is required" in invalid_argument(lambda: verify(tokend, token, audience=""))


def test_oversized_message_is_refused_by_grpc(tokend: RunningTokend) -> None:
    # The limit has room for a VerifyMany of 256 maximal tokens (app.max_request_bytes).
    with pytest.raises(grpc.RpcError) as info:
        verify(tokend, "a" * (max_request_bytes(tokend.settings.tokens) + 1))
    assert info.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    # Below it, a field's own limit refuses: one token is at most tokens.max_token_bytes.
    assert "8192 bytes" in invalid_argument(lambda: verify(tokend, "a" * 100_000))


def test_claims_struct_numbers_stay_integers(tokend: RunningTokend) -> None:
    claims = struct_pb2.Struct()
    claims.update({"level": 7, "ratio": 0.5})
    request = pb.IssueRequest(subject="bob", audience=["orders"], claims=claims)
    _, payload = segments(tokend.stub.Issue(request, timeout=10).access_token)
    assert payload["level"] == 7 and isinstance(payload["level"], int)
    assert payload["ratio"] == 0.5
