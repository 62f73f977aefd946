"""Issue 18: certificate-bound access tokens (RFC 8705 §3) against a running mutual-TLS
tokend (real OpenBao, gRPC over loopback, certificates from a throwaway CA).

A token bound to the orders workload's certificate is refused when a thief replays it
with another certificate, or with none, in server Verify and in LocalVerifier; the
verify cache never remembers a presenter; binding to another certificate needs policy.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from tests.api.test_mtls_policy import audit_events, code_of, stub_for
from tests.support.bao import BaoDevServer
from tests.support.pki import Issued, TestCA
from tests.support.tokend import ISSUER, RunningTokend, mtls_settings
from tokend_client import (
    AsyncTokenClient,
    InvalidArgumentError,
    InvalidToken,
    LocalVerifier,
    PermissionDeniedError,
    Reason,
    TokenClient,
    TokendError,
)
from tokend_client.binding import certificate_thumbprint
from tokend_client.jose import b64url_decode, b64url_encode
from tokend_client.v1 import tokend_pb2 as pb
from tokend_client.v1 import tokend_pb2_grpc

ORDERS = "spiffe://tokend.test/ns/shop/sa/orders"
GATEWAY = "spiffe://tokend.test/ns/edge/sa/gateway"
POLICY = f"""\
callers:
  - spiffe: "{ORDERS}"
    rpcs: [Issue]
    issue: {{audiences: ["payments"]}}
  - spiffe: "{GATEWAY}"
    rpcs: [Issue]
    issue: {{audiences: ["payments"], bind_other_certificates: true}}
