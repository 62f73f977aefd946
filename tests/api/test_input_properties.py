"""Property: whatever a caller sends to any RPC of a running tokend (generated requests,
and raw bytes that are no valid protobuf, also to health and reflection), the answer is
never UNKNOWN, INTERNAL or UNAVAILABLE, no traceback is logged, and a refused call writes
nothing: no store row, no audit line but the refusal, never the refused value when it is
a secret. Real `tokend serve` processes (real OpenBao, gRPC over loopback) on SQLite and
on PostgreSQL (NUL is its own case there). Bounded: a fixed number of examples, each call
with a deadline."""

from __future__ import annotations

import itertools
import sqlite3
import string
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import psycopg
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from tests.faults.procs import TokendProcess, replica_config
from tests.support.bao import BaoDevServer
from tests.support.postgres import PostgresCluster
from tokend_client.v1 import tokend_pb2 as pb

SERVICE = "/tokend.v1.TokenService/"
NEVER = {grpc.StatusCode.UNKNOWN, grpc.StatusCode.INTERNAL, grpc.StatusCode.UNAVAILABLE}
TABLES = ("revocations", "refresh_families", "refresh_tokens", "exchanges")
STREAMS = {"WatchRevocations", "WatchJwks", "/grpc.health.v1.Health/Watch"}
# The services tokend hosts but does not own: open to every caller, never audited.
OTHERS = ["/grpc.health.v1.Health/Check", "/grpc.health.v1.Health/Watch",
          "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo"]
METHODS = ["Issue", "Verify", "VerifyMany", "Refresh", "Revoke", "GetJwks", "WatchRevocations",
           "WatchJwks", "Exchange"]
CALL_TIMEOUT = 10.0

_databases = itertools.count(1)


@dataclass
class Target:
    process: TokendProcess
    rows: Callable[[], tuple[int, ...]]
    channel: grpc.Channel

    @property
    def audit_path(self) -> Path:
        return self.process.directory / "audit.jsonl"


@pytest.fixture(scope="module")
def sqlite_target(bao: BaoDevServer, tmp_path_factory: pytest.TempPathFactory
                  ) -> Iterator[Target]:
    directory: Path = tmp_path_factory.mktemp("input-properties")
    db = directory / "tokend.db"
    config = replica_config(bao.addr, bao.token, f"sqlite:///{db}", "input-properties")

    def rows() -> tuple[int, ...]:
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as conn:
            return tuple(conn.execute(f"SELECT count(*) FROM {t}").fetchone()[0]  # noqa: S608
                         for t in TABLES)

    with TokendProcess(config, directory) as process:
        channel = grpc.insecure_channel(process.grpc_addr)
        yield Target(process, rows, channel)
        channel.close()


@pytest.fixture(scope="module")
def postgres_target(bao: BaoDevServer, postgres_cluster: PostgresCluster,
                    tmp_path_factory: pytest.TempPathFactory) -> Iterator[Target]:
    directory: Path = tmp_path_factory.mktemp("input-properties-pg")
    url = postgres_cluster.create_database(f"input_properties_{next(_databases)}")
    config = replica_config(bao.addr, bao.token, url, "input-properties-pg")

    def rows() -> tuple[int, ...]:
        with psycopg.connect(url, autocommit=True) as conn:
            return tuple(conn.execute(f"SELECT count(*) FROM {t}").fetchone()[0]  # noqa: S608
                         for t in TABLES)

    with TokendProcess(config, directory) as process:
        channel = grpc.insecure_channel(process.grpc_addr)
        yield Target(process, rows, channel)
        channel.close()


# -- what callers send ---------------------------------------------------------------------

# Characters each rule must handle: controls (C0, DEL, C1, line separators), NUL, the
# characters the patterns treat specially, and non-ASCII.
SPECIAL = "\x00\n\r\t\x1b\x7f\x85\x9b\u2028\u2029 \"\\'.:/-_{}é\u202e\ufeff\U0001f600"
REFRESH_LIKE = st.text(string.ascii_letters + string.digits + "-_", min_size=43,
                       max_size=43).map(lambda body: "tkd_rt_" + body)
JWT_LIKE = st.sampled_from([
    "eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJhIn0.c2ln",
    "eyJhbGciOiJub25lIn0.eyJzdWIiOiJhIn0.",
    "ey0xxxxx.eyJzdWIiOiJhIn0.AAAA",
])
TEXT = st.one_of(
    st.text(max_size=20),
    st.text(alphabet=string.ascii_letters + string.digits + SPECIAL, max_size=40),
    st.sampled_from(["alice", "orders", "read", "https://api.test/x", "", "x" * 300]),
    REFRESH_LIKE, JWT_LIKE,
    st.builds(lambda a, b: a + b, st.sampled_from(["alice", "orders", "j1"]),
              st.sampled_from(list(SPECIAL))),
)
NAMES = st.lists(TEXT, max_size=4)
CLAIM_VALUE = st.recursive(
    st.none() | st.booleans() | st.floats() | st.integers(-(2**60), 2**60) | TEXT,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(TEXT, inner, max_size=3),
    max_leaves=8,
)
CLAIMS = st.dictionaries(st.sampled_from(["tenant", "sub", "role"]) | TEXT, CLAIM_VALUE,
                         max_size=4)


