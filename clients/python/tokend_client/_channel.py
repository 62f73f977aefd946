"""Channel credentials for the sync and async clients."""

from __future__ import annotations

from collections.abc import Sequence
from os import PathLike
from pathlib import Path
from typing import Any

import grpc

from ._net import loopback_target_host

__all__ = ["channel_options", "default_credentials", "loopback_credentials", "mtls_credentials"]

StrPath = str | PathLike[str]

# Responses are small (the largest, a JWK Set with a few RSA keys, is some KiB); 1 MiB,
# the limit jose applies to JWK Sets, bounds what a broken peer can make us buffer.
CHANNEL_OPTIONS: tuple[tuple[str, int], ...] = (
    ("grpc.max_receive_message_length", 1024 * 1024),
    # The service config's retries (gRPC's default, said so it cannot be lost).
    ("grpc.enable_retries", 1),
    # Keepalive as in every tokend client: a ping after 60 s of silence during a call
    # (a Watch stream), never without one, within tokend's grpc.min_client_ping_interval.
    ("grpc.keepalive_time_ms", 60_000),
    ("grpc.keepalive_permit_without_calls", 0),
)


def channel_options(extra: Sequence[tuple[str, Any]]) -> list[tuple[str, Any]]:
    """Our defaults, overridden by the caller's options of the same name."""
    names = {name for name, _ in extra}
    return [option for option in CHANNEL_OPTIONS if option[0] not in names] + list(extra)


def default_credentials() -> grpc.ChannelCredentials:
    """TLS with the system's trusted roots and no client certificate."""
    return grpc.ssl_channel_credentials()


def mtls_credentials(ca_file: StrPath, cert_file: StrPath,
                     key_file: StrPath) -> grpc.ChannelCredentials:
    """Mutual TLS: trust ``ca_file`` for the server, present ``cert_file``/``key_file``."""
    return grpc.ssl_channel_credentials(
        root_certificates=Path(ca_file).read_bytes(),
        private_key=Path(key_file).read_bytes(),
        certificate_chain=Path(cert_file).read_bytes(),
    )


def loopback_credentials(target: str) -> grpc.ChannelCredentials:
    """Plaintext for a loopback ``target``; ValueError for any other target.

    gRPC's local credentials also check, on every connection, that the peer is
    on this machine, so a name that resolves elsewhere fails to connect.
    """
    if loopback_target_host(target) is None:
        raise ValueError(
            f"refusing a plaintext channel to {target!r}: only loopback targets "
            "(127.0.0.1, ::1, localhost) may skip TLS; use TokenClient.mtls"
        )
    return grpc.local_channel_credentials(grpc.LocalConnectionType.LOCAL_TCP)

