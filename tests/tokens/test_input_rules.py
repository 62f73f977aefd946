"""The input rules seen from a caller's side, against a real `tokend serve` process (real
OpenBao, gRPC over loopback, SQLite or PostgreSQL store): secrets are never accepted as
names, patterns match whole strings, and input that can never succeed is
INVALID_ARGUMENT, never UNKNOWN, INTERNAL or a retryable code."""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from google.protobuf import struct_pb2

from tests.faults.procs import TokendProcess, replica_config
from tests.support.bao import BaoDevServer
from tests.support.logs import read_jsonl
from tokend.api.calls import RequestIds
from tokend.api.errors import failure_for
from tokend.store import InvalidValue, StoreError
from tokend.tokens.input_rules import looks_like_secret
from tokend_client.v1 import tokend_pb2 as pb

SERVICE = "/tokend.v1.TokenService/"
AUDIENCE = "orders"


@pytest.fixture(scope="module")
def server(bao: BaoDevServer, tmp_path_factory: pytest.TempPathFactory
           ) -> Iterator[TokendProcess]:
    directory: Path = tmp_path_factory.mktemp("input-rules")
    config = replica_config(bao.addr, bao.token, f"sqlite:///{directory / 'tokend.db'}",
                            "input-rules")
    with TokendProcess(config, directory) as process:
        yield process


def code_of(call: Callable[[], Any]) -> tuple[grpc.StatusCode, str]:
    try:
        call()
    except grpc.RpcError as exc:
        return exc.code(), exc.details() or ""
    return grpc.StatusCode.OK, ""


def refused(call: Callable[[], Any]) -> str:
    code, details = code_of(call)
    assert code == grpc.StatusCode.INVALID_ARGUMENT, (code, details)
    return details


def issue(server: TokendProcess, **fields: Any) -> pb.IssueResponse:
    claims = fields.pop("claims", None)
    request = pb.IssueRequest(**{"subject": "alice", "audience": [AUDIENCE], **fields})
    if claims is not None:
        request.claims.CopyFrom(claims)
    return server.stub.Issue(request, timeout=10)


def revoke(server: TokendProcess, **fields: str) -> int:
    return server.stub.Revoke(pb.RevokeRequest(**fields), timeout=10).revoked


def raw_call(server: TokendProcess, method: str, payload: bytes, request_id: str | None = None
             ) -> tuple[grpc.StatusCode, str]:
    """`payload` as the request bytes, unchecked by any protobuf library."""
    channel = grpc.insecure_channel(server.grpc_addr)
    metadata = (("x-request-id", request_id),) if request_id else None
    try:
        call = channel.unary_unary(SERVICE + method)  # no serializers: bytes as they are
        return code_of(lambda: call(payload, timeout=10, metadata=metadata))
    finally:
        channel.close()


def feed_values(server: TokendProcess) -> list[str]:
    """Every revocation value the WatchRevocations stream shows any caller."""
    values = []
    stream = server.stub.WatchRevocations(pb.WatchRevocationsRequest(), timeout=10)
    for event in stream:
        if event.checkpoint:
            break
        values.append(event.value)
    stream.cancel()
    return values


def stored_bytes(directory: Path) -> bytes:
    return b"".join(path.read_bytes() for path in sorted(directory.glob("tokend.db*")))


def audit_lines(server: TokendProcess) -> list[dict[str, Any]]:
    path = server.directory / "audit.jsonl"
    return read_jsonl(path)


def struct(**values: Any) -> struct_pb2.Struct:
    claims = struct_pb2.Struct()
    claims.update(values)
    return claims


# -- item 8: a secret is never a name --------------------------------------------------------