@st.composite
def issue_requests(draw: st.DrawFn) -> pb.IssueRequest:
    # Half the time the required fields are right, so the other rules are reached too.
    request = pb.IssueRequest(subject=draw(st.just("alice") | TEXT),
                              audience=draw(st.just(["orders"]) | NAMES),
                              scopes=draw(st.just(["read"]) | NAMES),
                              include_refresh_token=draw(st.booleans()))
    if draw(st.booleans()):
        request.claims.update(draw(CLAIMS))
    if draw(st.sampled_from([False, False, True])):
        request.ttl.seconds = draw(st.integers(-(2**63), 2**63 - 1) | st.integers(-5, 4000))
        request.ttl.nanos = draw(st.integers(-(2**31), 2**31 - 1) | st.just(0))
    return request


@st.composite
def near_valid_issues(draw: st.DrawFn) -> pb.IssueRequest:
    """Right names, so the claims (NaN, NUL, nesting) and the ttl reach the store."""
    request = pb.IssueRequest(subject="alice", audience=["orders"],
                              include_refresh_token=draw(st.booleans()))
    request.claims.update(draw(st.dictionaries(st.sampled_from(["tenant", "role", "x"]),
                                               CLAIM_VALUE, max_size=3)))
    if draw(st.booleans()):
        request.ttl.seconds = draw(st.integers(-(2**63), 2**63 - 1) | st.integers(-5, 4000))
    return request


@st.composite
def revoke_requests(draw: st.DrawFn) -> pb.RevokeRequest:
    target = draw(st.sampled_from(["token", "jti", "refresh_token", "subject", None]))
    request = pb.RevokeRequest(reason=draw(TEXT))
    if target is not None:
        setattr(request, target, draw(TEXT))
    return request


VERIFY = st.builds(pb.VerifyRequest, token=TEXT, audience=TEXT, required_scopes=NAMES,
                   delegation=st.sampled_from([0, 1, 2, 3, -1]))
# VerifyMany: a few requests, none, or one more than the limit (the same one repeated).
VERIFY_MANY = st.one_of(
    st.lists(VERIFY, max_size=4),
    VERIFY.map(lambda request: [request] * 257),
).map(lambda requests: pb.VerifyManyRequest(requests=requests))

MESSAGES: dict[str, st.SearchStrategy[Any]] = {
    "Issue": issue_requests() | near_valid_issues(),
    "Verify": VERIFY,
    "VerifyMany": VERIFY_MANY,
    "Refresh": st.builds(pb.RefreshRequest, refresh_token=TEXT, scopes=NAMES),
    "Revoke": revoke_requests(),
    "GetJwks": st.just(pb.GetJwksRequest()),
    "WatchRevocations": st.builds(pb.WatchRevocationsRequest,
                                  from_sequence=st.integers(-(2**63), 2**63 - 1)),
    "WatchJwks": st.just(pb.WatchJwksRequest()),
    "Exchange": st.builds(pb.ExchangeRequest, subject_token=TEXT, actor_token=TEXT,
                          audience=NAMES, scopes=NAMES),
}


def _corrupt(data: bytes, cut: int, junk: bytes) -> bytes:
    return data[:cut] + junk


def _not_utf8(data: bytes) -> bool:
    try:
        data.decode()
    except UnicodeDecodeError:
        return True
    return False


# Raw bytes: random, a valid message cut short or followed by junk, or a string field
# holding bytes that are no UTF-8.
RAW = st.one_of(
    st.binary(max_size=64),
    st.builds(_corrupt, issue_requests().map(lambda r: r.SerializeToString()),
              st.integers(0, 64), st.binary(max_size=8)),
    st.builds(lambda tag, body: bytes([tag, len(body)]) + body,
              st.sampled_from([0x0A, 0x12, 0x1A, 0x22, 0x2A]),
              st.binary(min_size=1, max_size=20).filter(_not_utf8)),
)


CALLS = st.one_of(
    st.sampled_from(METHODS).flatmap(
        lambda method: MESSAGES[method].map(lambda msg: (method, msg.SerializeToString()))),
    st.tuples(st.sampled_from(METHODS + OTHERS), RAW),
)


# -- one call, and what it may leave behind ------------------------------------------------

