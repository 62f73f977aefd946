"""Token exchange (RFC 8693) end to end: a real tokend (OpenBao, SQLite, gRPC with mutual
TLS on loopback) and three workload identities: login issues alice's token for orders,
orders exchanges it for a token for payments, payments verifies it (subject alice, actor
orders) and may go one hop further. Policy, depth, scopes, refused subject tokens and the
revocation cascade are checked from the callers' side."""

from __future__ import annotations

import asyncio
import base64
import json
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import grpc
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from cryptography.hazmat.primitives.serialization import Encoding

from tests.support.bao import BaoDevServer
from tests.support.logs import read_jsonl
from tests.support.pki import Issued, TestCA
from tests.support.tokend import ISSUER, RunningTokend, mtls_settings
from tokend_client import (
    InvalidArgumentError,
    InvalidToken,
    LiveSource,
    LocalVerifier,
    PermissionDeniedError,
    Reason,
    TokenClient,
    actors,
)
from tokend_client.aio import AsyncTokenClient
from tokend_client.binding import certificate_thumbprint
from tokend_client.jose import compact_jws, json_segment
from tokend_client.v1 import tokend_pb2 as pb

LOGIN = "spiffe://test/ns/login/sa/web"
ORDERS = "spiffe://test/ns/orders/sa/api"
PAYMENTS = "spiffe://test/ns/payments/sa/api"
LEDGER = "spiffe://test/ns/ledger/sa/api"
POLICY = f"""\
callers:
  - spiffe: "{LOGIN}"
    rpcs: [Issue, Revoke]
    issue: {{audiences: ["orders", "payments", "ledger"], scopes: ["*"],
             bind_other_certificates: true}}
  - spiffe: "{ORDERS}"
    rpcs: [Exchange, Issue]
    issue: {{audiences: ["tokend-actors"], subjects: ["orders-*"]}}
    exchange:
      from_audiences: ["orders"]
      audiences: ["payments"]
      scopes: ["payments:*", "orders:read"]
  - spiffe: "{PAYMENTS}"
    rpcs: [Exchange]
    exchange: {{from_audiences: ["payments"], audiences: ["ledger"], max_chain_depth: 2,
                scopes: ["*"]}}
  - spiffe: "{LEDGER}"
    rpcs: [Exchange]
    exchange: {{from_audiences: ["ledger"], audiences: ["audit"], max_chain_depth: 2,
                scopes: ["*"]}}
"""
SCOPES = ["orders:read", "orders:write", "payments:charge"]


class Callers:
    def __init__(self, directory: Path, server: RunningTokend, ca: TestCA,
                 certs: dict[str, Issued]) -> None:
        self.server = server
        self.ca = ca
        self.clients = {name: TokenClient.mtls(server.grpc_addr, ca.cert_file, c.cert_file,
                                               c.key_file)
                        for name, c in certs.items()}
        self.certs = certs
        self.login, self.orders = self.clients["login"], self.clients["orders"]
        self.payments, self.ledger = self.clients["payments"], self.clients["ledger"]

    def alice(self, **kwargs: object) -> tuple[str, str]:
        """alice's token for orders, as the login service gets it: (token, jti)."""
        issued = self.login.issue("alice", "orders", scopes=SCOPES, **kwargs)  # type: ignore[arg-type]
        return issued.access_token, issued.jti


@pytest.fixture(scope="module")
def callers(bao: BaoDevServer, tmp_path_factory: pytest.TempPathFactory
            ) -> Iterator[Callers]:
    directory = tmp_path_factory.mktemp("exchange")
    ca = TestCA(directory / "pki")
    server_cert = ca.server()
    certs = {"login": ca.client("login", spiffe=LOGIN),
             "orders": ca.client("orders", spiffe=ORDERS),
             "payments": ca.client("payments", spiffe=PAYMENTS),
             "ledger": ca.client("ledger", spiffe=LEDGER)}
    settings = mtls_settings(
        bao.addr, bao.token, directory, policy=POLICY, vault={"key_name": "exchange"},
        audit_log=str(directory / "audit.log"),
        server_cert=server_cert.cert_file, server_key=server_cert.key_file,
        client_ca=ca.cert_file)
    with RunningTokend(settings, tls_client=(ca.cert_file, certs["login"])) as server:
        result = Callers(directory, server, ca, certs)
        yield result
        for client in result.clients.values():
            client.close()