def test_revoke_refuses_a_refresh_token_or_jwt_as_a_name_and_writes_nothing(
        server: TokendProcess) -> None:
    issued = issue(server, subject="victim", include_refresh_token=True)
    secret = issued.refresh_token
    jwt = issued.access_token
    audit_before = len(audit_lines(server))
    for fields in ({"jti": secret}, {"subject": secret}, {"jti": "ok-jti", "reason": secret},
                   {"subject": jwt}, {"subject": "bob", "reason": f"leaked: {jwt}"},
                   {"jti": jwt[:120]}, {"subject": f"Bearer {secret}"}):
        details = refused(lambda fields=fields: revoke(server, **fields))
        assert secret not in details and jwt[:40] not in details
    # The family is alive: the refusal revoked nothing.
    renewed = server.stub.Refresh(pb.RefreshRequest(refresh_token=secret), timeout=10)
    assert renewed.access_token
    server.stop()  # flush everything to disk before reading the files
    try:
        for where, text in (("store", stored_bytes(server.directory)),
                            ("audit", (server.directory / "audit.jsonl").read_bytes()),
                            ("log", server.log_path.read_bytes())):
            assert secret.encode() not in text, f"the refresh token is in the {where}"
            assert jwt.encode() not in text, f"the access token is in the {where}"
    finally:
        server.start()
    assert secret not in feed_values(server) and jwt not in feed_values(server)
    refusals = [e for e in audit_lines(server)[audit_before:] if e["event"] == "rpc.Revoke"]
    assert len(refusals) == 7 and all(e["code"] == "INVALID_ARGUMENT" for e in refusals)
    assert not any(e.get("revoked") for e in refusals)


def test_issue_refuses_secrets_as_names(server: TokendProcess) -> None:
    secret = issue(server, include_refresh_token=True).refresh_token
    for fields in ({"subject": secret}, {"audience": [secret]}, {"scopes": [secret]}):
        assert secret not in refused(lambda fields=fields: issue(server, **fields))
    # The refusals are audited, without the value (it was audited before being checked).
    assert secret not in (server.directory / "audit.jsonl").read_text()


def test_verify_refuses_an_empty_required_scope(server: TokendProcess) -> None:
    # Reached the verifier's ValueError before: a bug code for bad input.
    token = issue(server).access_token
    refused(lambda: server.stub.Verify(
        pb.VerifyRequest(token=token, audience=AUDIENCE, required_scopes=[""]), timeout=10))


def test_revoke_fields_follow_issue_rules(server: TokendProcess) -> None:
    assert "printable" in refused(lambda: revoke(server, subject="x" * 257))
    assert "printable" in refused(lambda: revoke(server, jti="j" * 129))
    assert "printable" in refused(lambda: revoke(server, jti="a b"))
    assert "printable" in refused(lambda: revoke(server, jti="j1", reason="r" * 257))
    assert revoke(server, jti="plain-jti-1", reason="ticket 42: lost laptop") == 1


# -- item 10: whole strings, no control characters ----------------------------------------

CONTROL = ["\n", "\r", "\x00", "\x1b", "\x7f", "\x85", "\x9b", "\u2028", "\u2029"]


@pytest.mark.parametrize("char", CONTROL, ids=[f"U+{ord(c):04X}" for c in CONTROL])
def test_no_control_character_in_any_field(server: TokendProcess, char: str) -> None:
    refused(lambda: issue(server, subject="x" + char))
    refused(lambda: issue(server, audience=[AUDIENCE + char]))
    refused(lambda: issue(server, scopes=["read" + char]))
    refused(lambda: issue(server, claims=struct(**{"tenant" + char: "t"})))
    refused(lambda: issue(server, claims=struct(tenant="t" + char)))
    refused(lambda: issue(server, claims=struct(nested={"k" + char: 1})))
    refused(lambda: revoke(server, jti="jti" + char))
    refused(lambda: revoke(server, subject="x" + char))
    refused(lambda: revoke(server, jti="jti-ok", reason="why" + char))
    refused(lambda: server.stub.Verify(pb.VerifyRequest(token="a.b.c", audience="o" + char),
                                       timeout=10))


def test_a_subject_with_a_newline_cannot_outlive_revoke(server: TokendProcess) -> None:
    # Before: Issue("x\n") passed the `^...$` pattern, and Revoke(subject="x") missed it.
    refused(lambda: issue(server, subject="x\n"))
    token = issue(server, subject="x").access_token
    assert revoke(server, subject="x") == 1
    verdict = server.stub.Verify(pb.VerifyRequest(token=token, audience=AUDIENCE), timeout=10)
    assert verdict.reason == pb.REASON_REVOKED


