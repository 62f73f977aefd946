"""Shared fixtures: one real OpenBao dev server per test session, and one live tokend with
mutual TLS on loopback for the interop, client-library and deployment smoke tests.

`interop_env` names the live server in environment variables, for other languages'
test runners: TOKEND_ADDR (host:port, TLS), TOKEND_CA_FILE, TOKEND_CLIENT_CERT,
TOKEND_CLIENT_KEY, TOKEND_JWKS_URL (plain HTTP on loopback), TOKEND_ISSUER, TOKEND_AUDIENCE.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.bao import BaoDevServer
from tests.support.pki import TestCA
from tests.support.tokend import ISSUER, RunningTokend, make_settings


@pytest.fixture(scope="session")
def bao() -> Iterator[BaoDevServer]:
    with BaoDevServer() as server:
        yield server


AUDIENCE = "interop-api"
POLICY = """
callers:
  - identity: "spiffe://tokend.test/*"
    rpcs: [Issue, Refresh, Revoke]
    issue:
      audiences: ["interop-*"]
      scopes: ["*"]
      claims: ["*"]
"""


@pytest.fixture(scope="session")
def interop_tokend(bao: BaoDevServer, tmp_path_factory: pytest.TempPathFactory
                   ) -> Iterator[tuple[RunningTokend, dict[str, str]]]:
    directory: Path = tmp_path_factory.mktemp("interop")
    ca = TestCA(directory / "pki")
    server = ca.server()
    client = ca.client("interop-client", spiffe="spiffe://tokend.test/interop")
    policy = directory / "policy.yaml"
    policy.write_text(POLICY)
    settings = make_settings(
        bao.addr, bao.token, directory, vault={"key_name": "interop"},
        insecure_plaintext=False, policy_file=policy,
        tls={"cert_file": server.cert_file, "key_file": server.key_file,
             "client_ca_file": ca.cert_file},
    )
    with RunningTokend(settings, tls_client=(ca.cert_file, client)) as running:
        env = {
            "TOKEND_ADDR": running.grpc_addr,
            "TOKEND_CA_FILE": str(ca.cert_file),
            "TOKEND_CLIENT_CERT": str(client.cert_file),
            "TOKEND_CLIENT_KEY": str(client.key_file),
            "TOKEND_JWKS_URL": running.http_url + "/.well-known/jwks.json",
            "TOKEND_ISSUER": ISSUER,
            "TOKEND_AUDIENCE": AUDIENCE,
        }
        yield running, env


@pytest.fixture
def interop_env(interop_tokend: tuple[RunningTokend, dict[str, str]]) -> dict[str, str]:
    """The process environment plus the TOKEND_* variables naming the live server."""
    return {**os.environ, **interop_tokend[1]}
