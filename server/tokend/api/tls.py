"""Server TLS whose certificate files are re-read when they change (cert-manager rotates
them in place): new connections get the new certificate, no restart needed."""

from __future__ import annotations

import os
from pathlib import Path

import grpc
import structlog

from tokend.config import TlsConfig

log = structlog.get_logger("tokend.tls")


class ReloadingCredentials:
    def __init__(self, tls: TlsConfig) -> None:
        assert tls.cert_file is not None and tls.key_file is not None  # checked by Settings
        self._files = [p for p in (tls.cert_file, tls.key_file, tls.client_ca_file) if p]
        self._tls = tls
        self._stamp = self._current_stamp()
        self.reloads = 0

    def credentials(self) -> grpc.ServerCredentials:
        return grpc.dynamic_ssl_server_credentials(
            self._configuration(), self._fetch,
            require_client_authentication=self._tls.client_ca_file is not None)

    def _configuration(self) -> grpc.ServerCertificateConfiguration:
        tls = self._tls
        assert tls.cert_file is not None and tls.key_file is not None
        return grpc.ssl_server_certificate_configuration(
            [(tls.key_file.read_bytes(), tls.cert_file.read_bytes())],
            root_certificates=tls.client_ca_file.read_bytes() if tls.client_ca_file else None)

    def _fetch(self) -> grpc.ServerCertificateConfiguration | None:
        """Called by gRPC at every new handshake; a stat per file keeps that cheap."""
        stamp = self._current_stamp()
        if stamp == self._stamp:
            return None
        try:
            configuration = self._configuration()
        except OSError as exc:  # mid-rotation: keep serving the old files
            log.warning("tls.reload_failed", error=str(exc))
            return None
        self._stamp = stamp
        self.reloads += 1
        log.info("tls.reloaded", files=[str(p) for p in self._files])
        return configuration

    def _current_stamp(self) -> tuple[tuple[int, int, int], ...]:
        return tuple(_stamp(p) for p in self._files)


def _stamp(path: Path) -> tuple[int, int, int]:
    # Kubernetes swaps a symlinked directory: stat follows it, so inode and mtime change.
    info = os.stat(path)
    return info.st_ino, info.st_mtime_ns, info.st_size