def test_a_request_id_is_matched_whole() -> None:
    # gRPC itself refuses control characters in metadata on the wire (both client and
    # server validate header values), so this rule is checked on the parser directly.
    class Context:
        def __init__(self, value: str) -> None:
            self.value = value

        def invocation_metadata(self) -> tuple[tuple[str, str], ...]:
            return (("x-request-id", self.value),)

    ids = RequestIds()
    assert ids.for_call(Context("req-1.a:b")) == "req-1.a:b"
    for bad in ("abc\n", "abc\r\n", "a\x85", "a b", "x" * 129):
        assert ids.for_call(Context(bad)) != bad


# -- item 11: input that can never succeed ------------------------------------------------

@pytest.mark.parametrize("value", [float("nan"), float("inf"), float("-inf")])
def test_non_finite_claims_are_invalid_argument(server: TokendProcess, value: float) -> None:
    assert "NaN or infinity" in refused(lambda: issue(server, claims=struct(score=value)))


@pytest.mark.parametrize(("seconds", "nanos"), [(2**62, 0), (-(2**62), 0), (10, -5),
                                                (10, 2_000_000_000), (2**63 - 1, 999_999_999)])
def test_impossible_ttls_are_invalid_argument(server: TokendProcess, seconds: int,
                                              nanos: int) -> None:
    request = pb.IssueRequest(subject="alice", audience=[AUDIENCE])
    request.ttl.seconds, request.ttl.nanos = seconds, nanos
    refused(lambda: server.stub.Issue(request, timeout=10))


def _bad_utf8_subject() -> bytes:
    return b"\x0a\x03\xff\xfe\xfd" + b"\x12\x06orders"  # field 1 (subject), not UTF-8


def _deep_claims(levels: int) -> bytes:
    # Struct{fields: {"a": Value{struct_value: Struct{...}}}}, nested `levels` deep.
    inner = b""
    for _ in range(levels):
        value = b"\x2a" + _varint(len(inner)) + inner  # Value.struct_value = 5
        entry = b"\x0a\x01a" + b"\x12" + _varint(len(value)) + value  # map key, value
        inner = b"\x0a" + _varint(len(entry)) + entry  # Struct.fields = 1
    return b"\x22" + _varint(len(inner)) + inner  # IssueRequest.claims = 4


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte, n = n & 0x7F, n >> 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


@pytest.mark.parametrize(("method", "payload"), [
    ("Issue", _bad_utf8_subject()),
    ("Issue", _deep_claims(200)),
    ("Verify", b"\x0a\x02\xc3\x28"),
    ("Revoke", b"\x22\x01\x80"),
    ("Refresh", b"\x0a\x05abc"),  # truncated
    ("GetJwks", b"\xff\xff\xff"),
])
def test_malformed_protobuf_is_invalid_argument_and_audited(
        server: TokendProcess, method: str, payload: bytes) -> None:
    malformed = f'tokend_malformed_requests_total{{rpc="{method}"}}'
    before_metric = _metric(server, malformed)
    request_id = f"malformed-{method}-{secrets.token_hex(4)}"
    code, details = raw_call(server, method, payload, request_id)
    assert code == grpc.StatusCode.INVALID_ARGUMENT, (code, details)
    assert "not a valid protobuf message" in details
    assert "Error parsing" not in details and "Exception" not in details
    assert _metric(server, malformed) == before_metric + 1
    # Refusals are audited; matched by request id: an earlier test's line may land late.
    (event,) = _settled(lambda: [line for line in audit_lines(server)
                                 if line.get("request_id") == request_id])
    assert event["event"] == f"rpc.{method}" and event["code"] == "INVALID_ARGUMENT"
    assert "Traceback" not in server.log_path.read_text()


def _settled(read: Callable[[], list[Any]]) -> list[Any]:
    """gRPC sends the status before the handler's audit line is written: wait for it."""
    deadline = time.monotonic() + 5
    while not (found := read()) and time.monotonic() < deadline:
        time.sleep(0.01)
    return found


BAD_UTF8_SERVICE = b"\x0a\x02\xff\xfe"  # HealthCheckRequest.service / a reflection host