def payload(token: str) -> dict[str, object]:
    segment = token.split(".")[1]
    return json.loads(base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4)))


def test_login_orders_payments_chain(callers: Callers) -> None:
    subject_token, _ = callers.alice()
    exchanged = callers.orders.exchange(subject_token, "payments", scopes=["payments:charge"])
    # payments asks tokend: alice is the subject, orders the (only) actor.
    verdict = callers.payments.verify(exchanged.access_token, "payments",
                                      required_scopes=["payments:charge"])
    assert verdict.valid and verdict.subject == "alice"
    assert verdict.actors == (ORDERS,)
    claims, parent = payload(exchanged.access_token), payload(subject_token)
    assert claims["act"] == {"sub": ORDERS}  # RFC 8693 §4.1
    assert claims["client_id"] == ORDERS and claims["aud"] == "payments"
    assert claims["scope"] == "payments:charge"
    assert claims["exp"] <= parent["exp"]  # type: ignore[operator]
    # ... and so does a local verifier.
    local = LocalVerifier(callers.payments.get_jwks(), issuer=ISSUER, audience="payments")
    assert actors(local.verify(exchanged.access_token)) == [ORDERS]
    # Not meant for orders any more, and not a direct token.
    assert callers.payments.verify(exchanged.access_token, "orders").reason is (
        Reason.WRONG_AUDIENCE)
    refused = callers.payments.verify(exchanged.access_token, "payments", delegation="refused")
    assert not refused.valid and refused.reason is Reason.DELEGATION
    assert callers.payments.verify(exchanged.access_token, "payments",
                                   delegation="required").valid
    direct = callers.payments.verify(subject_token, "orders", delegation="required")
    assert not direct.valid and direct.reason is Reason.DELEGATION


def test_a_second_hop_nests_the_first_actor_and_the_depth_limit_holds(
    callers: Callers,
) -> None:
    subject_token, _ = callers.alice()
    hop1 = callers.orders.exchange(subject_token, "payments", scopes=["payments:charge"])
    hop2 = callers.payments.exchange(hop1.access_token, "ledger")
    assert payload(hop2.access_token)["act"] == {"sub": PAYMENTS, "act": {"sub": ORDERS}}
    verdict = callers.ledger.verify(hop2.access_token, "ledger")
    assert verdict.valid and verdict.subject == "alice"
    assert verdict.actors == (PAYMENTS, ORDERS)  # the current actor first
    assert verdict.claims["scope"] == "payments:charge"
    # A third actor is beyond ledger's max_chain_depth (2).
    with pytest.raises(PermissionDeniedError, match="max_chain_depth"):
        callers.ledger.exchange(hop2.access_token, "audit")


def test_scopes_are_never_widened(callers: Callers) -> None:
    subject_token = callers.login.issue("alice", "orders", scopes=["orders:read"]).access_token
    with pytest.raises(InvalidArgumentError, match="cannot widen"):
        callers.orders.exchange(subject_token, "payments", scopes=["payments:charge"])
    # Within the subject token's scopes but beyond orders' exchange.scopes: policy.
    subject_token, _ = callers.alice()
    with pytest.raises(PermissionDeniedError, match="orders:write"):
        callers.orders.exchange(subject_token, "payments", scopes=["orders:write"])
    narrowed = callers.orders.exchange(subject_token, "payments", scopes=["orders:read"])
    assert payload(narrowed.access_token)["scope"] == "orders:read"


