"""Certificate-bound access tokens (RFC 8705 §3): the `cnf` rule every verifier applies,
and the ways a resource server learns the thumbprint of the certificate presenting a token.

The Envoy `x-forwarded-client-cert` parser is hand-written: no maintained library parses
that header, and its grammar (RFC 7230-style quoted strings inside `;`/`,` lists) is small.

A bound token carries ``"cnf": {"x5t#S256": base64url(SHA-256(DER certificate))}``
(RFC 8705 §3.1). It is valid only when presented over a mutual-TLS connection whose client
certificate has that thumbprint. Where to take the presenter's certificate from:

* a plain TLS server (``ssl``): :func:`presenter_from_ssl_socket` —
  ``sock.getpeercert(binary_form=True)`` is the DER of the verified client certificate;
* a gRPC server: :func:`presenter_from_grpc_context` — ``context.auth_context()
  ["x509_pem_cert"]``;
* behind an Envoy sidecar that terminates mutual TLS: :func:`presenter_from_xfcc` on the
  ``x-forwarded-client-cert`` header. Trust that header ONLY on a connection that comes
  from your own sidecar (loopback or a Unix socket the sidecar alone can reach), with the
  sidecar set to ``forward_client_cert_details: SANITIZE_SET`` (it then drops whatever a
  client sent and sets the header itself). Anyone who can reach the application directly
  could otherwise write any thumbprint they like into it.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import ssl
import urllib.parse
from collections.abc import Mapping
from typing import Any, Protocol

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from .errors import InvalidToken, Reason
from .jose import b64url_encode

__all__ = [
    "MAX_CERTIFICATE_DER_BYTES",
    "X5T_S256",
    "certificate_thumbprint",
    "check_confirmation",
    "check_thumbprint",
    "is_thumbprint",
    "presenter_from_grpc_context",
    "presenter_from_ssl_socket",
    "presenter_from_xfcc",
]

X5T_S256 = "x5t#S256"  # RFC 8705 §3.1: the confirmation method's member name
MAX_CERTIFICATE_DER_BYTES = 16 * 1024
MAX_XFCC_CHARS = 64 * 1024  # an URL-encoded PEM of a 16 KiB certificate fits
# SHA-256 is 32 bytes: 43 base64url characters without padding, the last one carrying
# 2 bits of padding that must be zero (a canonical encoding has one spelling per value).
_THUMBPRINT = re.compile(r"[A-Za-z0-9_-]{42}[AEIMQUYcgkosw048]")
_HEX_SHA256 = re.compile(r"[0-9A-Fa-f]{64}")

Certificate = bytes | bytearray | memoryview | x509.Certificate


def is_thumbprint(value: object) -> bool:
    """Whether ``value`` is a canonical ``x5t#S256`` (43 base64url characters)."""
    return type(value) is str and _THUMBPRINT.fullmatch(value) is not None


def check_thumbprint(value: object, name: str = "presenter_x5t_s256") -> str:
    """``value`` if it is an ``x5t#S256`` thumbprint; ValueError/TypeError otherwise."""
    if not isinstance(value, str):
        raise TypeError(f"{name} must be a str")
    if not is_thumbprint(value):
        raise ValueError(f"{name} must be a SHA-256 thumbprint: 43 base64url characters "
                         "without padding (RFC 8705 §3.1)")
    return value


def certificate_thumbprint(certificate: Certificate) -> str:
    """``x5t#S256`` of a certificate: base64url(SHA-256(DER)) (RFC 8705 §3.1).

    ``certificate`` is a cryptography ``x509.Certificate`` or its DER bytes (at most
    16 KiB, and they must parse as a certificate: ValueError otherwise).
    """
    if isinstance(certificate, x509.Certificate):
        der = certificate.public_bytes(Encoding.DER)
    elif isinstance(certificate, bytes | bytearray | memoryview):
        der = bytes(certificate)
        if not der or len(der) > MAX_CERTIFICATE_DER_BYTES:
            raise ValueError(f"a certificate must be 1-{MAX_CERTIFICATE_DER_BYTES} bytes of DER")
        try:
            x509.load_der_x509_certificate(der)
        except ValueError:
            raise ValueError("the certificate is not a DER-encoded X.509 certificate "
                             "(PEM? convert it, e.g. with ssl.PEM_cert_to_DER_cert)") from None
    else:
        raise TypeError("a certificate is DER bytes or a cryptography x509.Certificate")
    return b64url_encode(hashlib.sha256(der).digest())


def check_confirmation(claims: Mapping[str, Any], presenter: str | None) -> None:
    """The `cnf` rule: raise InvalidToken unless an unbound token, or a token bound to
    the presenter's certificate (``presenter``: its ``x5t#S256``, or None when no
    certificate was presented)."""
    if "cnf" not in claims:
        return  # not bound: who presents it does not matter
    cnf = claims["cnf"]
    # RFC 7800 §3.1: cnf is a JSON object of confirmation members.
    if type(cnf) is not dict:
        raise InvalidToken(Reason.MALFORMED, "claim cnf is not a JSON object")
    thumbprint = cnf.get(X5T_S256)
    if X5T_S256 in cnf and not is_thumbprint(thumbprint):
        raise InvalidToken(Reason.MALFORMED, "claim cnf.x5t#S256 is not a SHA-256 thumbprint")
    # RFC 7800 §3: a confirmation method the recipient cannot check (jkt, jwk, an empty
    # cnf...) cannot be proven here, so the token is refused, never treated as unbound.
    if thumbprint is None or len(cnf) != 1:
        raise InvalidToken(Reason.CERTIFICATE_MISMATCH,
                           "claim cnf holds a confirmation method this verifier cannot check")
    if presenter is None:
        raise InvalidToken(Reason.CERTIFICATE_MISMATCH,
                           "token is bound to a certificate and none was presented")
    # RFC 8705 §3: the presented certificate's thumbprint must equal cnf's; compared in
    # constant time so a timing probe learns nothing about the expected value.
    if not hmac.compare_digest(thumbprint.encode(), presenter.encode()):
        raise InvalidToken(Reason.CERTIFICATE_MISMATCH,
                           "token is bound to another certificate than the presenter's")


