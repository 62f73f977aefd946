"""Every error tokend answers carries google.rpc.Status details (api/errors.py): each case of
conformance/errors/cases.json against real tokends (tests/support/error_servers.py), seen
through the Python client's typed errors; docs/errors.md lists exactly the reasons the
code has. The Go client runs the same cases (clients/go/tokend/errors_interop_test.go)."""

from __future__ import annotations

import base64
import json
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from google.protobuf import json_format

from tests.support import error_servers
from tests.support.pki import Issued
from tokend.api import errors
from tokend.api.binding import NoClientCertificate
from tokend.api.ratelimit import RateLimiter, SharedRateLimiter
from tokend.api.streams import ShuttingDown, SlowSubscriber, StreamEnded
from tokend.config import RateLimitConfig
from tokend.store import InvalidValue
from tokend.tokens.circuit import SigningCircuit
from tokend.tokens.errors import SigningUnavailable, Unavailable
from tokend_client import (
    AsyncTokenClient,
    InvalidArgumentError,
    ResourceExhaustedError,
    TokenClient,
    TokendError,
)
from tokend_client.rpc_errors import DOMAIN, error_from_rpc
from tokend_client.v1 import tokend_pb2 as pb
from tokend_client.v1 import tokend_pb2_grpc

DOCS = Path(__file__).resolve().parents[2] / "docs" / "errors.md"
CASES = error_servers.cases()
SERVICE = pb.DESCRIPTOR.services_by_name["TokenService"]


# -- the table, the code and the cases agree ---------------------------------------------


def _documented() -> dict[str, tuple[str, bool]]:
    """reason -> (code, retry?) from the table in docs/errors.md."""
    rows = {}
    for line in DOCS.read_text().splitlines():
        cells = [cell.strip().strip("`") for cell in line.strip().strip("|").split("|")]
        if len(cells) == 4 and re.fullmatch(r"[A-Z][A-Z_]+", cells[1]) and cells[0].isupper():
            assert cells[1] not in rows, f"{cells[1]} is documented twice"
            assert cells[3] in ("yes", "no"), line
            rows[cells[1]] = (cells[0], cells[3] == "yes")
    return rows


def test_every_reason_is_documented_and_every_documented_reason_exists() -> None:
    in_code = {name: (spec.code.name, spec.retry) for name, spec in errors.REASONS.items()}
    assert _documented() == in_code


def test_every_field_reason_is_a_reason() -> None:
    assert set(errors.FIELD_REASONS.values()) <= set(errors.REASONS)


def test_every_reason_has_a_case_or_says_why_not() -> None:
    document = json.loads(error_servers.CASES_FILE.read_text())
    covered = {case["reason"] for case in document["cases"]}
    untestable = set(document["not_over_the_wire"])
    assert covered.isdisjoint(untestable)
    assert covered | untestable == set(errors.REASONS)
    assert document["domain"] == errors.DOMAIN == DOMAIN
    for case in document["cases"]:
        assert errors.REASONS[case["reason"]].code.name == case["code"], case["name"]
        assert errors.REASONS[case["reason"]].retry == case["retry"], case["name"]


@pytest.mark.parametrize(("exc", "reason"), [
    (InvalidValue("a NUL"), "INVALID_REQUEST"),
    (Unavailable("something is down"), "DEPENDENCY_UNAVAILABLE"),
    (SlowSubscriber("the client stopped reading"), "STREAM_TOO_SLOW"),
    (ShuttingDown("stopping"), "SHUTTING_DOWN"),
    (StreamEnded("ended"), "STREAM_ENDED"),
    (KeyError("a bug"), "INTERNAL"),
    (NoClientCertificate("no certificate"), "NO_CLIENT_CERTIFICATE"),
])
def test_reasons_no_request_can_cause(exc: Exception, reason: str) -> None:
    """The reasons of not_over_the_wire: their mapping and details, without a server."""
    failure = errors.failure_for(exc, "Issue")
    assert failure.reason == reason
    status = failure.status("Issue")
    assert status.code == failure.code.value[0]
    unpacked = _unpack(status)
    assert unpacked["reason"] == reason and unpacked["domain"] == DOMAIN
    assert (unpacked["retry_delay"] is not None) == errors.REASONS[reason].retry


def _unpack(status: Any) -> dict[str, Any]:
    """The details as the Python client reads them (tokend_client.rpc_errors)."""

    class Raised(grpc.RpcError):
        def code(self) -> grpc.StatusCode:
            return next(c for c in grpc.StatusCode if c.value[0] == status.code)

        def details(self) -> str:
            return status.message

        def trailing_metadata(self) -> Any:
            return (("grpc-status-details-bin", status.SerializeToString()),)

    return error_from_rpc(Raised())._details()


