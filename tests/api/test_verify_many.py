"""VerifyMany over real gRPC against a tokend whose keys are in a real OpenBao: each result
is what a unary Verify answers for the same request, in order; the batch's limits; the
audit of refused tokens; the same admission as Verify under mutual TLS."""

from __future__ import annotations

import json
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from google.protobuf import duration_pb2

from tests.support.bao import BaoDevServer
from tests.support.pki import TestCA
from tests.support.tokend import RunningTokend, make_settings, mtls_tokend
from tokend.api.requests import MAX_VERIFY_BATCH
from tokend_client.rpc_errors import error_from_rpc
from tokend_client.v1 import tokend_pb2 as pb
from tokend_client.v1 import tokend_pb2_grpc

AUDIENCE = "orders"


@pytest.fixture(scope="module")
def server(bao: BaoDevServer, tmp_path_factory: pytest.TempPathFactory
           ) -> Iterator[RunningTokend]:
    directory = tmp_path_factory.mktemp("verify-many")
    settings = make_settings(bao.addr, bao.token, directory, vault={"key_name": "verify-many"},
                             tokens={"leeway": 0}, audit_log=str(directory / "audit.log"))
    with RunningTokend(settings) as running:
        yield running


def issue(server: RunningTokend, **fields: object) -> pb.IssueResponse:
    request = pb.IssueRequest(**{"subject": "alice", "audience": [AUDIENCE], **fields})
    return server.stub.Issue(request, timeout=10)


def verify_many(server: RunningTokend, batch: list[pb.VerifyRequest], request_id: str = ""
                ) -> pb.VerifyManyResponse:
    metadata = (("x-request-id", request_id),) if request_id else None
    return server.stub.VerifyMany(pb.VerifyManyRequest(requests=batch), timeout=10,
                                  metadata=metadata)


def unary_answer(server: RunningTokend, request: pb.VerifyRequest) -> pb.VerifyManyResult:
    """What unary Verify answers, in VerifyMany's terms: its response, or its
    INVALID_ARGUMENT's field violation and reason."""
    try:
        return pb.VerifyManyResult(response=server.stub.Verify(request, timeout=10))
    except grpc.RpcError as exc:
        assert exc.code() == grpc.StatusCode.INVALID_ARGUMENT, exc.details()
        error = error_from_rpc(exc)
        (violation,) = error.field_violations
        return pb.VerifyManyResult(invalid=pb.InvalidRequest(
            field=violation.field, description=violation.description, reason=error.reason))


def mixed_batch(server: RunningTokend) -> list[pb.VerifyRequest]:
    valid = issue(server, scopes=["read"]).access_token
    revoked = issue(server, subject="mallory").access_token
    server.stub.Revoke(pb.RevokeRequest(token=revoked), timeout=10)
    expired = issue(server, ttl=duration_pb2.Duration(seconds=1)).access_token
    time.sleep(2.1)  # leeway 0: past its exp
    return [
        pb.VerifyRequest(token=valid, audience=AUDIENCE, required_scopes=["read"]),
        pb.VerifyRequest(token=valid, audience="billing"),  # wrong audience
        pb.VerifyRequest(token=revoked, audience=AUDIENCE),
        pb.VerifyRequest(token="not-a-token", audience=AUDIENCE),  # malformed: an answer
        pb.VerifyRequest(token=valid, audience=""),  # invalid: no audience
        pb.VerifyRequest(token=expired, audience=AUDIENCE),
        pb.VerifyRequest(token=valid, audience="orders\x1b[2J"),  # invalid: control char
        pb.VerifyRequest(token="", audience=AUDIENCE),  # invalid: no token
        pb.VerifyRequest(token=valid, audience=AUDIENCE, required_scopes=["write"]),
        pb.VerifyRequest(token="a" * 8193, audience=AUDIENCE),  # invalid: too large
        pb.VerifyRequest(token=valid, audience=AUDIENCE, delegation=99),  # invalid enum
        pb.VerifyRequest(token=valid, audience=AUDIENCE),  # valid, answered from the cache
    ]