"""
MISMATCH = pb.REASON_CERTIFICATE_MISMATCH


class Pki:
    def __init__(self, directory: Path) -> None:
        self.ca = TestCA(directory)
        self.server = self.ca.server()
        self.orders = self.ca.client("orders", spiffe=ORDERS)
        self.gateway = self.ca.client("gateway", spiffe=GATEWAY)
        self.payments = self.ca.client("payments", spiffe="spiffe://tokend.test/ns/shop/sa/pay")
        self.thief = self.ca.client("thief", spiffe="spiffe://tokend.test/ns/x/sa/thief")


def der(issued: Issued) -> bytes:
    return x509.load_pem_x509_certificate(issued.cert_file.read_bytes()).public_bytes(
        Encoding.DER)


def x5t(issued: Issued) -> str:
    return b64url_encode(hashlib.sha256(der(issued)).digest())


def claims_of(token: str) -> dict:
    return json.loads(b64url_decode(token.split(".")[1]))


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return Pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture(scope="module")
def server(bao: BaoDevServer, pki: Pki, tmp_path_factory: pytest.TempPathFactory
           ) -> Iterator[RunningTokend]:
    directory = tmp_path_factory.mktemp("binding")
    settings = mtls_settings(
        bao.addr, bao.token, directory, policy=POLICY, vault={"key_name": "cert-binding"},
        audit_log=str(directory / "audit.log"),
        server_cert=pki.server.cert_file, server_key=pki.server.key_file,
        client_ca=pki.ca.cert_file)
    with RunningTokend(settings, tls_client=(pki.ca.cert_file, pki.orders)) as running:
        yield running


@pytest.fixture(scope="module")
def stubs(server: RunningTokend, pki: Pki) -> dict[str, tokend_pb2_grpc.TokenServiceStub]:
    return {name: stub_for(server, pki.ca.cert_file, getattr(pki, name))
            for name in ("orders", "gateway", "payments", "thief")}


def bound_token(stub: tokend_pb2_grpc.TokenServiceStub, **binding: object) -> str:
    binding = binding or {"caller_certificate": True}
    return stub.Issue(pb.IssueRequest(subject="alice", audience=["payments"],
                                      binding=pb.CertificateBinding(**binding)),
                      timeout=10).access_token


def verify(stub: tokend_pb2_grpc.TokenServiceStub, token: str, **presenter: object
           ) -> pb.VerifyResponse:
    return stub.Verify(pb.VerifyRequest(token=token, audience="payments", **presenter),
                       timeout=10)


def local_verifier(server: RunningTokend) -> LocalVerifier:
    jwks = server.stub.GetJwks(pb.GetJwksRequest(), timeout=10).jwks_json
    return LocalVerifier(jwks, issuer=ISSUER, audience="payments")


def test_issue_binds_to_the_callers_own_certificate(server: RunningTokend, pki: Pki,
                                                    stubs: dict) -> None:
    token = bound_token(stubs["orders"])
    # RFC 8705 §3.1: base64url(SHA-256(DER)) of the certificate on this connection.
    assert claims_of(token)["cnf"] == {"x5t#S256": x5t(pki.orders)}
    lines = [e for e in audit_events(server) if e.get("event") == "rpc.Issue"]
    assert lines[-1]["cnf_x5t_s256"] == x5t(pki.orders)


def test_replayed_from_another_certificate_is_refused_by_server_verify(
        pki: Pki, stubs: dict) -> None:
    token = bound_token(stubs["orders"])
    payments = stubs["payments"]
    assert verify(payments, token, presenter_certificate_der=der(pki.orders)).valid
    assert verify(payments, token, presenter_x5t_s256=x5t(pki.orders)).valid
    for presenter in ({"presenter_certificate_der": der(pki.thief)},
                      {"presenter_x5t_s256": x5t(pki.thief)},
                      {}):  # no presenter: a bound token is never a bearer token
        answer = verify(payments, token, **presenter)
        assert not answer.valid and answer.reason == MISMATCH, presenter


def test_a_verify_cache_hit_never_skips_the_binding(pki: Pki, stubs: dict) -> None:
    """The same token, right certificate then wrong: the second is refused although the
    token sits in the verified-token cache (and its valid answer is memoised)."""
    token = bound_token(stubs["orders"])
    payments = stubs["payments"]
    for _ in range(3):
        assert verify(payments, token, presenter_certificate_der=der(pki.orders)).valid
    assert verify(payments, token, presenter_certificate_der=der(pki.thief)).reason == MISMATCH
    assert verify(payments, token).reason == MISMATCH
    # Another audience-and-scopes pair takes the cache's other path (claims checked again).
    answer = payments.Verify(pb.VerifyRequest(token=token, audience="payments",
                                              required_scopes=[],
                                              presenter_x5t_s256=x5t(pki.thief)), timeout=10)
    assert answer.reason == MISMATCH
    assert verify(payments, token, presenter_x5t_s256=x5t(pki.orders)).valid


def test_wrong_certificate_first_then_right(server: RunningTokend, pki: Pki,
                                           stubs: dict) -> None:
    token = bound_token(stubs["orders"])
    payments = stubs["payments"]
    assert verify(payments, token, presenter_x5t_s256=x5t(pki.thief)).reason == MISMATCH
    assert verify(payments, token, presenter_x5t_s256=x5t(pki.orders)).valid
    # The refusal is audited with its reason and the token's jti, never the token.
    refused = [e for e in audit_events(server) if e.get("event") == "rpc.Verify"
               and e.get("reason") == "CERTIFICATE_MISMATCH"]
    assert refused and refused[-1]["jti"] == claims_of(token)["jti"]
    assert token.split(".")[2] not in Path(server.settings.audit_log).read_text()


def test_replayed_from_another_certificate_is_refused_by_local_verifier(
        server: RunningTokend, pki: Pki, stubs: dict) -> None:
    token = bound_token(stubs["orders"])
    verifier = local_verifier(server)
    orders_cert = x509.load_pem_x509_certificate(pki.orders.cert_file.read_bytes())
    assert verifier.verify(token, presenter_certificate=der(pki.orders))["sub"] == "alice"
    assert verifier.verify(token, presenter_certificate=orders_cert)["sub"] == "alice"
    assert verifier.verify(token, presenter_x5t_s256=x5t(pki.orders))["sub"] == "alice"
    for presenter in ({"presenter_certificate": der(pki.thief)},
                      {"presenter_x5t_s256": x5t(pki.thief)}, {}):
        with pytest.raises(InvalidToken) as info:
            verifier.verify(token, **presenter)
        assert info.value.reason is Reason.CERTIFICATE_MISMATCH, presenter
    claims = verifier.verify(token, presenter_x5t_s256=x5t(pki.orders))
    with pytest.raises(InvalidToken) as info:  # a cache built on check_claims is safe too
        verifier.check_claims(claims, presenter_x5t_s256=x5t(pki.thief))
    assert info.value.reason is Reason.CERTIFICATE_MISMATCH


def test_an_unbound_token_ignores_the_presenter(pki: Pki, stubs: dict,
                                               server: RunningTokend) -> None:
    token = stubs["orders"].Issue(pb.IssueRequest(subject="alice", audience=["payments"]),
                                  timeout=10).access_token
    assert "cnf" not in claims_of(token)
    assert verify(stubs["payments"], token, presenter_x5t_s256=x5t(pki.thief)).valid
    assert local_verifier(server).verify(token, presenter_x5t_s256=x5t(pki.thief))


def test_binding_to_another_certificate_needs_policy(pki: Pki, stubs: dict) -> None:
    code, message = code_of(lambda: bound_token(stubs["orders"],
                                                certificate_der=der(pki.payments)))
    assert code == grpc.StatusCode.PERMISSION_DENIED, message
    assert "bind_other_certificates" in message
    token = bound_token(stubs["gateway"], certificate_der=der(pki.payments))
    assert claims_of(token)["cnf"] == {"x5t#S256": x5t(pki.payments)}
    assert verify(stubs["payments"], token, presenter_certificate_der=der(pki.payments)).valid
    assert verify(stubs["payments"], token,
                  presenter_certificate_der=der(pki.gateway)).reason == MISMATCH


@pytest.mark.parametrize("binding", [
    {"certificate_der": b"\x30\x03\x02\x01\x01"},          # DER, but no certificate
    {"certificate_der": b"-----BEGIN CERTIFICATE-----"},  # PEM is not DER
    {"certificate_der": b"\x30" * (16 * 1024 + 1)},        # over 16 KiB
    {"caller_certificate": False},                        # names no certificate
])
def test_a_bad_binding_is_invalid_argument(stubs: dict, binding: dict) -> None:
    code, message = code_of(lambda: bound_token(stubs["gateway"], **binding))
    assert code == grpc.StatusCode.INVALID_ARGUMENT, message


def test_a_bound_token_comes_without_a_refresh_token(stubs: dict) -> None:
    code, message = code_of(lambda: stubs["orders"].Issue(pb.IssueRequest(
        subject="alice", audience=["payments"], include_refresh_token=True,
        binding=pb.CertificateBinding(caller_certificate=True)), timeout=10))
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "refresh" in message


def test_callers_cannot_set_cnf_themselves(stubs: dict, pki: Pki) -> None:
    request = pb.IssueRequest(subject="alice", audience=["payments"])
    request.claims.update({"cnf": {"x5t#S256": x5t(pki.thief)}})
    code, message = code_of(lambda: stubs["orders"].Issue(request, timeout=10))
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "cnf" in message


@pytest.mark.parametrize("presenter", [
    {"presenter_x5t_s256": "A" * 42},
    {"presenter_x5t_s256": "A" * 44},
    {"presenter_x5t_s256": "A" * 42 + "B"},   # non-canonical: padding bits set
    {"presenter_x5t_s256": "A" * 42 + "="},
    {"presenter_x5t_s256": "+" * 42 + "A"},   # base64, not base64url
    {"presenter_x5t_s256": "A" * 42 + "A\n"},
    {"presenter_certificate_der": b"not a certificate"},
    {"presenter_certificate_der": b"\x30" * (16 * 1024 + 1)},
])
def test_a_bad_presenter_is_invalid_argument(stubs: dict, presenter: dict) -> None:
    token = bound_token(stubs["orders"])
    code, message = code_of(lambda: verify(stubs["payments"], token, **presenter))
    assert code == grpc.StatusCode.INVALID_ARGUMENT, message


def test_a_renewed_certificate_needs_a_new_token(server: RunningTokend, pki: Pki,
                                                 stubs: dict) -> None:
    """docs/binding.md: tokens bind to the certificate (RFC 8705 §3.1), not its key. After
    cert-manager renews the orders certificate (same key), a token bound to the old one
    is refused from the new one, and a token issued over the new one is accepted."""
    renewed = pki.ca.renew(pki.orders, "orders-renewed")
    old_token = bound_token(stubs["orders"])
    renewed_stub = stub_for(server, pki.ca.cert_file, renewed)
    new_token = bound_token(renewed_stub)
    assert x5t(renewed) != x5t(pki.orders)
    assert claims_of(new_token)["cnf"] == {"x5t#S256": x5t(renewed)}
    payments = stubs["payments"]
    assert verify(payments, old_token, presenter_certificate_der=der(renewed)).reason == MISMATCH
    assert verify(payments, new_token, presenter_certificate_der=der(renewed)).valid
    # The old certificate is still valid until it expires: its tokens live on with it.
    assert verify(payments, old_token, presenter_certificate_der=der(pki.orders)).valid
    assert certificate_thumbprint(der(renewed)) == x5t(renewed)


def test_binding_on_a_connection_without_a_client_certificate(tokend: RunningTokend) -> None:
    """The plaintext development server: nothing to bind to, FAILED_PRECONDITION."""
    code, message = code_of(lambda: bound_token(tokend.stub))
    assert code == grpc.StatusCode.FAILED_PRECONDITION, message
    assert "client certificate" in message


def test_python_client_binds_and_verifies_with_a_presenter(server: RunningTokend,
                                                           pki: Pki) -> None:
    """TokenClient.issue(bind_to_certificate=...) and TokenClient.verify(presenter_...)."""
    orders = TokenClient.mtls(server.grpc_addr, pki.ca.cert_file, pki.orders.cert_file,
                              pki.orders.key_file)
    payments = TokenClient.mtls(server.grpc_addr, pki.ca.cert_file, pki.payments.cert_file,
                                pki.payments.key_file)
    gateway = TokenClient.mtls(server.grpc_addr, pki.ca.cert_file, pki.gateway.cert_file,
                               pki.gateway.key_file)
    with orders, payments, gateway:
        issued = orders.issue("alice", "payments", bind_to_certificate=True)
        assert claims_of(issued.access_token)["cnf"] == {"x5t#S256": x5t(pki.orders)}
        assert payments.verify(issued.access_token, "payments",
                               presenter_certificate=der(pki.orders)).valid
        assert payments.verify(issued.access_token, "payments",
                               presenter_certificate=cert_of(pki.orders)).valid
        for wrong in ({"presenter_x5t_s256": x5t(pki.thief)}, {}):
            result = payments.verify(issued.access_token, "payments", **wrong)
            assert not result.valid and result.reason is Reason.CERTIFICATE_MISMATCH
        with pytest.raises(PermissionDeniedError):
            orders.issue("alice", "payments", bind_to_certificate=der(pki.thief))
        named = gateway.issue("alice", "payments", bind_to_certificate=cert_of(pki.payments))
        assert claims_of(named.access_token)["cnf"] == {"x5t#S256": x5t(pki.payments)}
        with pytest.raises(InvalidArgumentError):
            orders.issue("alice", "payments", bind_to_certificate=True, refresh=True)


def test_python_async_client_binds_and_verifies(server: RunningTokend, pki: Pki) -> None:
    async def run() -> tuple[bool, Reason | None]:
        async with AsyncTokenClient.mtls(server.grpc_addr, pki.ca.cert_file,
                                         pki.orders.cert_file, pki.orders.key_file) as client:
            issued = await client.issue("alice", "payments", bind_to_certificate=True)
            right = await client.verify(issued.access_token, "payments",
                                        presenter_x5t_s256=x5t(pki.orders))
            wrong = await client.verify(issued.access_token, "payments",
                                        presenter_x5t_s256=x5t(pki.thief))
            return right.valid, wrong.reason

    assert asyncio.run(run()) == (True, Reason.CERTIFICATE_MISMATCH)


def test_python_client_without_a_client_certificate(tokend: RunningTokend) -> None:
    with TokenClient.insecure_loopback(tokend.grpc_addr) as client, \
            pytest.raises(TokendError) as info:
        client.issue("alice", "payments", bind_to_certificate=True)
    assert info.value.code == grpc.StatusCode.FAILED_PRECONDITION
    assert info.value.reason == "NO_CLIENT_CERTIFICATE"  # docs/errors.md


def cert_of(issued: Issued) -> x509.Certificate:
    return x509.load_pem_x509_certificate(issued.cert_file.read_bytes())
