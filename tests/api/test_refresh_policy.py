"""A Refresh obeys the caller's policy entry as it is now, not as it was at Issue.

The policy file is read at start, so the server is restarted on the same store (same
SQLite file, same Vault key) with a narrower entry between the Issue and the Refresh.
"""

from __future__ import annotations

import json
from pathlib import Path

import grpc
import pytest
from google.protobuf import duration_pb2

from tests.support.bao import BaoDevServer
from tests.support.tokend import RunningTokend, mtls_tokend
from tokend_client.jose import b64url_decode
from tokend_client.v1 import tokend_pb2 as pb

IDENTITY = "spiffe://test/ns/checkout/sa/checkout"
WIDE = f"""\
callers:
  - identity: "{IDENTITY}"
    rpcs: [Issue, Refresh]
    issue:
      audiences: ["orders", "billing"]
      scopes: ["orders:read", "orders:write"]
      claims: ["tenant"]
      subjects: ["alice", "bob"]
      max_ttl: 1h
"""


def narrowed(**changes: str) -> str:
    """WIDE with some `issue:` lines replaced (key: its new YAML value)."""
    lines = []
    for line in WIDE.splitlines():
        key = line.strip().split(":", 1)[0]
        lines.append(f"      {key}: {changes[key]}" if key in changes else line)
    return "\n".join(lines) + "\n"


def claims_of(token: str) -> dict[str, object]:
    return json.loads(b64url_decode(token.split(".")[1]))


def issue_with_refresh(server: RunningTokend) -> pb.IssueResponse:
    request = pb.IssueRequest(subject="alice", audience=["orders"],
                              scopes=["orders:read", "orders:write"],
                              include_refresh_token=True,
                              ttl=duration_pb2.Duration(seconds=3600))
    request.claims.update({"tenant": "acme"})
    return server.stub.Issue(request, timeout=10)


def refresh(server: RunningTokend, token: str, scopes: tuple[str, ...] = ()
            ) -> pb.IssueResponse:
    return server.stub.Refresh(pb.RefreshRequest(refresh_token=token, scopes=scopes),
                               timeout=10)


def restart_with(bao: BaoDevServer, directory: Path, policy: str) -> object:
    return mtls_tokend(bao.addr, bao.token, directory, identity=IDENTITY, policy=policy,
                       vault={"key_name": "refresh-policy"})


def test_narrowed_ttl_is_applied_and_narrowed_scopes_refused_until_the_caller_narrows(
        bao: BaoDevServer, tmp_path: Path) -> None:
    with restart_with(bao, tmp_path, WIDE) as (server, _):
        issued = issue_with_refresh(server)
        assert claims_of(refresh(server, issued.refresh_token).access_token)["scope"] == (
            "orders:read orders:write")
        issued = issue_with_refresh(server)
    with restart_with(bao, tmp_path, narrowed(scopes='["orders:read"]', max_ttl="10m")
                      ) as (server, _):
        with pytest.raises(grpc.RpcError) as info:
            refresh(server, issued.refresh_token)
        assert info.value.code() is grpc.StatusCode.PERMISSION_DENIED
        assert "orders:write" in (info.value.details() or "")
        # Refused before anything was spent: the caller may ask for what it may still have.
        renewed = refresh(server, issued.refresh_token, ("orders:read",))
        claims = claims_of(renewed.access_token)
        assert claims["scope"] == "orders:read"
        assert int(claims["exp"]) - int(claims["iat"]) == 600  # max_ttl now 10m
        # And the family goes on under the current entry.
        refresh(server, renewed.refresh_token, ("orders:read",))


@pytest.mark.parametrize("change", [
    {"audiences": '["billing"]'},
    {"claims": "[]"},
    {"subjects": '["bob"]'},
])
def test_an_audience_claim_or_subject_no_longer_granted_is_refused(
        bao: BaoDevServer, tmp_path: Path, change: dict[str, str]) -> None:
    with restart_with(bao, tmp_path, WIDE) as (server, _):
        issued = issue_with_refresh(server)
    with restart_with(bao, tmp_path, narrowed(**change)) as (server, _):
        for scopes in ((), ("orders:read",)):
            with pytest.raises(grpc.RpcError) as info:
                refresh(server, issued.refresh_token, scopes)
            assert info.value.code() is grpc.StatusCode.PERMISSION_DENIED


def test_a_caller_no_longer_allowed_to_mint_cannot_refresh(
        bao: BaoDevServer, tmp_path: Path) -> None:
    with restart_with(bao, tmp_path, WIDE) as (server, _):
        issued = issue_with_refresh(server)
    only_refresh = f'callers:\n  - identity: "{IDENTITY}"\n    rpcs: [Refresh]\n'
    with restart_with(bao, tmp_path, only_refresh) as (server, _):
        with pytest.raises(grpc.RpcError) as info:
            refresh(server, issued.refresh_token)
        assert info.value.code() is grpc.StatusCode.PERMISSION_DENIED
