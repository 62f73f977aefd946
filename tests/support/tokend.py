"""Runs a real tokend App (real gRPC and HTTP on loopback) in a background event loop."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Coroutine, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import grpc

from tests.support.bao import free_port
from tests.support.pki import Issued, TestCA
from tokend import event_loop
from tokend.app import App
from tokend.config import Settings, load_settings
from tokend_client.v1 import tokend_pb2_grpc

__all__ = ["ISSUER", "RunningTokend", "free_port", "make_settings"]

ISSUER = "https://tokend.test"


def make_settings(vault_addr: str, vault_token: str, data_dir: Path, **overrides: Any) -> Settings:
    tokens = {"issuer": ISSUER, **overrides.pop("tokens", {})}
    vault = {"addr": vault_addr, "token": vault_token, "create_key": True,
             "namespace": None, "cacert": None, **overrides.pop("vault", {})}
    values: dict[str, Any] = {
        "insecure_plaintext": True,
        "grpc_listen": "127.0.0.1:0",
        "http_listen": "127.0.0.1:0",
        "store_url": f"sqlite:///{data_dir / 'tokend.db'}",
        "vault": vault,
        "tokens": tokens,
        # No mesh consumer in these tests: rotation waits for jwks_max_age alone, as the
        # tests that shorten vault.propagation_delay expect (tests/web sets it itself).
        "jwks_consumer_refresh": 0,
        **overrides,
    }
    return load_settings(None, **values)


class RunningTokend:
    """`with RunningTokend(settings) as t:` gives `t.stub`, `t.grpc_addr`, `t.http_url`."""

    def __init__(self, settings: Settings,
                 tls_client: tuple[Path, Issued] | None = None) -> None:
        """With `tls_client` (CA file, client certificate) the test channel uses mutual TLS."""
        self.settings = settings
        self._tls_client = tls_client
        self.app = App(settings)
        # The loop `tokend serve` would run (uvloop unless settings.event_loop says asyncio).
        self._loop = event_loop.loop_factory(settings.event_loop)()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self.channel: grpc.Channel | None = None

    def run(self, coro: Coroutine[Any, Any, Any], timeout: float = 30) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout)

    def __enter__(self) -> RunningTokend:
        self._thread.start()
        try:
            self.run(self.app.start())
        except BaseException:
            self._shutdown_loop()
            raise
        self.grpc_addr = f"127.0.0.1:{self.app.grpc_port}"
        self.http_url = f"http://127.0.0.1:{self.app.http_port}"
        self.channel = self._open_channel()
        self.stub = tokend_pb2_grpc.TokenServiceStub(self.channel)
        return self

    def _open_channel(self) -> grpc.Channel:
        if self._tls_client is None:
            return grpc.insecure_channel(self.grpc_addr)
        ca_file, client = self._tls_client
        credentials = grpc.ssl_channel_credentials(
            root_certificates=ca_file.read_bytes(),
            private_key=client.key_file.read_bytes(),
            certificate_chain=client.cert_file.read_bytes(),
        )
        return grpc.secure_channel(self.grpc_addr, credentials)

    def __exit__(self, *exc: object) -> None:
        if self.channel is not None:
            self.channel.close()
        try:
            self.run(self.app.stop(grace=1))
        finally:
            self._shutdown_loop()

    def _shutdown_loop(self) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()


def mtls_settings(vault_addr: str, vault_token: str, directory: Path, *, policy: str,
                  server_cert: Path, server_key: Path, client_ca: Path,
                  **overrides: Any) -> Settings:
    """Settings for a tokend with mutual TLS and `policy` (written to directory/policy.yaml)."""
    policy_file = directory / "policy.yaml"
    policy_file.write_text(policy)
    return make_settings(
        vault_addr, vault_token, directory, insecure_plaintext=False, policy_file=policy_file,
        tls={"cert_file": server_cert, "key_file": server_key, "client_ca_file": client_ca},
        **overrides)


@contextmanager
def mtls_tokend(vault_addr: str, vault_token: str, directory: Path, *, identity: str,
                policy: str, **overrides: Any) -> Iterator[tuple[RunningTokend, dict[str, str]]]:
    """A tokend with mutual TLS and a policy file, plus a client certificate for
    `identity`; yields the server and TOKEND_* variables naming it (docs: tests/conftest.py)."""
    ca = TestCA(directory / "pki")
    server = ca.server()
    client = ca.client("client", spiffe=identity)
    settings = mtls_settings(vault_addr, vault_token, directory, policy=policy,
                             server_cert=server.cert_file, server_key=server.key_file,
                             client_ca=ca.cert_file, **overrides)
    with RunningTokend(settings, tls_client=(ca.cert_file, client)) as running:
        yield running, {
            "TOKEND_ADDR": running.grpc_addr,
            "TOKEND_CA_FILE": str(ca.cert_file),
            "TOKEND_CLIENT_CERT": str(client.cert_file),
            "TOKEND_CLIENT_KEY": str(client.key_file),
            "TOKEND_JWKS_URL": running.http_url + "/.well-known/jwks.json",
            "TOKEND_ISSUER": ISSUER,
        }
