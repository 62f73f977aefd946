"""Channel construction: plaintext only to loopback, TLS otherwise."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.clients.python.scripted_server import ScriptedServer
from tests.support.pki import TestCA
from tokend_client import AsyncTokenClient, TokenClient, UnavailableError
from tokend_client._net import is_loopback_host, loopback_target_host


@pytest.mark.parametrize(("target", "host"), [
    ("127.0.0.1:50051", "127.0.0.1"),
    ("127.8.9.10:1", "127.8.9.10"),
    ("localhost:50051", "localhost"),
    ("LOCALHOST:1", "LOCALHOST"),
    ("[::1]:50051", "::1"),
    ("::1", "::1"),
    ("dns:///localhost:50051", "localhost"),
    ("ipv4:127.0.0.1:50051", "127.0.0.1"),
    ("ipv6:[::1]:50051", "::1"),
])
def test_loopback_targets(target: str, host: str) -> None:
    assert loopback_target_host(target) == host


@pytest.mark.parametrize("target", [
    "10.0.0.1:50051", "0.0.0.0:50051", "[::]:50051", "tokend.example:443",
    "localhost.example:1", "127.0.0.1.nip.io:1", "dns://8.8.8.8/localhost:1",
    "ipv4:127.0.0.1:1,10.0.0.1:1", "unix:/tmp/tokend.sock", "", "[::1",
    "[::ffff:10.0.0.1]:1",
])
@pytest.mark.parametrize("kind", [TokenClient, AsyncTokenClient])
def test_plaintext_is_refused_beyond_loopback(
        target: str, kind: type[TokenClient] | type[AsyncTokenClient]) -> None:
    assert loopback_target_host(target) is None
    with pytest.raises(ValueError, match="loopback"):
        kind.insecure_loopback(target)


def test_loopback_hosts() -> None:
    assert is_loopback_host("127.0.0.1") and is_loopback_host("[::1]")
    assert not is_loopback_host(None) and not is_loopback_host("example.com")


def test_tls_client_refuses_an_untrusted_server(scripted: ScriptedServer, tmp_path: Path) -> None:
    # The scripted server speaks plaintext; the default TLS client must not fall back.
    with TokenClient(scripted.target, timeout=1, retries=0) as client, \
            pytest.raises(UnavailableError):
        client.get_jwks()
    ca = TestCA(tmp_path)
    identity = ca.client("svc")
    with TokenClient.mtls(scripted.target, ca.cert_file, identity.cert_file,
                          identity.key_file, timeout=1, retries=0) as client, \
            pytest.raises(UnavailableError):
        client.get_jwks()
    assert scripted.service.calls["GetJwks"] == 0