def test_each_result_is_what_verify_answers_in_order(server: RunningTokend) -> None:
    batch = mixed_batch(server)
    results = verify_many(server, batch).results
    expected = [unary_answer(server, request) for request in batch]
    assert len(results) == len(batch)
    for index, (got, want) in enumerate(zip(results, expected, strict=True)):
        assert got == want, index
    kinds = [result.WhichOneof("outcome") for result in results]
    assert kinds == ["response"] * 4 + ["invalid"] + ["response"] + ["invalid"] * 2 + [
        "response", "invalid", "invalid", "response"]
    reasons = [r.response.reason for r in results if r.WhichOneof("outcome") == "response"]
    assert reasons == [pb.REASON_UNSPECIFIED, pb.REASON_WRONG_AUDIENCE, pb.REASON_REVOKED,
                       pb.REASON_MALFORMED, pb.REASON_EXPIRED, pb.REASON_MISSING_SCOPE,
                       pb.REASON_UNSPECIFIED]
    assert results[0].response.valid and results[-1].response.valid
    assert results[0].response.subject == "alice"
    assert results[4].invalid.field == "audience"
    assert results[7].invalid.field == "token" and results[9].invalid.field == "token"
    assert results[10].invalid.field == "delegation"
    # The description never repeats the token.
    assert all(batch[i].token not in results[i].invalid.description
               for i in (4, 6, 9, 10) if batch[i].token)


@pytest.mark.parametrize("count", [0, MAX_VERIFY_BATCH + 1])
def test_a_batch_out_of_range_is_invalid_argument(server: RunningTokend, count: int) -> None:
    batch = [pb.VerifyRequest(token="x", audience=AUDIENCE)] * count
    with pytest.raises(grpc.RpcError) as info:
        verify_many(server, batch)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "1 to 256 requests" in info.value.details()
    error = error_from_rpc(info.value)
    assert error.reason == "INVALID_REQUEST"
    assert [v.field for v in error.field_violations] == ["requests"]


def test_a_full_batch_of_the_largest_tokens_is_accepted(server: RunningTokend) -> None:
    """256 tokens of tokens.max_token_bytes each, with a thumbprint: within gRPC's limit."""
    largest = server.settings.tokens.max_token_bytes
    valid = issue(server).access_token
    batch = [pb.VerifyRequest(token="a" * largest, audience="x" * 256,
                              presenter_x5t_s256="A" * 43)
             for _ in range(MAX_VERIFY_BATCH - 1)]
    batch.append(pb.VerifyRequest(token=valid, audience=AUDIENCE))
    results = verify_many(server, batch).results
    assert len(results) == MAX_VERIFY_BATCH
    assert all(r.response.reason == pb.REASON_MALFORMED for r in results[:-1])
    assert results[-1].response.valid


def audit_lines(server: RunningTokend, request_id: str, count: int) -> list[dict]:
    """The audit lines of a call: written after the answer, so waited for (bounded)."""
    path = Path(server.settings.audit_log)
    deadline = time.monotonic() + 5
    while True:
        lines = [json.loads(line) for line in path.read_text().splitlines()
                 if f'"request_id":"{request_id}"' in line.replace(" ", "")]
        if len(lines) >= count or time.monotonic() > deadline:
            return lines
        time.sleep(0.02)


def test_each_refused_token_writes_one_audit_line(server: RunningTokend) -> None:
    valid = issue(server, subject="audited-ok").access_token
    revoked = issue(server, subject="audited-revoked")
    server.stub.Revoke(pb.RevokeRequest(jti=revoked.jti), timeout=10)
    batch = [pb.VerifyRequest(token=valid, audience=AUDIENCE),
             pb.VerifyRequest(token=revoked.access_token, audience=AUDIENCE),
             pb.VerifyRequest(token=valid, audience=""),  # invalid request: no audit
             pb.VerifyRequest(token=valid, audience="billing")]
    verify_many(server, batch, request_id="vm-audit-1")
    lines = audit_lines(server, "vm-audit-1", 2)
    time.sleep(0.2)  # nothing more comes
    lines = audit_lines(server, "vm-audit-1", 2)
    assert [(line["index"], line["reason"], line["subject"]) for line in lines] == [
        (1, "REVOKED", "audited-revoked"), (3, "WRONG_AUDIENCE", "audited-ok")]
    assert lines[0]["jti"] == revoked.jti
    for line in lines:
        assert (line["event"], line["outcome"], line["code"]) == (
            "rpc.VerifyMany", "rejected", "OK")
        assert line["caller"] and line["peer"]
    audit = Path(server.settings.audit_log).read_text()
    assert valid not in audit and revoked.access_token not in audit
    # The line of a rejected unary Verify has the same fields (but the index).
    server.stub.Verify(batch[1], timeout=10, metadata=(("x-request-id", "vm-audit-2"),))
    (unary,) = audit_lines(server, "vm-audit-2", 1)
    assert set(lines[0]) - set(unary) == {"index"}
    assert set(unary) - set(lines[0]) == set()