def presenter_thumbprint(certificate: Certificate | None, x5t_s256: str | None) -> str | None:
    """The one presenter a verify call names (both: ValueError)."""
    if certificate is not None and x5t_s256 is not None:
        raise ValueError("give presenter_certificate or presenter_x5t_s256, not both")
    if certificate is not None:
        return certificate_thumbprint(certificate)
    return None if x5t_s256 is None else check_thumbprint(x5t_s256)


def presenter_from_ssl_socket(sock: ssl.SSLSocket | ssl.SSLObject) -> str | None:
    """The thumbprint of the client certificate on a server-side TLS connection that
    requested one (``verify_mode = CERT_REQUIRED``), or None if the client sent none."""
    der = sock.getpeercert(binary_form=True)
    return certificate_thumbprint(der) if der else None


class _AuthContext(Protocol):
    def auth_context(self) -> Mapping[str, Any]: ...


def presenter_from_grpc_context(context: _AuthContext) -> str | None:
    """The thumbprint of the caller's client certificate in a gRPC servicer (sync or
    asyncio ``ServicerContext``), or None on a connection without one."""
    pem = context.auth_context().get("x509_pem_cert")
    if not pem:
        return None
    return certificate_thumbprint(x509.load_pem_x509_certificate(pem[0]))


def presenter_from_xfcc(header: str) -> str | None:
    """The thumbprint of the client certificate an Envoy sidecar reports in
    ``x-forwarded-client-cert``; None if the header names none. ValueError if malformed.

    Only the last element is read: each proxy appends its own, so the last is the one
    your sidecar wrote (with SANITIZE_SET it is the only one). ``Hash=`` (hex SHA-256
    of the DER) is converted to base64url; ``Cert=`` (URL-encoded PEM) is hashed; when
    both are present they must agree. Trust the header only from your own sidecar
    (see the module documentation).
    """
    if not isinstance(header, str):
        raise TypeError("the x-forwarded-client-cert header is a str")
    if len(header) > MAX_XFCC_CHARS:
        raise ValueError(f"x-forwarded-client-cert is longer than {MAX_XFCC_CHARS} characters")
    elements = _split_xfcc(header)
    if not elements:
        return None
    pairs = elements[-1]
    from_hash = _hash_thumbprint(pairs.get("hash"))
    from_cert = _cert_thumbprint(pairs.get("cert"))
    if from_hash is not None and from_cert is not None and from_hash != from_cert:
        raise ValueError("x-forwarded-client-cert: Hash and Cert name different certificates")
    return from_cert if from_cert is not None else from_hash


def _hash_thumbprint(value: str | None) -> str | None:
    if value is None:
        return None
    if not _HEX_SHA256.fullmatch(value):
        raise ValueError("x-forwarded-client-cert: Hash is not a hex SHA-256 digest")
    return b64url_encode(bytes.fromhex(value))


def _cert_thumbprint(value: str | None) -> str | None:
    if value is None:
        return None
    try:
        cert = x509.load_pem_x509_certificate(urllib.parse.unquote(value).encode("ascii"))
    except (ValueError, UnicodeEncodeError):
        raise ValueError("x-forwarded-client-cert: Cert is not a URL-encoded PEM "
                         "certificate") from None
    return certificate_thumbprint(cert)


def _split_xfcc(header: str) -> list[dict[str, str]]:
    """Elements (split on `,`) of `key=value` pairs (split on `;`); values may be
    double-quoted, with `\\"` inside (Envoy's header format). Keys are caseless."""
    elements: list[dict[str, str]] = []
    pairs: dict[str, str] = {}
    key: list[str] = []
    value: list[str] = []
    in_value = quoted = False
    i = 0

    def close_pair() -> None:
        name = "".join(key).strip().lower()
        if name or value:
            if not name or not in_value:
                raise ValueError("x-forwarded-client-cert: an element is not key=value pairs")
            # DNS (one per SAN) may repeat; the certificate itself must be named once.
            if name in pairs and name in ("hash", "cert"):
                raise ValueError(f"x-forwarded-client-cert: {name} appears twice in an element")
            pairs.setdefault(name, "".join(value).strip())

    while i < len(header):
        char = header[i]
        if quoted:
            if char == "\\" and i + 1 < len(header):
                value.append(header[i + 1])
                i += 1
            elif char == '"':
                quoted = False
            else:
                value.append(char)
        elif char == '"' and in_value:
            quoted = True
        elif char == "=" and not in_value:
            in_value = True
        elif char in ";,":
            close_pair()
            key, value, in_value = [], [], False
            if char == ",":
                if pairs:
                    elements.append(pairs)
                pairs = {}
        else:
            (value if in_value else key).append(char)
        i += 1
    if quoted:
        raise ValueError("x-forwarded-client-cert: unterminated quoted value")
    close_pair()
    if pairs:
        elements.append(pairs)
    return elements