@pytest.mark.parametrize(("path", "label"), [
    ("/grpc.health.v1.Health/Check", "Health/Check"),
    ("/grpc.health.v1.Health/Watch", "Health/Watch"),
    ("/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo",
     "ServerReflection/ServerReflectionInfo"),
])
def test_malformed_protobuf_to_health_and_reflection_is_invalid_argument(
        server: TokendProcess, path: str, label: str) -> None:
    # Open to every caller: before, UNKNOWN with the parser's text and a logged traceback.
    series = f'tokend_malformed_requests_total{{rpc="{label}"}}'
    before = _metric(server, series)
    channel = grpc.insecure_channel(server.grpc_addr)
    try:
        if path.endswith("Check"):
            code, details = code_of(lambda: channel.unary_unary(path)(BAD_UTF8_SERVICE,
                                                                      timeout=10))
        elif path.endswith("Watch"):
            code, details = code_of(lambda: next(channel.unary_stream(path)(
                BAD_UTF8_SERVICE, timeout=10)))
        else:
            code, details = code_of(lambda: next(channel.stream_stream(path)(
                iter([BAD_UTF8_SERVICE]), timeout=10)))
    finally:
        channel.close()
    assert code == grpc.StatusCode.INVALID_ARGUMENT, (code, details)
    assert "not a valid protobuf message" in details and "DecodeError" not in details
    assert _metric(server, series) == before + 1
    assert "Traceback" not in server.log_path.read_text()


def _metric(server: TokendProcess, series: str) -> float:
    import urllib.request
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with opener.open(f"{server.http_url}/metrics", timeout=5) as resp:
        for line in resp.read().decode().splitlines():
            if line.startswith(series + " "):
                return float(line.split()[1])
    return 0.0


@pytest.fixture(scope="module")
def pg_server(bao: BaoDevServer, postgres_url: str,
              tmp_path_factory: pytest.TempPathFactory) -> Iterator[TokendProcess]:
    directory: Path = tmp_path_factory.mktemp("input-rules-pg")
    config = replica_config(bao.addr, bao.token, postgres_url, "input-rules-pg")
    with TokendProcess(config, directory) as process:
        yield process


def test_a_nul_on_postgresql_is_invalid_argument_not_an_outage(pg_server: TokendProcess
                                                               ) -> None:
    refused(lambda: revoke(pg_server, subject="a\x00b"))
    refused(lambda: revoke(pg_server, jti="ok-jti", reason="a\x00b"))
    refused(lambda: issue(pg_server, claims=struct(note="a\x00b"), include_refresh_token=True))
    refused(lambda: issue(pg_server, claims=struct(nested={"k": ["a\x00"]}),
                          include_refresh_token=True))
    log = pg_server.log_path.read_text()
    assert "store_unavailable" not in log and "Traceback" not in log
    assert pg_server.ready()


def test_an_unexpected_exception_is_internal_not_retryable() -> None:
    # No real fault makes the server raise an unknown exception (that would be a bug to
    # fix), so the mapping is checked directly: a bug is not an outage to retry.
    failure = failure_for(KeyError("internal detail"), "Issue")
    assert (failure.code, failure.reason) == (grpc.StatusCode.INTERNAL, "INTERNAL")
    assert "internal detail" not in failure.message and "retry" not in failure.message
    failure = failure_for(StoreError("postgresql: down"), "Issue")
    assert failure.code == grpc.StatusCode.UNAVAILABLE  # a real outage stays retryable
    assert failure.reason == "STORE_UNAVAILABLE" and "postgresql" not in failure.message
    failure = failure_for(InvalidValue("NUL"), "Revoke")
    assert (failure.code, failure.reason) == (grpc.StatusCode.INVALID_ARGUMENT,
                                              "INVALID_REQUEST")


@pytest.mark.parametrize(("value", "secret"), [
    ("alice", False), ("alice.smith.jr", False), ("v1.2.3", False), ("ex01.foo.bar", False),
    ("https://api.example.com/a.b.c", False), ("password changed. ticket 1.2", False),
    ("eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJhIn0.c2ln", True),  # JWS
    ("eyJhbGciOiJSU0EtT0FFUCJ9.a.b.c.d", True),  # JWE: five segments
    ("ICB7ICJhbGciOiJub25lIn0.e30.", True),  # header with leading spaces, no "eyJ"
    ("Bearer eyJhbGciOiJFUzI1NiJ9", True),  # a token's head alone
    ("tkd_rt_" + "A" * 43, True), ("see tkd_rt_abc", True),
])
def test_what_counts_as_a_secret(value: str, secret: bool) -> None:
    assert looks_like_secret(value) is secret
