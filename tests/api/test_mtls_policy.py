"""Mutual TLS and the caller policy, end to end over real TLS on loopback."""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
import structlog
from google.protobuf import duration_pb2

from tests.support.bao import BaoDevServer
from tests.support.logs import read_jsonl
from tests.support.pki import Issued, TestCA
from tests.support.tokend import RunningTokend, make_settings
from tokend_client.v1 import tokend_pb2 as pb
from tokend_client.v1 import tokend_pb2_grpc

POLICY = """\
callers:
  - identity: "spiffe://test/ns/payments/*"
    rpcs: [Issue, Refresh, Revoke]
    issue:
      audiences: ["payments-api", "https://billing.example/*"]
      scopes: ["payments:*"]
      max_ttl: 5m
      claims: ["tenant"]
  - identity: "spiffe://test/ns/payments/sa/burst"   # exact beats the glob above
    rpcs: [Issue]
    issue: {audiences: ["payments-api"]}
    rate_limit: {per_second: 1, burst: 3}
  - dns: "reader.test"
    rpcs: []
  - spiffe: "spiffe://test/ns/batch/sa/nightly"
    rpcs: [Issue]
    issue: {audiences: ["payments-api"], subjects: ["batch-nightly", "job-*"]}
"""


class Pki:
    def __init__(self, directory: Path) -> None:
        self.ca = TestCA(directory / "ca")
        self.other_ca = TestCA(directory / "other", name="another CA")
        self.server = self.ca.server()
        self.payments = self.ca.client("payments", spiffe="spiffe://test/ns/payments/sa/api")
        self.payments2 = self.ca.client("payments2", spiffe="spiffe://test/ns/payments/sa/b")
        self.reader = self.ca.client("reader", dns=("reader.test",))
        self.stranger = self.ca.client("stranger", cn="stranger")
        self.foreign = self.other_ca.client("foreign", spiffe="spiffe://test/ns/payments/sa/api")
        self.expired = self.ca.client("expired", spiffe="spiffe://test/ns/payments/sa/api",
                                      expired=True)
        self.batch = self.ca.client("batch", spiffe="spiffe://test/ns/batch/sa/nightly")


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return Pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture(scope="module")
def server(bao: BaoDevServer, pki: Pki, tmp_path_factory: pytest.TempPathFactory
           ) -> Iterator[RunningTokend]:
    directory = tmp_path_factory.mktemp("mtls")
    # Serve copies, so that a test can rotate them in place.
    for name in ("server.crt", "server.key"):
        shutil.copy(pki.ca.directory / name, directory / name)
    (directory / "policy.yaml").write_text(POLICY)
    settings = make_settings(
        bao.addr, bao.token, directory, vault={"key_name": "mtls"}, insecure_plaintext=False,
        policy_file=directory / "policy.yaml", audit_log=str(directory / "audit.log"),
        tls={"cert_file": directory / "server.crt", "key_file": directory / "server.key",
             "client_ca_file": pki.ca.cert_file},
        security={"rejected_burst": 3, "rejected_window": 60},
    )
    with RunningTokend(settings, tls_client=(pki.ca.cert_file, pki.payments)) as running:
        yield running


def stub_for(server: RunningTokend, ca_file: Path, client: Issued | None
             ) -> tokend_pb2_grpc.TokenServiceStub:
    credentials = grpc.ssl_channel_credentials(
        root_certificates=ca_file.read_bytes(),
        private_key=client.key_file.read_bytes() if client else None,
        certificate_chain=client.cert_file.read_bytes() if client else None,
    )
    return tokend_pb2_grpc.TokenServiceStub(grpc.secure_channel(server.grpc_addr, credentials))


def code_of(call) -> tuple[grpc.StatusCode, str]:  # type: ignore[no-untyped-def]
    with pytest.raises(grpc.RpcError) as info:
        call()
    return info.value.code(), info.value.details()


def issue_request(**fields: object) -> pb.IssueRequest:
    return pb.IssueRequest(**{"subject": "u1", "audience": ["payments-api"], **fields})


@pytest.mark.parametrize("who", ["none", "foreign", "expired"])
def test_handshake_refused(server: RunningTokend, pki: Pki, who: str) -> None:
    client = {"none": None, "foreign": pki.foreign, "expired": pki.expired}[who]
    stub = stub_for(server, pki.ca.cert_file, client)
    code, _ = code_of(lambda: stub.GetJwks(pb.GetJwksRequest(), timeout=3))
    assert code == grpc.StatusCode.UNAVAILABLE