# -- every case against real servers ---------------------------------------------------------


@pytest.fixture(scope="module")
def env(bao: Any, postgres_url: str, tmp_path_factory: pytest.TempPathFactory
        ) -> Iterator[dict[str, str]]:
    with error_servers.error_servers(bao, postgres_url, tmp_path_factory.mktemp("errors")
                                     ) as found:
        yield found


def _caller(env: dict[str, str], name: str) -> Issued:
    return Issued(Path(env[f"TOKEND_ERRORS_CERT_{name.upper()}"]),
                  Path(env[f"TOKEND_ERRORS_KEY_{name.upper()}"]))


def _channel(env: dict[str, str], server: str, caller: str) -> grpc.Channel:
    return error_servers.channel(env[f"TOKEND_ERRORS_ADDR_{server.upper()}"],
                                 Path(env["TOKEND_ERRORS_CA_FILE"]), _caller(env, caller))


def _spent_refresh_token(env: dict[str, str]) -> str:
    """A refresh token spent once: presenting it again is reuse (RFC 9700 §4.14.2)."""
    with _channel(env, "main", "main") as chan:
        stub = tokend_pb2_grpc.TokenServiceStub(chan)
        issued = stub.Issue(pb.IssueRequest(subject="reuse", audience=[error_servers.AUDIENCE],
                                            include_refresh_token=True), timeout=10)
        stub.Refresh(pb.RefreshRequest(refresh_token=issued.refresh_token), timeout=10)
    return issued.refresh_token


def _request(case: dict[str, Any], variables: dict[str, str]) -> tuple[Any, Any]:
    """(serializer, request) for the case: raw bytes, or its JSON as the proto message."""
    if "raw_request_base64" in case:
        return None, base64.b64decode(case["raw_request_base64"])
    text = json.dumps(case["request"])
    for name, value in variables.items():
        text = text.replace("${" + name + "}", value)
    kind = getattr(pb, SERVICE.methods_by_name[case["rpc"]].input_type.name)
    request = json_format.Parse(text, kind())
    return kind.SerializeToString, request


def _call(chan: grpc.Channel, case: dict[str, Any], variables: dict[str, str]) -> None:
    """Makes the call; returns if it succeeded, raises grpc.RpcError if not."""
    method = SERVICE.methods_by_name[case["rpc"]]
    path = f"/{SERVICE.full_name}/{method.name}"
    serializer, request = _request(case, variables)
    if method.server_streaming:
        stream = chan.unary_stream(path, request_serializer=serializer)(request, timeout=20)
        next(iter(stream))  # a first message: the stream opened, no error
        stream.cancel()
        return
    chan.unary_unary(path, request_serializer=serializer)(request, timeout=20)


def _run(env: dict[str, str], case: dict[str, Any]) -> TokendError:
    variables = json.loads(env["TOKEND_ERRORS_VARS"])
    held = None
    if case.get("setup") == "spent_refresh_token":
        variables["spent_refresh_token"] = _spent_refresh_token(env)
    with _channel(env, case["server"], case["caller"]) as chan:
        if case.get("setup") == "hold_stream":  # takes the caller's one stream slot
            held = chan.unary_stream(f"/{SERVICE.full_name}/{case['rpc']}")(b"")
            next(iter(held))
        try:
            for _ in range(case.get("attempts", 1)):
                try:
                    _call(chan, case, variables)
                except grpc.RpcError as exc:
                    return error_from_rpc(exc)
            pytest.fail(f"{case['name']}: every attempt succeeded")
        finally:
            if held is not None:
                held.cancel()


@pytest.mark.parametrize("case", CASES, ids=[case["name"] for case in CASES])
def test_error_case(env: dict[str, str], case: dict[str, Any]) -> None:
    error = _run(env, case)
    assert error.code.name == case["code"], str(error)
    assert (error.reason, error.domain) == (case["reason"], DOMAIN), str(error)
    assert error.metadata["method"] == case["rpc"]
    if "field" in case:
        assert [v.field for v in error.field_violations] == [case["field"]]
        assert error.field_violations[0].description == error.message
        assert error.metadata["field"] == case["field"]
    else:
        assert error.field_violations == ()
    if case["retry"]:
        assert error.retry_delay is not None and error.retry_delay > 0
        assert error.retry_delay <= case.get("max_retry_delay_seconds", 5)
    else:
        assert error.retry_delay is None
    # Never a secret in an answer: no long request value comes back.
    told = error.message + json.dumps(error.metadata) + "".join(
        v.description for v in error.field_violations)
    for value in re.findall(r'"([^"]{20,})"', json.dumps(case["request"])):
        assert value not in told


