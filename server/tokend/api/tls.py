"""Server TLS whose certificate files are re-read when they change (cert-manager rotates
them in place): new connections get the new certificate, no restart needed.

New material is checked before it is used (it parses, the CA bundle is not empty, the key
matches the certificate, the certificate is within its validity): a bad file on disk keeps
the previous material serving, logs `tls.reload_rejected` and raises
`tokend_tls_reload_rejected` until good files replace it.
"""

from __future__ import annotations

import datetime as dt
import os
from dataclasses import dataclass
from pathlib import Path

import grpc
import structlog
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from tokend import metrics
from tokend.config import TlsConfig

log = structlog.get_logger("tokend.tls")

Stamp = tuple[tuple[int, int, int], ...]
_MISSING: Stamp = ()  # a file could not be stat'ed


class TlsMaterialError(ValueError):
    """Names the setting and file and what is wrong with it; never the file's content."""


@dataclass(frozen=True)
class Material:
    key: bytes
    chain: bytes
    client_ca: bytes | None
    not_after: float = 0.0  # the serving certificate's expiry (Unix time), for its alert


class ReloadingCredentials:
    def __init__(self, tls: TlsConfig) -> None:
        assert tls.cert_file is not None and tls.key_file is not None  # checked by Settings
        self._files = [p for p in (tls.cert_file, tls.key_file, tls.client_ca_file) if p]
        self._tls = tls
        self._stamp = self._current_stamp()
        self._material = load_material(tls)  # at start a bad file is a configuration error
        self._rejected: Stamp | None = None
        metrics.TLS_RELOAD_REJECTED.set(0)
        metrics.TLS_CERT_EXPIRY.set(self._material.not_after)

    def credentials(self) -> grpc.ServerCredentials:
        return grpc.dynamic_ssl_server_credentials(
            _configuration(self._material), self._fetch,
            require_client_authentication=self._tls.client_ca_file is not None)

    def _fetch(self) -> grpc.ServerCertificateConfiguration | None:
        """Called by gRPC at every new handshake; a stat per file keeps that cheap.
        None keeps the material in use."""
        try:
            stamp = self._current_stamp()
        except OSError as exc:  # a file missing mid-rotation: keep serving the old files
            if self._rejected != _MISSING:
                self._reject(_MISSING, f"cannot stat a TLS file: {exc.strerror}")
            return None
        if stamp in (self._stamp, self._rejected):
            return None
        try:
            material = load_material(self._tls)
        except (TlsMaterialError, OSError) as exc:
            self._reject(stamp, str(exc) if isinstance(exc, TlsMaterialError) else
                         f"cannot read a TLS file: {exc.strerror}")
            return None
        self._stamp, self._rejected, self._material = stamp, None, material
        metrics.TLS_RELOAD_REJECTED.set(0)
        metrics.TLS_CERT_EXPIRY.set(material.not_after)
        log.info("tls.reloaded", files=[str(p) for p in self._files])
        return _configuration(material)

    def _reject(self, stamp: Stamp, reason: str) -> None:
        """Once per new state of the files, not once per handshake."""
        self._rejected = stamp
        metrics.TLS_RELOAD_REJECTED.set(1)
        metrics.TLS_RELOAD_FAILURES.inc()
        log.error("tls.reload_rejected", error=reason, files=[str(p) for p in self._files],
                  action="still serving the previous certificate and client CA")

    def _current_stamp(self) -> Stamp:
        return tuple(_stamp(p) for p in self._files)


def load_material(tls: TlsConfig, now: dt.datetime | None = None) -> Material:
    """Reads and checks the files; raises TlsMaterialError naming what is wrong."""
    assert tls.cert_file is not None and tls.key_file is not None
    now = now or dt.datetime.now(dt.UTC)
    chain = tls.cert_file.read_bytes()
    key = tls.key_file.read_bytes()
    certificates = _certificates("tls.cert_file", tls.cert_file, chain)
    leaf = certificates[0]
    _check_validity("tls.cert_file", tls.cert_file, leaf, now)
    try:
        private = serialization.load_pem_private_key(key, password=None)
    except (ValueError, TypeError):
        raise TlsMaterialError(f"tls.key_file {tls.key_file}: not an unencrypted PEM private "
                               "key") from None
    if _spki(private.public_key()) != _spki(leaf.public_key()):
        raise TlsMaterialError(f"tls.key_file {tls.key_file} does not match the certificate "
                               f"in tls.cert_file {tls.cert_file}")
    client_ca = None
    if tls.client_ca_file is not None:
        client_ca = tls.client_ca_file.read_bytes()
        cas = _certificates("tls.client_ca_file", tls.client_ca_file, client_ca)
        if not any(c.not_valid_before_utc <= now <= c.not_valid_after_utc for c in cas):
            raise TlsMaterialError(f"tls.client_ca_file {tls.client_ca_file}: every CA "
                                   "certificate in it is expired or not yet valid")
    return Material(key, chain, client_ca, leaf.not_valid_after_utc.timestamp())


def _certificates(setting: str, path: Path, pem: bytes) -> list[x509.Certificate]:
    try:
        certificates = x509.load_pem_x509_certificates(pem)
    except ValueError:
        raise TlsMaterialError(f"{setting} {path}: no PEM certificate in it, or one that "
                               "does not parse (empty or damaged file?)") from None
    if not certificates:
        raise TlsMaterialError(f"{setting} {path}: no certificate in it")
    return certificates


def _check_validity(setting: str, path: Path, cert: x509.Certificate, now: dt.datetime) -> None:
    if now > cert.not_valid_after_utc:
        raise TlsMaterialError(f"{setting} {path}: the certificate expired at "
                               f"{cert.not_valid_after_utc.isoformat()}")
    if now < cert.not_valid_before_utc:
        raise TlsMaterialError(f"{setting} {path}: the certificate is not valid before "
                               f"{cert.not_valid_before_utc.isoformat()}")


def _spki(key: object) -> bytes:
    return key.public_bytes(  # type: ignore[attr-defined]
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)


def _configuration(material: Material) -> grpc.ServerCertificateConfiguration:
    return grpc.ssl_server_certificate_configuration(
        [(material.key, material.chain)], root_certificates=material.client_ca)


def _stamp(path: Path) -> tuple[int, int, int]:
    # Kubernetes swaps a symlinked directory: stat follows it, so inode and mtime change.
    info = os.stat(path)
    return info.st_ino, info.st_mtime_ns, info.st_size
