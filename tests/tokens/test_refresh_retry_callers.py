"""A retried Refresh is answered again only for the same caller, key and request: over
mutual TLS, another caller (or another request) presenting the spent refresh token with
the very same idempotency key is reuse, and the family is revoked."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from tests.support.bao import BaoDevServer
from tests.support.logs import read_jsonl
from tests.support.pki import Issued, TestCA
from tests.support.tokend import RunningTokend, mtls_settings
from tokend_client.v1 import tokend_pb2 as pb
from tokend_client.v1 import tokend_pb2_grpc

OWNER = "spiffe://test/ns/web/sa/login"
OTHER = "spiffe://test/ns/web/sa/other"
POLICY = """\
callers:
  - identity: "spiffe://test/ns/web/sa/*"
    rpcs: [Issue, Refresh]
    issue: {audiences: ["orders"], scopes: ["orders:*"]}
"""
KEY = "same-key-for-everyone-0123"


class Callers:
    def __init__(self, server: RunningTokend, ca: TestCA, other: Issued) -> None:
        self.owner = server.stub
        credentials = grpc.ssl_channel_credentials(
            root_certificates=ca.cert_file.read_bytes(),
            private_key=other.key_file.read_bytes(),
            certificate_chain=other.cert_file.read_bytes())
        self._channel = grpc.secure_channel(server.grpc_addr, credentials)
        self.other = tokend_pb2_grpc.TokenServiceStub(self._channel)
        self.server = server
        self.audit_file = Path(server.settings.audit_log)

    def audited_refreshes(self) -> list[dict[str, object]]:
        events = read_jsonl(self.audit_file)
        return [e for e in events if e.get("event") == "rpc.Refresh"]

    def close(self) -> None:
        self._channel.close()


@pytest.fixture
def callers(bao: BaoDevServer, tmp_path: Path) -> Iterator[Callers]:
    ca = TestCA(tmp_path / "pki")
    server_cert, owner, other = ca.server(), ca.client("owner", spiffe=OWNER), ca.client(
        "other", spiffe=OTHER)
    settings = mtls_settings(
        bao.addr, bao.token, tmp_path, policy=POLICY, vault={"key_name": "refresh-retry-callers"},
        audit_log=str(tmp_path / "audit.log"),
        server_cert=server_cert.cert_file, server_key=server_cert.key_file,
        client_ca=ca.cert_file)
    with RunningTokend(settings, tls_client=(ca.cert_file, owner)) as server:
        made = Callers(server, ca, other)
        yield made
        made.close()


def refresh(stub: tokend_pb2_grpc.TokenServiceStub, token: str, *scopes: str
            ) -> pb.IssueResponse:
    return stub.Refresh(pb.RefreshRequest(refresh_token=token, scopes=scopes,
                                          idempotency_key=KEY), timeout=10)


def is_revoked(callers: Callers, answer: pb.IssueResponse) -> bool:
    verdict = callers.owner.Verify(pb.VerifyRequest(token=answer.access_token,
                                                    audience="orders"), timeout=10)
    return not verdict.valid and verdict.reason == pb.REASON_REVOKED


@pytest.mark.parametrize("second_use", ["other caller", "other scopes"])
def test_only_the_same_caller_and_request_get_the_answer_again(
        callers: Callers, second_use: str) -> None:
    issued = callers.owner.Issue(pb.IssueRequest(
        subject="alice", audience=["orders"], scopes=["orders:read", "orders:write"],
        include_refresh_token=True), timeout=10)
    first = refresh(callers.owner, issued.refresh_token)
    again = refresh(callers.owner, issued.refresh_token)  # its answer was "lost"
    assert (again.access_token, again.refresh_token) == (first.access_token,
                                                         first.refresh_token)
    assert not is_revoked(callers, first)
    audited = callers.audited_refreshes()
    assert [e.get("retried") for e in audited] == [None, True]
    assert audited[0]["jti"] == audited[1]["jti"] == first.jti

    with pytest.raises(grpc.RpcError) as info:
        if second_use == "other caller":
            refresh(callers.other, issued.refresh_token)
        else:
            refresh(callers.owner, issued.refresh_token, "orders:read")
    assert info.value.code() is grpc.StatusCode.UNAUTHENTICATED
    assert is_revoked(callers, first)  # reuse: the whole family went
    with pytest.raises(grpc.RpcError) as info:
        refresh(callers.owner, first.refresh_token)
    assert info.value.code() is grpc.StatusCode.UNAUTHENTICATED