def test_a_batch_with_no_refusal_writes_no_audit_line(server: RunningTokend) -> None:
    valid = issue(server).access_token
    verify_many(server, [pb.VerifyRequest(token=valid, audience=AUDIENCE)] * 3,
                request_id="vm-audit-none")
    time.sleep(0.3)
    assert audit_lines(server, "vm-audit-none", 0) == []


def test_the_call_is_timed_under_its_own_method(server: RunningTokend) -> None:
    def count() -> float:
        url = server.http_url + "/metrics"
        with urllib.request.urlopen(url, timeout=5) as response:  # noqa: S310 (loopback)
            text = response.read().decode()
        prefix = 'tokend_rpc_duration_seconds_count{code="OK",method="VerifyMany"} '
        found = [line for line in text.splitlines() if line.startswith(prefix)]
        return float(found[0].split()[-1]) if found else 0.0

    before = count()
    verify_many(server, [pb.VerifyRequest(token="x", audience=AUDIENCE)] * 5)
    assert count() == before + 1


POLICY = """
callers:
  - spiffe: "spiffe://tokend.test/issuer"
    rpcs: [Issue]
    issue:
      audiences: ["orders"]
"""


def test_admission_is_verifys_under_mutual_tls(bao: BaoDevServer, tmp_path: Path) -> None:
    """A caller with no policy entry may VerifyMany as it may Verify (both are open to
    every authenticated caller, docs/policy.md); a caller without a certificate of the
    client CA is refused before either runs."""
    with mtls_tokend(bao.addr, bao.token, tmp_path, identity="spiffe://tokend.test/reader",
                     policy=POLICY, vault={"key_name": "verify-many-mtls"}) as (running, env):
        with pytest.raises(grpc.RpcError) as denied:  # the same caller may not Issue
            running.stub.Issue(pb.IssueRequest(subject="a", audience=[AUDIENCE]), timeout=10)
        assert denied.value.code() == grpc.StatusCode.PERMISSION_DENIED
        request = pb.VerifyRequest(token="not-a-token", audience=AUDIENCE)
        (result,) = verify_many(running, [request]).results
        assert result.response == running.stub.Verify(request, timeout=10)
        foreign = TestCA(tmp_path / "foreign").client("reader", spiffe="spiffe://tokend.test/r")
        ca_file = Path(env["TOKEND_CA_FILE"])
        for client in (None, foreign):
            credentials = grpc.ssl_channel_credentials(
                root_certificates=ca_file.read_bytes(),
                private_key=client.key_file.read_bytes() if client else None,
                certificate_chain=client.cert_file.read_bytes() if client else None)
            with grpc.secure_channel(running.grpc_addr, credentials) as channel:
                stub = tokend_pb2_grpc.TokenServiceStub(channel)
                calls = ((stub.VerifyMany, pb.VerifyManyRequest(requests=[request])),
                         (stub.Verify, request))
                for method, message in calls:
                    with pytest.raises(grpc.RpcError) as refused:
                        method(message, timeout=5)
                    assert refused.value.code() == grpc.StatusCode.UNAVAILABLE


def test_a_full_batch_fits_at_the_largest_token_setting(bao: BaoDevServer, tmp_path: Path
                                                        ) -> None:
    """tokens.max_token_bytes at its maximum (64 KiB): 256 large valid tokens go in (the
    receive limit follows the setting) and their claims come back (so does the send limit,
    past gRPC's 4 MiB default)."""
    settings = make_settings(bao.addr, bao.token, tmp_path, vault={"key_name": "verify-many-big"},
                             tokens={"max_token_bytes": 65536, "max_claims_bytes": 65536})
    with RunningTokend(settings) as running:
        request = pb.IssueRequest(subject="big", audience=[AUDIENCE])
        request.claims.update({"blob": "x" * 40_000})
        token = running.stub.Issue(request, timeout=10).access_token
        assert len(token) > 50_000
        batch = [pb.VerifyRequest(token=token, audience=AUDIENCE)] * MAX_VERIFY_BATCH
        # A client's own receive limit (4 MiB by default in gRPC) must let such answers in.
        with grpc.insecure_channel(running.grpc_addr, options=[
                ("grpc.max_receive_message_length", 64 * 1024 * 1024)]) as channel:
            answer = tokend_pb2_grpc.TokenServiceStub(channel).VerifyMany(
                pb.VerifyManyRequest(requests=batch), timeout=30)
        assert answer.ByteSize() > 4 * 1024 * 1024
        assert all(r.response.valid and len(r.response.claims["blob"]) == 40_000
                   for r in answer.results)