def test_lifetime_never_exceeds_the_subject_tokens(callers: Callers) -> None:
    subject_token = callers.login.issue("alice", "orders", scopes=SCOPES, ttl=60).access_token
    longer = callers.orders.exchange(subject_token, "payments", scopes=["orders:read"],
                                     ttl=3600)
    assert payload(longer.access_token)["exp"] <= payload(subject_token)["exp"]  # type: ignore[operator]
    shorter = callers.orders.exchange(subject_token, "payments", scopes=["orders:read"], ttl=5)
    claims = payload(shorter.access_token)
    assert claims["exp"] - claims["iat"] == 5  # type: ignore[operator]


def test_only_tokens_meant_for_the_caller_and_only_allowed_targets(callers: Callers) -> None:
    for_payments = callers.login.issue("alice", "payments", scopes=SCOPES).access_token
    with pytest.raises(PermissionDeniedError, match="issued for it"):
        callers.orders.exchange(for_payments, "payments")  # a token orders merely saw
    subject_token, _ = callers.alice()
    with pytest.raises(PermissionDeniedError, match="exchange audience 'ledger'"):
        callers.orders.exchange(subject_token, "ledger", scopes=["orders:read"])
    with pytest.raises(PermissionDeniedError, match="may not call Exchange"):
        callers.login.exchange(subject_token, "payments")


def test_revoked_expired_and_foreign_subject_tokens_are_refused(callers: Callers) -> None:
    revoked, jti = callers.alice()
    callers.login.revoke(jti=jti, reason="test")
    with pytest.raises(InvalidArgumentError, match="REVOKED"):
        callers.orders.exchange(revoked, "payments", scopes=["orders:read"])
    # Expired (still within the verifiers' 30 s leeway: minting from it is refused anyway).
    expired = callers.login.issue("alice", "orders", scopes=SCOPES, ttl=1).access_token
    time.sleep(2.1)
    with pytest.raises(InvalidArgumentError, match="EXPIRED"):
        callers.orders.exchange(expired, "payments", scopes=["orders:read"])
    # Foreign: the same claims, signed by a key that is not tokend's.
    genuine, _ = callers.alice()
    kid = next(iter(callers.login.get_jwks())).kid
    forged = _sign_es256({"alg": "ES256", "kid": kid, "typ": "at+jwt"}, payload(genuine))
    with pytest.raises(InvalidArgumentError, match="not issued by this tokend"):
        callers.orders.exchange(forged, "payments", scopes=["orders:read"])
    with pytest.raises(InvalidArgumentError, match="not issued by this tokend"):
        callers.orders.exchange("not-a-token", "payments")


def test_an_exchanged_token_is_bound_only_when_asked(callers: Callers) -> None:
    """RFC 8705 §3 with RFC 8693: the binding comes from the Exchange request, never from
    the subject token."""
    orders_x5t = certificate_thumbprint(_der(callers.certs["orders"].cert_file.read_bytes()))
    subject_token, _ = callers.alice()
    bound = callers.orders.exchange(subject_token, "payments", scopes=["orders:read"],
                                    bind_to_certificate=True)
    assert payload(bound.access_token)["cnf"] == {"x5t#S256": orders_x5t}
    assert callers.payments.verify(bound.access_token, "payments",
                                   presenter_x5t_s256=orders_x5t).valid
    stolen = callers.payments.verify(bound.access_token, "payments")
    assert stolen.reason is Reason.CERTIFICATE_MISMATCH
    unbound = callers.orders.exchange(subject_token, "payments", scopes=["orders:read"])
    assert "cnf" not in payload(unbound.access_token)


def test_a_bound_subject_token_is_exchanged_only_by_its_holder(callers: Callers) -> None:
    # alice's token bound to orders' certificate: orders may exchange it, payments (which
    # got hold of it) may not, even though its policy would allow the audience.
    orders_cert = callers.certs["orders"].cert_file.read_bytes()
    bound = callers.login.issue("alice", ["orders", "payments"], scopes=SCOPES,
                                bind_to_certificate=_der(orders_cert)).access_token
    assert callers.orders.exchange(bound, "payments", scopes=["orders:read"]).jti
    with pytest.raises(InvalidArgumentError, match="CERTIFICATE_MISMATCH"):
        callers.payments.exchange(bound, "ledger", scopes=["orders:read"])


