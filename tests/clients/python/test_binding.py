"""tokend_client.binding and LocalVerifier's `cnf` rule (RFC 8705 §3, RFC 7800 §3): the
claim's shape, the presenter arguments, the Envoy `x-forwarded-client-cert` parser, and
resource servers (plain TLS and gRPC, mutual TLS on loopback) taking the presenter from
their own connection, where a thief's replay with another certificate is refused."""

from __future__ import annotations

import hashlib
import socket
import ssl
import threading
import urllib.parse
from collections.abc import Iterator
from concurrent import futures
from pathlib import Path
from typing import Any

import grpc
import pytest
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from tests.clients.python.client_test_support import SigningKey, make_token
from tests.support.pki import Issued, TestCA
from tokend_client import InvalidToken, LocalVerifier, Reason
from tokend_client.binding import (
    certificate_thumbprint,
    check_confirmation,
    presenter_from_grpc_context,
    presenter_from_ssl_socket,
    presenter_from_xfcc,
)
from tokend_client.jose import b64url_encode

ISSUER = "https://tokend.example"
AUDIENCE = "payments"
NOW = 1_750_000_000


class Pki:
    def __init__(self, directory: Path) -> None:
        self.ca = TestCA(directory)
        self.server = self.ca.server()
        self.orders = self.ca.client("orders", spiffe="spiffe://t.test/ns/a/sa/orders")
        self.thief = self.ca.client("thief", spiffe="spiffe://t.test/ns/a/sa/thief")

    @staticmethod
    def cert(issued: Issued) -> x509.Certificate:
        return x509.load_pem_x509_certificate(issued.cert_file.read_bytes())

    def der(self, issued: Issued) -> bytes:
        return self.cert(issued).public_bytes(Encoding.DER)

    def x5t(self, issued: Issued) -> str:
        return b64url_encode(hashlib.sha256(self.der(issued)).digest())


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return Pki(tmp_path_factory.mktemp("pki"))


def claims(**extra: Any) -> dict[str, Any]:
    return {"iss": ISSUER, "sub": "alice", "aud": AUDIENCE, "exp": NOW + 300, "iat": NOW,
            "nbf": NOW, "jti": "j1", **extra}


def verifier(key: SigningKey) -> LocalVerifier:
    return LocalVerifier(key.jwks(), issuer=ISSUER, audience=AUDIENCE)


def reason_of(call: Any) -> Reason:
    with pytest.raises(InvalidToken) as info:
        call()
    return info.value.reason


THUMB = "q6urq6urq6urq6urq6urq6urq6urq6urq6urq6urq6s"  # b64url of 32 bytes 0xab


@pytest.mark.parametrize(("cnf", "reason"), [
    ("x", Reason.MALFORMED),                                   # RFC 7800 §3.1: an object
    (None, Reason.MALFORMED),
    ([THUMB], Reason.MALFORMED),
    ({"x5t#S256": THUMB[:-1]}, Reason.MALFORMED),              # 42 characters
    ({"x5t#S256": THUMB + "A"}, Reason.MALFORMED),
    ({"x5t#S256": THUMB[:-1] + "t"}, Reason.MALFORMED),        # padding bits set
    ({"x5t#S256": 5}, Reason.MALFORMED),
    ({}, Reason.CERTIFICATE_MISMATCH),                         # nothing we can check
    ({"jkt": THUMB}, Reason.CERTIFICATE_MISMATCH),             # RFC 7800 §3: unknown method
    ({"x5t#S256": THUMB, "jkt": THUMB}, Reason.CERTIFICATE_MISMATCH),
    ({"X5T#S256": THUMB}, Reason.CERTIFICATE_MISMATCH),        # member names are exact
])
def test_cnf_shape(signing_keys: dict[str, SigningKey], cnf: Any, reason: Reason) -> None:
    token = make_token(signing_keys["ES256"], claims(cnf=cnf))
    assert reason_of(lambda: verifier(signing_keys["ES256"]).verify(
        token, now=NOW, presenter_x5t_s256=THUMB)) is reason


def test_bound_token_needs_the_named_presenter(signing_keys: dict[str, SigningKey],
                                               pki: Pki) -> None:
    key = signing_keys["ES256"]
    token = make_token(key, claims(cnf={"x5t#S256": pki.x5t(pki.orders)}))
    local = verifier(key)
    for right in ({"presenter_certificate": pki.der(pki.orders)},
                  {"presenter_certificate": bytearray(pki.der(pki.orders))},
                  {"presenter_certificate": pki.cert(pki.orders)},
                  {"presenter_x5t_s256": pki.x5t(pki.orders)}):
        assert local.verify(token, now=NOW, **right)["sub"] == "alice"
    for wrong in ({"presenter_certificate": pki.der(pki.thief)},
                  {"presenter_x5t_s256": pki.x5t(pki.thief)}, {}):
        assert reason_of(lambda w=wrong: local.verify(token, now=NOW, **w)) is \
            Reason.CERTIFICATE_MISMATCH


