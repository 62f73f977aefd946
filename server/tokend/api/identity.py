"""Who is calling: the identity taken from the caller's verified client certificate.

An identity has a kind as well as a name, so that no string of one kind can pass for
another: a CN or a DNS SAN that reads `spiffe://…` is a CN or a DNS name, never a SPIFFE
ID. The kind is part of every comparison (policy entries) and of the label written into
tokens (`client_id`) and audit lines.
"""

from __future__ import annotations

import enum
import functools
import re
from dataclasses import dataclass, field

import grpc
from cryptography import x509
from cryptography.x509.oid import NameOID


class Kind(enum.StrEnum):
    SPIFFE = "spiffe"  # the certificate's one URI SAN, scheme spiffe
    DNS = "dns"        # its first DNS SAN
    CN = "cn"          # its subject common name
    LOCAL = "local"    # no certificate: plaintext loopback (development), default_client_id


# Prefixes a label of each kind starts with. A SPIFFE ID names its own kind (its scheme);
# the local identity is validated in config.py never to start with one of these.
LABEL_PREFIXES: dict[Kind, str] = {Kind.SPIFFE: "", Kind.DNS: "dns:", Kind.CN: "cn:",
                                   Kind.LOCAL: ""}
RESERVED_PREFIXES = ("spiffe:", "dns:", "cn:", "local:")

# SPIFFE-ID spec §2.1-2.2: lowercase scheme and trust domain [a-z0-9._-], path segments
# [A-Za-z0-9._-] (never "." or ".."); X509-SVID §3.1: a leaf has a non-root path.
_SPIFFE_ID = re.compile(r"spiffe://[a-z0-9._-]+(/[A-Za-z0-9._-]+)+", re.ASCII)
MAX_SPIFFE_ID_BYTES = 2048
MAX_NAME_CHARS = 512


@dataclass(frozen=True, slots=True)
class Identity:
    kind: Kind
    name: str
    # `spiffe://…`, `dns:<name>`, `cn:<name>`, or the local default: made once, since
    # identities are cached and their labels read several times per call.
    label: str = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "label", LABEL_PREFIXES[self.kind] + self.name)

    def __str__(self) -> str:
        return self.label


class UnusableCertificate(Exception):
    """The certificate verified, but names no identity tokend can trust (e.g. 2 URI SANs)."""


def caller_identity(context: grpc.aio.ServicerContext, default: str) -> Identity:
    """The kind-tagged identity of the caller; raises UnusableCertificate.

    gRPC has verified the certificate against the client CA before any handler runs.
    Plaintext (loopback, development) connections carry no certificate: `default`.
    """
    pem = context.auth_context().get("x509_pem_cert")
    if not pem:
        return _local(default)
    found = identity_from_pem(pem[0])
    if isinstance(found, str):
        raise UnusableCertificate(found)
    return found


@functools.lru_cache(maxsize=4)
def _local(default: str) -> Identity:
    return Identity(Kind.LOCAL, default)


@functools.lru_cache(maxsize=1024)
def identity_from_pem(pem: bytes) -> Identity | str:
    """The identity, or why there is none (a str). Cached: a caller presents the same
    certificate on every call of a connection."""
    cert = x509.load_pem_x509_certificate(pem)
    try:
        sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        sans = None
    if sans is not None:
        uris = sans.get_values_for_type(x509.UniformResourceIdentifier)
        if len(uris) > 1:  # SPIFFE X509-SVID §2, §5.2: MUST reject
            return (f"the client certificate has {len(uris)} URI SANs; an X.509-SVID has "
                    "exactly one (SPIFFE X509-SVID §2)")
        if uris and uris[0][:7].lower() == "spiffe:":
            return _spiffe(uris[0])
        dns = sans.get_values_for_type(x509.DNSName)
        if dns:
            return _named(Kind.DNS, dns[0].lower())  # RFC 4343: DNS names are caseless
    names = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    value = names[0].value if names else None
    if isinstance(value, str):
        return _named(Kind.CN, value)
    return "the client certificate names no identity (no SPIFFE URI SAN, DNS SAN or CN)"


def _spiffe(uri: str) -> Identity | str:
    if len(uri.encode()) > MAX_SPIFFE_ID_BYTES or not _SPIFFE_ID.fullmatch(uri) or \
            any(part in (".", "..") for part in uri[9:].split("/")):
        return "the client certificate's spiffe URI SAN is not a valid SPIFFE ID"
    return Identity(Kind.SPIFFE, uri)


def _named(kind: Kind, name: str) -> Identity | str:
    if not name or len(name) > MAX_NAME_CHARS or not name.isprintable():
        return f"the client certificate's {kind.value} name is empty, too long or unprintable"
    return Identity(kind, name)
