"""Loopback checks shared by the gRPC channel helpers and the JWKS URL source."""

from __future__ import annotations

import ipaddress

__all__ = ["is_loopback_host", "loopback_target_host"]

# grpc target prefixes whose remainder is host[:port] (https://grpc.github.io/grpc/core/md_doc_naming.html).
_TARGET_SCHEMES = ("dns:///", "dns:", "ipv4:", "ipv6:")


def is_loopback_host(host: str | None) -> bool:
    """True for ``localhost`` and loopback IP literals (127.0.0.0/8, ::1)."""
    if not host:
        return False
    host = host.strip("[]")
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # some other name: DNS could point it anywhere


def loopback_target_host(target: str) -> str | None:
    """The host of a gRPC ``target`` if it is a loopback address, else None.

    Understands ``host:port``, ``[v6]:port`` and the ``dns:``, ``ipv4:``, ``ipv6:``
    prefixes. Lists of addresses and other resolvers are not loopback for us.
    """
    rest = target
    for scheme in _TARGET_SCHEMES:
        if rest.startswith(scheme):
            rest = rest[len(scheme):]
            break
    if "," in rest or "/" in rest:
        return None
    host = _split_host(rest)
    return host if is_loopback_host(host) else None


def _split_host(hostport: str) -> str:
    if hostport.startswith("["):
        end = hostport.find("]")
        return hostport[1:end] if end > 0 else ""
    if hostport.count(":") > 1:
        return hostport  # a bare IPv6 literal without a port
    return hostport.partition(":")[0]