def test_allowed_caller_gets_its_identity_as_client_id(server: RunningTokend, pki: Pki) -> None:
    stub = stub_for(server, pki.ca.cert_file, pki.payments2)
    issued = stub.Issue(issue_request(scopes=["payments:read"], claims={"tenant": "t"}),
                        timeout=5)
    result = stub.Verify(pb.VerifyRequest(token=issued.access_token, audience="payments-api"),
                         timeout=5)
    assert result.valid and result.claims["client_id"] == "spiffe://test/ns/payments/sa/b"


def test_reader_may_verify_but_not_issue(server: RunningTokend, pki: Pki) -> None:
    token = server.stub.Issue(issue_request(), timeout=5).access_token
    reader = stub_for(server, pki.ca.cert_file, pki.reader)
    assert reader.Verify(pb.VerifyRequest(token=token, audience="payments-api"), timeout=5).valid
    assert reader.GetJwks(pb.GetJwksRequest(), timeout=5).jwks_json
    code, message = code_of(lambda: reader.Issue(issue_request(), timeout=5))
    assert code == grpc.StatusCode.PERMISSION_DENIED
    assert "'dns:reader.test'" in message and "Issue" in message


def test_unlisted_caller_is_denied_by_cn(server: RunningTokend, pki: Pki) -> None:
    stranger = stub_for(server, pki.ca.cert_file, pki.stranger)
    code, message = code_of(lambda: stranger.Revoke(pb.RevokeRequest(jti="x"), timeout=5))
    assert code == grpc.StatusCode.PERMISSION_DENIED and "'cn:stranger'" in message


def test_subject_patterns_limit_what_a_caller_may_mint(server: RunningTokend,
                                                       pki: Pki) -> None:
    """Issue 13 item 5: an entry with `subjects:` may mint only those `sub` values."""
    batch = stub_for(server, pki.ca.cert_file, pki.batch)
    assert batch.Issue(issue_request(subject="batch-nightly"), timeout=5).jti
    assert batch.Issue(issue_request(subject="job-42"), timeout=5).jti
    code, message = code_of(lambda: batch.Issue(issue_request(subject="alice"), timeout=5))
    assert code == grpc.StatusCode.PERMISSION_DENIED and "subject 'alice'" in message
    # An entry that names no subjects keeps minting any (payments: no `subjects:`).
    payments = stub_for(server, pki.ca.cert_file, pki.payments2)
    assert payments.Issue(issue_request(subject="alice"), timeout=5).jti


@pytest.mark.parametrize(("fields", "needle"), [
    ({"audience": ["orders"]}, "audience 'orders'"),
    ({"scopes": ["admin"]}, "scope 'admin'"),
    ({"claims": {"role": "x"}}, "custom claim 'role'"),
    ({"ttl": duration_pb2.Duration(seconds=600)}, "at most 300s"),
])
def test_issue_outside_the_callers_policy(server: RunningTokend, pki: Pki, fields: dict,
                                          needle: str) -> None:
    claims = fields.pop("claims", None)
    request = issue_request(**fields)
    if claims:
        request.claims.update(claims)
    stub = stub_for(server, pki.ca.cert_file, pki.payments2)
    code, message = code_of(lambda: stub.Issue(request, timeout=5))
    assert code == grpc.StatusCode.PERMISSION_DENIED and needle in message


def test_glob_audience_allowed(server: RunningTokend, pki: Pki) -> None:
    stub = stub_for(server, pki.ca.cert_file, pki.payments2)
    assert stub.Issue(issue_request(audience=["https://billing.example/v1"]), timeout=5).jti


def test_refresh_is_bound_to_the_client(server: RunningTokend, pki: Pki) -> None:
    mine = stub_for(server, pki.ca.cert_file, pki.payments2)
    issued = mine.Issue(issue_request(include_refresh_token=True), timeout=5)
    other = server.stub  # authenticated as .../sa/api, also allowed Refresh
    code, _ = code_of(lambda: other.Refresh(
        pb.RefreshRequest(refresh_token=issued.refresh_token), timeout=5))
    assert code == grpc.StatusCode.UNAUTHENTICATED
    assert mine.Refresh(pb.RefreshRequest(refresh_token=issued.refresh_token), timeout=5).jti


def test_rate_limit_answers_resource_exhausted(server: RunningTokend, pki: Pki) -> None:
    client = pki.ca.client("burst", spiffe="spiffe://test/ns/payments/sa/burst")
    stub = stub_for(server, pki.ca.cert_file, client)
    codes = []
    for _ in range(6):  # burst 3 at 1/s: the later calls within a second are refused
        try:
            stub.Issue(issue_request(), timeout=5)
            codes.append(grpc.StatusCode.OK)
        except grpc.RpcError as error:
            codes.append(error.code())
    assert codes[:3] == [grpc.StatusCode.OK] * 3
    assert grpc.StatusCode.RESOURCE_EXHAUSTED in codes[3:]