def _der(pem: bytes) -> bytes:
    return x509.load_pem_x509_certificate(pem).public_bytes(Encoding.DER)


def _sign_es256(header: dict[str, object], claims: dict[str, object]) -> str:
    key = ec.generate_private_key(ec.SECP256R1())
    signing_input = f"{json_segment(header)}.{json_segment(claims)}"
    r, s = decode_dss_signature(key.sign(signing_input.encode(), ec.ECDSA(hashes.SHA256())))
    return compact_jws(signing_input, r.to_bytes(32, "big") + s.to_bytes(32, "big"))


def test_actor_token_names_the_actor_and_must_belong_to_the_caller(callers: Callers) -> None:
    subject_token, _ = callers.alice()
    mine = callers.orders.issue("orders-worker-7", "tokend-actors").access_token
    exchanged = callers.orders.exchange(subject_token, "payments", scopes=["orders:read"],
                                        actor_token=mine)
    assert payload(exchanged.access_token)["act"] == {"sub": "orders-worker-7"}
    assert payload(exchanged.access_token)["client_id"] == ORDERS
    someone_elses = callers.login.issue("orders-worker-8", "orders").access_token
    with pytest.raises(InvalidArgumentError, match="not issued to the caller"):
        callers.orders.exchange(subject_token, "payments", scopes=["orders:read"],
                                actor_token=someone_elses)


def test_revoking_the_original_revokes_every_exchanged_token_within_a_second(
    callers: Callers,
) -> None:
    with LiveSource(callers.payments) as live:
        local = LocalVerifier(live, issuer=ISSUER)
        subject_token, jti = callers.alice()
        hop1 = callers.orders.exchange(subject_token, "payments", scopes=["payments:charge"])
        hop2 = callers.payments.exchange(hop1.access_token, "ledger")
        assert local.verify(hop1.access_token, audience="payments")["sub"] == "alice"
        assert local.verify(hop2.access_token, audience="ledger")["sub"] == "alice"
        revoked = callers.login.revoke(jti=jti, reason="alice's session stolen")
        assert revoked == 3  # the original and both exchanged from it
        for token, audience in ((hop1.access_token, "payments"),
                                (hop2.access_token, "ledger")):
            assert callers.payments.verify(token, audience).reason is Reason.REVOKED
            assert _refused_within(local, token, audience, 1.0) < 1.0


def test_revoking_the_subject_revokes_exchanged_tokens(callers: Callers) -> None:
    subject_token = callers.login.issue("bob", "orders", scopes=SCOPES).access_token
    exchanged = callers.orders.exchange(subject_token, "payments", scopes=["orders:read"])
    assert callers.payments.verify(exchanged.access_token, "payments").valid
    callers.login.revoke(subject="bob", reason="offboarded")
    assert callers.payments.verify(exchanged.access_token, "payments").reason is Reason.REVOKED
    with pytest.raises(InvalidArgumentError, match="REVOKED"):
        callers.orders.exchange(subject_token, "payments", scopes=["orders:read"])


def test_async_client_exchanges(callers: Callers) -> None:
    subject_token, _ = callers.alice()
    cert = callers.certs["orders"]

    async def run() -> str:
        async with AsyncTokenClient.mtls(callers.server.grpc_addr, callers.ca.cert_file,
                                         cert.cert_file, cert.key_file) as client:
            issued = await client.exchange(subject_token, "payments", scopes="orders:read")
            verdict = await client.verify(issued.access_token, "payments",
                                          delegation="required")
            assert verdict.actors == (ORDERS,)
            return issued.jti

    assert asyncio.run(run())