def test_the_claim_rules_come_first(signing_keys: dict[str, SigningKey], pki: Pki) -> None:
    """A bound token that is also expired is EXPIRED (docs/verifier-contract.md order)."""
    key = signing_keys["ES256"]
    token = make_token(key, claims(cnf={"x5t#S256": pki.x5t(pki.orders)}, exp=NOW - 100))
    assert reason_of(lambda: verifier(key).verify(token, now=NOW)) is Reason.EXPIRED


@pytest.mark.parametrize(("arguments", "error"), [
    ({"presenter_x5t_s256": "A" * 42}, ValueError),
    ({"presenter_x5t_s256": b"A" * 43}, TypeError),
    ({"presenter_certificate": "not bytes"}, TypeError),
    ({"presenter_certificate": b"-----BEGIN CERTIFICATE-----\n"}, ValueError),
    ({"presenter_certificate": b""}, ValueError),
    ({"presenter_certificate": b"\x30" * (16 * 1024 + 1)}, ValueError),
])
def test_bad_presenter_arguments_are_programming_errors(
        signing_keys: dict[str, SigningKey], arguments: dict, error: type) -> None:
    token = make_token(signing_keys["ES256"], claims())
    with pytest.raises(error):
        verifier(signing_keys["ES256"]).verify(token, now=NOW, **arguments)


def test_both_presenter_arguments_are_refused(signing_keys: dict[str, SigningKey],
                                              pki: Pki) -> None:
    token = make_token(signing_keys["ES256"], claims())
    with pytest.raises(ValueError, match="not both"):
        verifier(signing_keys["ES256"]).verify(
            token, now=NOW, presenter_certificate=pki.der(pki.orders),
            presenter_x5t_s256=pki.x5t(pki.orders))


def test_an_unbound_token_ignores_the_presenter(signing_keys: dict[str, SigningKey],
                                                pki: Pki) -> None:
    token = make_token(signing_keys["ES256"], claims())
    assert verifier(signing_keys["ES256"]).verify(
        token, now=NOW, presenter_x5t_s256=pki.x5t(pki.thief))["sub"] == "alice"
    check_confirmation(claims(), None)


# -- Envoy x-forwarded-client-cert ----------------------------------------------------


def test_xfcc_hash_and_cert(pki: Pki) -> None:
    der = pki.der(pki.orders)
    digest = hashlib.sha256(der).hexdigest()
    pem = urllib.parse.quote(pki.cert(pki.orders).public_bytes(Encoding.PEM).decode(), safe="")
    expected = pki.x5t(pki.orders)
    assert presenter_from_xfcc(f"By=spiffe://t.test/ns/a/sa/pay;Hash={digest}") == expected
    assert presenter_from_xfcc(f"Hash={digest.upper()}") == expected
    assert presenter_from_xfcc(f"Cert=\"{pem}\"") == expected
    assert presenter_from_xfcc(
        f'By=spiffe://x;Hash={digest};Cert="{pem}";Subject="/C=US/CN=a,b;c=\\"d\\"";'
        "URI=spiffe://t.test/ns/a/sa/orders;DNS=a.test;DNS=b.test") == expected
    # Each proxy appends its element: the last is the one the nearest sidecar wrote.
    thief = hashlib.sha256(pki.der(pki.thief)).hexdigest()
    assert presenter_from_xfcc(f"Hash={thief},By=spiffe://x;Hash={digest}") == expected
    assert presenter_from_xfcc("By=spiffe://x;URI=spiffe://y") is None
    assert presenter_from_xfcc("") is None


@pytest.mark.parametrize("header", [
    "Hash=abc",                                     # not a SHA-256 digest
    "Hash=" + "g" * 64,
    "Cert=\"not%20a%20certificate\"",
    "Hash=" + "ab" * 32 + ";Hash=" + "cd" * 32,      # twice in one element
    'Subject="unterminated',
    "justtext",
    "=value",
    "Hash=" + "a" * 70_000,
])
def test_xfcc_malformed(header: str) -> None:
    with pytest.raises(ValueError):
        presenter_from_xfcc(header)