def audit_events(server: RunningTokend) -> list[dict]:
    path = Path(server.settings.audit_log)
    return read_jsonl(path)


def test_audit_records_without_secrets(server: RunningTokend, pki: Pki) -> None:
    stub = stub_for(server, pki.ca.cert_file, pki.payments2)
    issued = stub.Issue(issue_request(subject="audited", include_refresh_token=True), timeout=5)
    stub.Verify(pb.VerifyRequest(token=issued.access_token, audience="elsewhere"), timeout=5)
    stub.Revoke(pb.RevokeRequest(token=issued.access_token, reason="test"), timeout=5)
    text = Path(server.settings.audit_log).read_text()
    assert issued.access_token not in text and issued.refresh_token not in text
    assert issued.access_token.split(".")[2] not in text
    events = [e for e in audit_events(server) if e.get("jti") == issued.jti
              or e.get("subject") == "audited"]
    kinds = {e["event"]: e for e in events}
    assert kinds["rpc.Issue"]["caller"] == "spiffe://test/ns/payments/sa/b"
    assert kinds["rpc.Issue"]["audience"] == ["payments-api"]
    assert kinds["rpc.Issue"]["peer"].startswith("ipv4:127.0.0.1")
    assert kinds["rpc.Verify"]["outcome"] == "rejected"
    assert kinds["rpc.Verify"]["reason"] == "WRONG_AUDIENCE"
    revoke = [e for e in audit_events(server) if e["event"] == "rpc.Revoke"][-1]
    assert revoke["target"] == "token" and revoke["revoked"] == 1
    assert all(e.get("request_id") for e in audit_events(server))


def test_rejection_burst_raises_a_security_event(server: RunningTokend, pki: Pki) -> None:
    stub = stub_for(server, pki.ca.cert_file, pki.reader)
    for _ in range(3):
        stub.Verify(pb.VerifyRequest(token="x.y.z", audience="payments-api"), timeout=5)
    bursts = [e for e in audit_events(server) if e["event"] == "security.rejected_burst"]
    assert any(e["scope"] == "caller" and e["who"] == "dns:reader.test" for e in bursts)


def test_refresh_reuse_is_a_critical_audit_event(server: RunningTokend, pki: Pki) -> None:
    stub = stub_for(server, pki.ca.cert_file, pki.payments2)
    issued = stub.Issue(issue_request(include_refresh_token=True), timeout=5)
    stub.Refresh(pb.RefreshRequest(refresh_token=issued.refresh_token), timeout=5)
    code, _ = code_of(lambda: stub.Refresh(
        pb.RefreshRequest(refresh_token=issued.refresh_token), timeout=5))
    assert code == grpc.StatusCode.UNAUTHENTICATED
    (event,) = [e for e in audit_events(server) if e["event"] == "security.refresh_token_reuse"
                and e["family"] == issued.jti]
    assert event["level"] == "critical" and event["revoked"] >= 2
    assert issued.refresh_token not in json.dumps(event)


# Last in the module: it replaces the server certificate for the rest of the run.
def test_certificate_rotation_without_restart(server: RunningTokend, pki: Pki,
                                              tmp_path: Path) -> None:
    new_ca = TestCA(tmp_path / "rotated", name="rotated CA")
    new_server = new_ca.server("server")
    directory = server.settings.tls.cert_file.parent
    old_stub = stub_for(server, pki.ca.cert_file, pki.payments2)
    assert old_stub.GetJwks(pb.GetJwksRequest(), timeout=5).jwks_json
    time.sleep(0.01)  # a distinct mtime on coarse filesystems
    shutil.copy(new_server.key_file, directory / "server.key")
    shutil.copy(new_server.cert_file, directory / "server.crt")
    # A new connection that trusts only the rotated CA now succeeds; the old trust fails.
    fresh = stub_for(server, new_ca.cert_file, pki.payments2)
    with structlog.testing.capture_logs() as logs:
        assert fresh.GetJwks(pb.GetJwksRequest(), timeout=5).jwks_json
    stale = stub_for(server, pki.ca.cert_file, pki.payments2)
    code, _ = code_of(lambda: stale.GetJwks(pb.GetJwksRequest(), timeout=3))
    assert code == grpc.StatusCode.UNAVAILABLE
    assert any(e["event"] == "tls.reloaded" for e in logs)
