"""Certificate binding for the tokens Issue (and Exchange) mint: the `cnf` claim of
RFC 8705 §3.1, from the request's CertificateBinding and the call's mTLS connection."""

from __future__ import annotations

import functools

from cryptography import x509

from tokend.api.caller_policy import PolicyDenied
from tokend.api.calls import CallContext
from tokend.tokens.errors import BadRequest
from tokend_client.binding import (
    MAX_CERTIFICATE_DER_BYTES,
    X5T_S256,
    certificate_thumbprint,
    is_thumbprint,
)
from tokend_client.v1 import tokend_pb2 as pb


class NoClientCertificate(Exception):
    """A binding to the caller's certificate on a connection without one
    (FAILED_PRECONDITION: the request is fine, the connection is not)."""


def confirmation_for(binding: pb.CertificateBinding | None, call: CallContext
                     ) -> dict[str, str] | None:
    """The `cnf` claim a token asked for with ``binding`` gets, or None (unbound).

    Pass ``request.binding if request.HasField("binding") else None``.
    """
    if binding is None:
        return None
    which = binding.WhichOneof("certificate")
    if which == "caller_certificate" and binding.caller_certificate:
        return {X5T_S256: caller_thumbprint(call)}
    if which == "certificate_der":
        _may_bind_others(call)
        return {X5T_S256: named_thumbprint(binding.certificate_der, "binding.certificate_der")}
    raise BadRequest("binding names no certificate: set caller_certificate = true, or "
                     "certificate_der", field="binding")


def caller_thumbprint(call: CallContext) -> str:
    pem = call.client_certificate_pem
    if pem is None:
        raise NoClientCertificate(
            "binding.caller_certificate needs a mutual-TLS connection with a client "
            "certificate; this connection has none (RFC 8705 §3)")
    return _pem_thumbprint(pem)


@functools.lru_cache(maxsize=256)
def _pem_thumbprint(pem: bytes) -> str:
    # A caller presents the same certificate on every call of a connection.
    return certificate_thumbprint(x509.load_pem_x509_certificate(pem))


def named_thumbprint(der: bytes, field: str) -> str:
    """The thumbprint of a DER certificate given in a request field; BadRequest if it is
    empty, larger than 16 KiB or not an X.509 certificate."""
    if not der or len(der) > MAX_CERTIFICATE_DER_BYTES:
        raise BadRequest(f"{field} must be 1-{MAX_CERTIFICATE_DER_BYTES} bytes "
                         "(a DER-encoded X.509 certificate)", field=field)
    try:
        return certificate_thumbprint(der)
    except ValueError:
        raise BadRequest(f"{field} is not a DER-encoded X.509 certificate",
                         field=field) from None


def checked_thumbprint(value: str, field: str) -> str:
    if not is_thumbprint(value):
        raise BadRequest(f"{field} must be a SHA-256 certificate thumbprint: 43 base64url "
                         "characters without padding, as in x5t#S256 (RFC 8705 §3.1)",
                         field=field)
    return value


def _may_bind_others(call: CallContext) -> None:
    rule = call.rule
    if rule is None:  # the development allow-all policy
        return
    if rule.issue is None or not rule.issue.bind_other_certificates:
        raise PolicyDenied(
            f"caller {call.client_id!r} may not bind tokens to another certificate than "
            "its own (its policy entry needs issue.bind_other_certificates: true)")