def call(channel: grpc.Channel, method: str, payload: bytes, request_id: str
         ) -> grpc.StatusCode:
    """Send `payload` as it is (no serializer); a stream's first answer is its verdict."""
    metadata = (("x-request-id", request_id),)
    path = method if method.startswith("/") else SERVICE + method
    try:
        if method in STREAMS or path.endswith("ServerReflectionInfo"):
            if path.endswith("ServerReflectionInfo"):
                stream = channel.stream_stream(path)(iter([payload]), timeout=CALL_TIMEOUT,
                                                     metadata=metadata)
            else:
                stream = channel.unary_stream(path)(payload, timeout=CALL_TIMEOUT,
                                                    metadata=metadata)
            try:
                next(stream)
            finally:
                stream.cancel()
        else:
            channel.unary_unary(path)(payload, timeout=CALL_TIMEOUT, metadata=metadata)
    except grpc.RpcError as exc:
        return exc.code()
    return grpc.StatusCode.OK


_request_ids = itertools.count(1)


def check_call(target: Target, method: str, payload: bytes, *, in_property: bool = True
               ) -> None:
    rows = target.rows()
    request_id = f"prop-{next(_request_ids)}"
    code = call(target.channel, method, payload, request_id)
    if in_property:
        event(f"{method}: {code.name}")  # --hypothesis-show-statistics shows the spread
    assert code not in NEVER, (method, payload, code, target.process.log_tail(5))
    # No input makes the server log a traceback (any caller could flood the log).
    assert "Traceback" not in target.process.log_path.read_text(), (method, payload)
    if code in (grpc.StatusCode.OK, grpc.StatusCode.CANCELLED):
        return
    assert target.rows() == rows, (method, payload, code, "a refused call wrote rows")
    if code is not grpc.StatusCode.RESOURCE_EXHAUSTED and method in METHODS:
        # The refusal and nothing else (gRPC sends the status before the audit line);
        # a rate-limit refusal and the services tokend does not own are not audited.
        (line,) = _audit_lines(target, request_id)
        assert f'"event":"rpc.{method}"' in line and f'"code":"{code.name}"' in line, line
    audit = target.audit_path.read_bytes()
    for secret in _secrets_in(payload):
        assert secret.encode() not in audit, (method, secret)


def _audit_lines(target: Target, request_id: str) -> list[str]:
    needle = f'"request_id":"{request_id}"'
    deadline = time.monotonic() + 5
    while True:
        lines = [line for line in target.audit_path.read_text().splitlines() if needle in line]
        if lines or time.monotonic() > deadline:
            return lines
        time.sleep(0.005)


def _secrets_in(payload: bytes) -> list[str]:
    text = payload.decode(errors="ignore")
    start = text.find("tkd_rt_")
    return [text[start:start + 50]] if start >= 0 and len(text) >= start + 50 else []


PROPERTY = settings(max_examples=300, deadline=None, database=None, derandomize=False,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


def test_every_method_of_the_service_is_called() -> None:
    """A new RPC joins the property (and needs a strategy in MESSAGES)."""
    service = pb.DESCRIPTOR.services_by_name["TokenService"]
    assert sorted(METHODS) == sorted(method.name for method in service.methods)
    assert set(MESSAGES) == set(METHODS)


@PROPERTY
@given(CALLS)
def test_no_request_gets_an_internal_or_retryable_code_on_sqlite(
        sqlite_target: Target, case: tuple[str, bytes]) -> None:
    check_call(sqlite_target, *case)


@settings(PROPERTY, max_examples=150)
@given(CALLS)
def test_no_request_gets_an_internal_or_retryable_code_on_postgresql(
        postgres_target: Target, case: tuple[str, bytes]) -> None:
    check_call(postgres_target, *case)


def test_the_property_catches_the_known_cases(sqlite_target: Target,
                                              postgres_target: Target) -> None:
    """The cases issue 13 names, always run (random search may miss them in a run)."""
    nan = pb.IssueRequest(subject="a", audience=["orders"])
    nan.claims.update({"n": float("nan")})
    huge_ttl = pb.IssueRequest(subject="a", audience=["orders"])
    huge_ttl.ttl.seconds = 2**62
    nul_claim = pb.IssueRequest(subject="a", audience=["orders"], include_refresh_token=True)
    nul_claim.claims.update({"c": "a\x00"})
    cases = [
        ("Issue", nan.SerializeToString()),
        ("Issue", huge_ttl.SerializeToString()),
        ("Issue", b"\x0a\x02\xff\xfe"),
        ("Revoke", pb.RevokeRequest(subject="a\x00").SerializeToString()),
        ("Revoke", pb.RevokeRequest(jti="j\n").SerializeToString()),
        ("Issue", nul_claim.SerializeToString()),
        ("WatchRevocations", b"\x08"),
        ("VerifyMany", b""),  # no requests
        ("VerifyMany", pb.VerifyManyRequest(requests=[
            pb.VerifyRequest(token="a", audience="o\x00"),
            pb.VerifyRequest(token="eyJhbGciOiJub25lIn0.eyJzdWIiOiJhIn0.", audience="o")],
        ).SerializeToString()),
    ]
    for target in (sqlite_target, postgres_target):
        for method, payload in cases:
            check_call(target, method, payload, in_property=False)