def test_the_client_raises_typed_errors(env: dict[str, str]) -> None:
    """The TokenClient itself (not a raw stub): the class, the field, the retry delay."""
    ca_file = env["TOKEND_ERRORS_CA_FILE"]
    main, limited = _caller(env, "main"), _caller(env, "limited")
    with TokenClient.mtls(env["TOKEND_ERRORS_ADDR_MAIN"], ca_file, main.cert_file,
                          main.key_file) as client, pytest.raises(InvalidArgumentError) as bad:
        client.issue("", error_servers.AUDIENCE)
    assert bad.value.reason == "INVALID_SUBJECT"
    assert bad.value.field_violations[0].field == "subject"
    with TokenClient.mtls(env["TOKEND_ERRORS_ADDR_MAIN"], ca_file, limited.cert_file,
                          limited.key_file) as client, \
            pytest.raises(ResourceExhaustedError) as busy:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:  # the bucket holds at most one call
            client.issue("alice", error_servers.AUDIENCE)
    assert busy.value.reason == "RATE_LIMITED"
    # The bucket refills at LIMITED_PER_SECOND: a token back within 1/rate seconds.
    assert 0 < busy.value.retry_delay <= 1 / error_servers.LIMITED_PER_SECOND
    assert "RATE_LIMITED" in str(busy.value)


# -- where the retry delays come from -----------------------------------------------------


@pytest.mark.parametrize("shared", [False, True])
def test_rate_limit_retry_delay_is_the_refill_time(shared: bool, tmp_path: Path) -> None:
    limit = RateLimitConfig(per_second=2.0, burst=1)
    if shared:
        SharedRateLimiter.create(tmp_path / "buckets")
        limiter: RateLimiter = SharedRateLimiter(limit, tmp_path / "buckets")
    else:
        limiter = RateLimiter(limit)
    assert limiter.allow("a", now=100.0) and not limiter.allow("a", now=100.1)
    # Empty at 100.0, 0.2 of a token back by 100.1: 0.8 more at 2 per second.
    assert limiter.retry_after("a", now=100.1) == pytest.approx(0.4)
    assert limiter.retry_after("a", now=101.0) == 0.0


def test_signing_retry_delay_is_the_next_probe() -> None:
    now = [0.0]
    circuit = SigningCircuit(cooldown=10.0, clock=lambda: now[0])
    circuit.failed(RuntimeError("vault down"))
    now[0] = 4.0
    with pytest.raises(SigningUnavailable) as info:
        circuit.check()
    assert info.value.retry_after == pytest.approx(6.0)
    failure = errors.failure_for(info.value, "Issue")
    assert failure.reason == "SIGNING_UNAVAILABLE" and failure.retry_after == pytest.approx(6.0)
    circuit.probing()  # the probe is out: one more interval at most
    assert circuit.retry_after() == 10.0


def test_the_audit_line_names_the_reason(env: dict[str, str]) -> None:
    """An error's audit line carries its reason (error_reason), as its span does."""
    with _channel(env, "main", "main") as chan, pytest.raises(grpc.RpcError):
        tokend_pb2_grpc.TokenServiceStub(chan).Issue(
            pb.IssueRequest(subject="audited-error", audience=["payments-api"]), timeout=10)
    # The line is written once the answer has left (the handler's finally): wait for it.
    deadline = time.monotonic() + 5
    while not (found := _audited(env, "audited-error")) and time.monotonic() < deadline:
        time.sleep(0.05)
    (line,) = found
    assert (line["code"], line["error_reason"]) == ("PERMISSION_DENIED", "POLICY_DENIED")


def _audited(env: dict[str, str], subject: str) -> list[dict[str, Any]]:
    text = Path(env["TOKEND_ERRORS_AUDIT_LOG"]).read_text()
    return [json.loads(line) for line in text.splitlines()
            if line.endswith("}") and f'"subject":"{subject}"' in line.replace(" ", "")]


async def test_the_asyncio_client_raises_typed_errors(env: dict[str, str]) -> None:
    main = _caller(env, "main")
    async with AsyncTokenClient.mtls(env["TOKEND_ERRORS_ADDR_MAIN"],
                                     env["TOKEND_ERRORS_CA_FILE"], main.cert_file,
                                     main.key_file) as client:
        with pytest.raises(InvalidArgumentError) as bad:
            await client.issue("alice", error_servers.AUDIENCE, scopes=["a b"])
    assert bad.value.reason == "INVALID_SCOPES"
    assert [v.field for v in bad.value.field_violations] == ["scopes"]