def test_xfcc_hash_and_cert_must_agree(pki: Pki) -> None:
    pem = urllib.parse.quote(pki.cert(pki.orders).public_bytes(Encoding.PEM).decode(), safe="")
    thief = hashlib.sha256(pki.der(pki.thief)).hexdigest()
    with pytest.raises(ValueError, match="different"):
        presenter_from_xfcc(f"Hash={thief};Cert={pem}")


# -- resource servers taking the presenter from their own mutual-TLS connection --------


class TlsResourceServer:
    """A plain `ssl` server on loopback: reads one token per connection, answers "ok sub"
    or the reason, with the presenter taken from that connection (bounded: 5 s each)."""

    def __init__(self, pki: Pki, local: LocalVerifier) -> None:
        self._context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH,
                                                   cafile=str(pki.ca.cert_file))
        self._context.verify_mode = ssl.CERT_REQUIRED
        self._context.load_cert_chain(pki.server.cert_file, pki.server.key_file)
        self._verifier = local
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(5)
        self.port = self._listener.getsockname()[1]
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        for _ in range(8):
            try:
                raw, _ = self._listener.accept()
            except OSError:
                return
            raw.settimeout(5)
            with self._context.wrap_socket(raw, server_side=True) as conn:
                token = conn.recv(16384).decode().strip()
                presenter = presenter_from_ssl_socket(conn)
                try:
                    found = self._verifier.verify(token, now=NOW, presenter_x5t_s256=presenter)
                    conn.sendall(f"ok {found['sub']}".encode())
                except InvalidToken as exc:
                    conn.sendall(exc.reason.value.encode())

    def present(self, pki: Pki, client: Issued, token: str) -> str:
        context = ssl.create_default_context(cafile=str(pki.ca.cert_file))
        context.load_cert_chain(client.cert_file, client.key_file)
        with socket.create_connection(("127.0.0.1", self.port), timeout=5) as raw, \
                context.wrap_socket(raw, server_hostname="localhost") as conn:
            conn.sendall(token.encode() + b"\n")
            return conn.recv(1024).decode()

    def close(self) -> None:
        self._listener.close()
        self._thread.join(5)


@pytest.fixture
def tls_server(pki: Pki, signing_keys: dict[str, SigningKey]) -> Iterator[TlsResourceServer]:
    server = TlsResourceServer(pki, verifier(signing_keys["ES256"]))
    yield server
    server.close()


def test_tls_resource_server_refuses_a_replay_from_another_certificate(
        tls_server: TlsResourceServer, pki: Pki, signing_keys: dict[str, SigningKey]) -> None:
    token = make_token(signing_keys["ES256"], claims(cnf={"x5t#S256": pki.x5t(pki.orders)}))
    assert tls_server.present(pki, pki.orders, token) == "ok alice"
    assert tls_server.present(pki, pki.thief, token) == "CERTIFICATE_MISMATCH"


def test_grpc_resource_server_takes_the_presenter_from_its_context(
        pki: Pki, signing_keys: dict[str, SigningKey]) -> None:
    local = verifier(signing_keys["ES256"])

    def check(request: bytes, context: grpc.ServicerContext) -> bytes:
        try:
            found = local.verify(request.decode(), now=NOW,
                                 presenter_x5t_s256=presenter_from_grpc_context(context))
            return f"ok {found['sub']}".encode()
        except InvalidToken as exc:
            return exc.reason.value.encode()

    handler = grpc.method_handlers_generic_handler(
        "test.Resource", {"Check": grpc.unary_unary_rpc_method_handler(check)})
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    server.add_generic_rpc_handlers((handler,))
    credentials = grpc.ssl_server_credentials(
        [(pki.server.key_file.read_bytes(), pki.server.cert_file.read_bytes())],
        root_certificates=pki.ca.cert_file.read_bytes(), require_client_auth=True)
    port = server.add_secure_port("127.0.0.1:0", credentials)
    server.start()
    token = make_token(signing_keys["ES256"], claims(cnf={"x5t#S256": pki.x5t(pki.orders)}))
    try:
        answers = []
        for client in (pki.orders, pki.thief):
            channel_credentials = grpc.ssl_channel_credentials(
                pki.ca.cert_file.read_bytes(), client.key_file.read_bytes(),
                client.cert_file.read_bytes())
            with grpc.secure_channel(f"localhost:{port}", channel_credentials) as channel:
                answers.append(channel.unary_unary("/test.Resource/Check")(
                    token.encode(), timeout=5).decode())
    finally:
        server.stop(0)
    assert answers == ["ok alice", "CERTIFICATE_MISMATCH"]
    assert certificate_thumbprint(pki.cert(pki.orders)) == pki.x5t(pki.orders)
