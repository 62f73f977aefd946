"""What the clients send and what they return: requests built from arguments, typed results."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from tests.clients.python.scripted_server import (
    ACCESS_TOKEN,
    EXPIRES_AT,
    REFRESH_TOKEN,
    ScriptedServer,
)
from tokend_client import AsyncTokenClient, IssuedToken, JwkSet, Reason, TokenClient
from tokend_client._calls import reason_from_proto
from tokend_client.v1 import tokend_pb2 as pb


@pytest.fixture
def client(scripted: ScriptedServer) -> Any:
    with TokenClient.insecure_loopback(scripted.target) as client:
        yield client


def test_issue_sends_every_argument(scripted: ScriptedServer, client: TokenClient) -> None:
    client.issue("alice", "orders", scopes="orders:read orders:write",
                 claims={"tenant": "acme", "tier": 2}, ttl=timedelta(minutes=5), refresh=True)
    client.issue("bob", ["orders", "billing"], scopes=["a"], ttl=90)
    first, second = scripted.service.requests["Issue"]
    assert isinstance(first, pb.IssueRequest) and isinstance(second, pb.IssueRequest)
    assert (first.subject, list(first.audience)) == ("alice", ["orders"])
    assert list(first.scopes) == ["orders:read", "orders:write"]
    assert dict(first.claims) == {"tenant": "acme", "tier": 2}
    assert first.ttl.seconds == 300 and first.include_refresh_token
    assert list(second.audience) == ["orders", "billing"] and list(second.scopes) == ["a"]
    assert second.ttl.seconds == 90 and not second.include_refresh_token
    assert not second.HasField("claims")


def test_issued_token_is_typed_and_hides_tokens(client: TokenClient) -> None:
    issued = client.issue("alice", "orders", refresh=True)
    assert issued == IssuedToken(
        access_token=ACCESS_TOKEN, expires_at=EXPIRES_AT, jti="jti-1",
        refresh_token=REFRESH_TOKEN, refresh_expires_at=EXPIRES_AT + timedelta(days=1))
    assert issued.expires_at.tzinfo is UTC
    assert ACCESS_TOKEN not in repr(issued) and REFRESH_TOKEN not in repr(issued)
    with pytest.raises(AttributeError):
        issued.jti = "other"  # type: ignore[misc]


def test_issue_without_refresh_has_no_refresh_fields(client: TokenClient) -> None:
    issued = client.issue("alice", "orders")
    assert issued.refresh_token is None and issued.refresh_expires_at is None


def test_valid_verify_result(scripted: ScriptedServer, client: TokenClient) -> None:
    result = client.verify("a.b.c", "orders", required_scopes=["a", "b"])
    request = scripted.service.requests["Verify"][0]
    assert isinstance(request, pb.VerifyRequest)
    assert (request.audience, list(request.required_scopes)) == ("orders", ["a", "b"])
    assert result.valid and result.reason is None
    assert result.subject == "alice"
    assert result.expires_at == EXPIRES_AT
    # Struct numbers are doubles on the wire; whole ones come back as int.
    assert result.claims == {"sub": "alice", "exp": int(EXPIRES_AT.timestamp()),
                             "scope": "a b", "nested": {"n": [1, 2.5]}}
    assert type(result.claims["exp"]) is int


@pytest.mark.parametrize("reason", list(Reason))
def test_invalid_verify_result_carries_the_reason(client: TokenClient, reason: Reason) -> None:
    result = client.verify("REASON_" + reason.name, "orders")
    assert not result.valid
    assert result.reason is reason
    assert result.claims == {} and result.subject is None and result.expires_at is None


def test_every_proto_reason_has_a_python_reason() -> None:
    # EnumTypeWrapper has keys() but is not iterable itself.
    names = [n for n in pb.Reason.keys() if n != "REASON_UNSPECIFIED"]  # noqa: SIM118
    assert {reason_from_proto(pb.Reason.Value(name)) for name in names} == set(Reason)
    assert reason_from_proto(pb.REASON_UNSPECIFIED) is None
    assert reason_from_proto(999) is None  # a newer server's reason


@pytest.mark.parametrize(("target", "field"), [
    ({"token": "a.b.c"}, "token"), ({"jti": "j"}, "jti"),
    ({"refresh_token": "tkd_rt_x"}, "refresh_token"), ({"subject": "alice"}, "subject"),
])
def test_revoke_names_one_target(scripted: ScriptedServer, client: TokenClient,
                                 target: dict[str, str], field: str) -> None:
    assert client.revoke(**target, reason="password changed") == 2
    request = scripted.service.requests["Revoke"][-1]
    assert isinstance(request, pb.RevokeRequest)
    assert request.WhichOneof("target") == field and request.reason == "password changed"


@pytest.mark.parametrize("targets", [{}, {"jti": "j", "subject": "alice"}])
def test_revoke_refuses_zero_or_several_targets(scripted: ScriptedServer, client: TokenClient,
                                                targets: dict[str, str]) -> None:
    with pytest.raises(ValueError, match="exactly one"):
        client.revoke(**targets)
    assert scripted.service.calls["Revoke"] == 0


def test_refresh_sends_narrowed_scopes(scripted: ScriptedServer, client: TokenClient) -> None:
    issued = client.refresh(REFRESH_TOKEN, scopes=["orders:read"])
    request = scripted.service.requests["Refresh"][0]
    assert isinstance(request, pb.RefreshRequest)
    assert request.refresh_token == REFRESH_TOKEN and list(request.scopes) == ["orders:read"]
    assert issued.refresh_token == REFRESH_TOKEN


def test_get_jwks_parses_the_key_set(scripted: ScriptedServer, client: TokenClient) -> None:
    x = "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"  # RFC 8037 A.2
    scripted.service.jwks = {"keys": [{"kty": "OKP", "crv": "Ed25519", "alg": "EdDSA",
                                       "kid": "k1", "x": x}]}
    keys = client.get_jwks()
    assert isinstance(keys, JwkSet) and keys.get("k1") is not None


@pytest.mark.parametrize(("args", "error"), [
    ({"audience": ["orders", 3]}, TypeError),
    ({"ttl": "5m"}, TypeError),
    ({"ttl": True}, TypeError),
])
def test_bad_arguments_fail_before_any_call(scripted: ScriptedServer, client: TokenClient,
                                            args: dict[str, Any], error: type[Exception]) -> None:
    with pytest.raises(error):
        client.issue("alice", **{"audience": "orders", **args})
    assert scripted.service.calls["Issue"] == 0


async def test_async_client_returns_the_same_results(scripted: ScriptedServer) -> None:
    async with AsyncTokenClient.insecure_loopback(scripted.target) as client:
        issued = await client.issue("alice", "orders", refresh=True)
        result = await client.verify("REASON_REVOKED", "orders")
        refreshed = await client.refresh(REFRESH_TOKEN)
        assert await client.revoke(subject="alice") == 2
    assert issued.expires_at == EXPIRES_AT and issued.refresh_token == REFRESH_TOKEN
    assert (result.valid, result.reason) == (False, Reason.REVOKED)
    assert refreshed.access_token == ACCESS_TOKEN
    assert datetime.now(UTC) < issued.expires_at
