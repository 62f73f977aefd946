"""A throwaway PKI for tests: a CA, server and client certificates made with `cryptography`."""

from __future__ import annotations

import datetime as dt
import ipaddress
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID


@dataclass(frozen=True)
class Issued:
    cert_file: Path
    key_file: Path


class TestCA:
    """`ca = TestCA(dir)`; `ca.server()`, `ca.client(spiffe=..., dns=..., cn=...)`."""

    __test__ = False  # not a pytest class

    def __init__(self, directory: Path, name: str = "tokend test CA") -> None:
        self.directory = directory
        directory.mkdir(parents=True, exist_ok=True)
        self._key = ec.generate_private_key(ec.SECP256R1())
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
        now = dt.datetime.now(dt.UTC)
        self.cert = (
            x509.CertificateBuilder().subject_name(subject).issuer_name(subject)
            .public_key(self._key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False,
                                         False), critical=True)
            .sign(self._key, hashes.SHA256())
        )
        self.cert_file = directory / f"{_slug(name)}.crt"
        self.cert_file.write_bytes(self.cert.public_bytes(serialization.Encoding.PEM))

    def server(self, name: str = "server", *, dns: tuple[str, ...] = ("localhost",),
               ips: tuple[str, ...] = ("127.0.0.1", "::1")) -> Issued:
        sans: list[x509.GeneralName] = [x509.DNSName(d) for d in dns]
        sans += [x509.IPAddress(ipaddress.ip_address(i)) for i in ips]
        return self._issue(name, sans, ExtendedKeyUsageOID.SERVER_AUTH)

    def client(self, name: str = "client", *, spiffe: str | None = None,
               dns: tuple[str, ...] = (), cn: str | None = None,
               uris: tuple[str, ...] = (), expired: bool = False) -> Issued:
        """`uris`: URI SANs after the `spiffe` one (an X.509-SVID has exactly one)."""
        sans: list[x509.GeneralName] = []
        if spiffe:
            sans.append(x509.UniformResourceIdentifier(spiffe))
        sans += [x509.UniformResourceIdentifier(u) for u in uris]
        sans += [x509.DNSName(d) for d in dns]
        return self._issue(name, sans, ExtendedKeyUsageOID.CLIENT_AUTH, cn=cn or name,
                           expired=expired)

    def _issue(self, name: str, sans: list[x509.GeneralName], usage: x509.ObjectIdentifier,
               *, cn: str | None = None, expired: bool = False) -> Issued:
        key = ec.generate_private_key(ec.SECP256R1())
        now = dt.datetime.now(dt.UTC)
        start, end = ((now - dt.timedelta(days=2), now - dt.timedelta(days=1)) if expired
                      else (now - dt.timedelta(minutes=5), now + dt.timedelta(hours=12)))
        builder = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn or name)]))
            .issuer_name(self.cert.subject).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(start).not_valid_after(end)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
        )
        if sans:
            builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
        cert = builder.sign(self._key, hashes.SHA256())
        cert_file = self.directory / f"{_slug(name)}.crt"
        key_file = self.directory / f"{_slug(name)}.key"
        cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        key_file.write_bytes(key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption()))
        key_file.chmod(0o600)
        return Issued(cert_file, key_file)

    def renew(self, issued: Issued, name: str) -> Issued:
        """What cert-manager does on renewal (rotationPolicy: Never): a new certificate,
        new serial and validity, for the same key and names."""
        old = x509.load_pem_x509_certificate(issued.cert_file.read_bytes())
        key = serialization.load_pem_private_key(issued.key_file.read_bytes(), None)
        now = dt.datetime.now(dt.UTC)
        builder = (
            x509.CertificateBuilder().subject_name(old.subject).issuer_name(self.cert.subject)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=1))
            .not_valid_after(now + dt.timedelta(hours=12))
        )
        for extension in old.extensions:
            builder = builder.add_extension(extension.value, extension.critical)
        cert = builder.sign(self._key, hashes.SHA256())
        cert_file = self.directory / f"{_slug(name)}.crt"
        cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        return Issued(cert_file, issued.key_file)


def _slug(name: str) -> str:
    return "".join(c if c.isalnum() else "-" for c in name)
