"""Who is calling: the identity taken from the caller's verified client certificate."""

from __future__ import annotations

import functools

import grpc
from cryptography import x509
from cryptography.x509.oid import NameOID


def caller_identity(context: grpc.aio.ServicerContext, default: str) -> str:
    """SPIFFE URI SAN, else the first DNS SAN, else the CN, else `default`.

    gRPC has verified the certificate against the client CA before any handler runs.
    Plaintext (loopback, development) connections carry no certificate: `default`.
    """
    pem = context.auth_context().get("x509_pem_cert")
    if not pem:
        return default
    return identity_from_pem(pem[0]) or default


@functools.lru_cache(maxsize=1024)
def identity_from_pem(pem: bytes) -> str | None:
    """Cached: a caller presents the same certificate on every call of a connection."""
    cert = x509.load_pem_x509_certificate(pem)
    try:
        sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        sans = None
    if sans is not None:
        for uri in sans.get_values_for_type(x509.UniformResourceIdentifier):
            if uri.startswith("spiffe://"):
                return uri
        dns = sans.get_values_for_type(x509.DNSName)
        if dns:
            return dns[0]
    names = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    value = names[0].value if names else None
    return value if isinstance(value, str) else None