def test_the_audit_names_parent_actor_and_depth(callers: Callers) -> None:
    subject_token, parent_jti = callers.alice()
    exchanged = callers.orders.exchange(subject_token, "payments", scopes=["orders:read"])
    audit_log = Path(callers.server.settings.audit_log or "")
    deadline = time.monotonic() + 3
    while time.monotonic() < deadline:
        lines = read_jsonl(audit_log)
        found = [e for e in lines if e.get("event") == "rpc.Exchange"
                 and e.get("jti") == exchanged.jti]
        if found:
            break
        time.sleep(0.05)
    assert found, "no audit line for the Exchange"
    event = found[0]
    assert (event["parent_jti"], event["actor"], event["depth"]) == (parent_jti, ORDERS, 1)
    assert subject_token not in audit_log.read_text()
    assert exchanged.access_token not in audit_log.read_text()


def _refused_within(verifier: LocalVerifier, jwt: str, audience: str, seconds: float) -> float:
    started = time.monotonic()
    while time.monotonic() - started < seconds:
        try:
            verifier.verify(jwt, audience=audience)
        except InvalidToken as exc:
            assert exc.reason is Reason.REVOKED
            return time.monotonic() - started
        time.sleep(0.01)
    raise AssertionError(f"still accepted after {seconds} s")



def test_verify_refuses_an_unknown_delegation_value(callers: Callers) -> None:
    subject_token, _ = callers.alice()
    request = pb.VerifyRequest(token=subject_token, audience="orders")
    request.delegation = 7  # an open proto3 enum carries values no version defines
    with pytest.raises(grpc.RpcError) as info:
        callers.server.stub.Verify(request, timeout=5)
    assert info.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert "delegation" in (info.value.details() or "")


def test_an_exchange_racing_the_revocation_of_its_parent_never_outlives_it(
    callers: Callers,
) -> None:
    """Exchange checks the parent, records the link, then signs; Revoke may land anywhere
    in between. Whatever the interleaving, a child that was handed out is refused once
    the Revoke has answered."""
    handed_out = 0
    with ThreadPoolExecutor(max_workers=2) as pool:
        for _ in range(20):
            subject_token, jti = callers.alice()
            exchange = pool.submit(callers.orders.exchange, subject_token, "payments",
                                   scopes=["orders:read"])
            revoke = pool.submit(callers.login.revoke, jti=jti, reason="race")
            revoke.result(timeout=10)
            try:
                child = exchange.result(timeout=10)
            except InvalidArgumentError as exc:
                assert "REVOKED" in str(exc)
                continue
            handed_out += 1
            verdict = callers.payments.verify(child.access_token, "payments")
            assert verdict.reason is Reason.REVOKED, "a child outlived its revoked parent"
    print(f"{handed_out}/20 exchanges won the race and were revoked with their parent")


def test_exchange_and_cascading_revoke_cost(callers: Callers) -> None:
    """Printed for the record (`pytest -s -k cost`): 50 sequential Issues, Exchanges and
    Revokes of a parent with 1 child; every exchanged token verifies, every child dies."""
    samples: dict[str, list[float]] = {"Issue": [], "Exchange": [], "Revoke(jti)": []}
    for _ in range(50):
        started = time.perf_counter()
        subject_token, jti = callers.alice()
        samples["Issue"].append(time.perf_counter() - started)
        started = time.perf_counter()
        child = callers.orders.exchange(subject_token, "payments", scopes=["orders:read"])
        samples["Exchange"].append(time.perf_counter() - started)
        assert callers.payments.verify(child.access_token, "payments").valid
        started = time.perf_counter()
        assert callers.login.revoke(jti=jti, reason="cost") == 2
        samples["Revoke(jti)"].append(time.perf_counter() - started)
    for name, values in samples.items():
        values.sort()
        print(f"{name}: p50 {values[25] * 1000:.1f} ms, max {values[-1] * 1000:.1f} ms")
