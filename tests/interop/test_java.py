"""The Java client (clients/java) against a live tokend: `mvn test -Pinterop` runs the unit
tests (the conformance and Wycheproof vectors included) and the tests tagged "interop"
(TokendInteropTest, and TokendClientInteropTest: verify() batched into VerifyMany, read
back from /metrics) with the TOKEND_* variables; `mvn test -Plive` runs LiveSourceInteropTest
against a tokend of its own, whose key it rotates; `mvn test -Pchain` runs
ExchangeInteropTest (issue 18: Exchange and certificate-bound tokens) against a tokend with
four workload identities (login, orders, payments, thief)."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support import error_servers
from tests.support.bao import BaoDevServer
from tests.support.pki import TestCA
from tests.support.tokend import ISSUER, RunningTokend, mtls_settings, mtls_tokend

JAVA_CLIENT = Path(__file__).resolve().parents[2] / "clients" / "java"
LIVE_AUDIENCE = "interop-live"
LIVE_POLICY = """
callers:
  - identity: "spiffe://tokend.test/java-live"
    rpcs: [Issue, Revoke]
    issue:
      audiences: ["interop-*"]
"""


def _mvn(profile: str, env: dict[str, str]) -> None:
    mvn = shutil.which("mvn")
    if mvn is None:
        pytest.fail("Maven (mvn) is not on PATH; the Java client needs Maven 3.8+ and a JDK 17+")
    result = subprocess.run(
        [mvn, "-B", "-ntp", "test", f"-P{profile}"],
        cwd=JAVA_CLIENT, env=env, capture_output=True, text=True, timeout=600, check=False,
    )
    assert result.returncode == 0, (
        f"mvn test -P{profile} exited {result.returncode}\n"
        f"--- stdout ---\n{result.stdout}\n--- stderr ---\n{result.stderr}"
    )


def test_java_client(interop_env: dict[str, str]) -> None:
    _mvn("interop", interop_env)


@pytest.fixture
def live_env(bao: BaoDevServer, tmp_path: Path) -> Iterator[dict[str, str]]:
    """A tokend of its own for the LiveSource test, which rotates its key: new versions are
    re-read every 0.2 s and sign 0.5 s after publication (jwks_max_age 0 allows that)."""
    vault = {"key_name": "java-live", "key_refresh_interval": 0.2, "propagation_delay": 0.5}
    with mtls_tokend(bao.addr, bao.token, tmp_path, identity="spiffe://tokend.test/java-live",
                     policy=LIVE_POLICY, vault=vault, jwks_max_age=0) as (_, env):
        yield {**os.environ, **env, "TOKEND_AUDIENCE": LIVE_AUDIENCE, "TOKEND_BAO_ADDR": bao.addr,
               "TOKEND_BAO_TOKEN": bao.token, "TOKEND_KEY_NAME": vault["key_name"]}


def test_java_live_source(live_env: dict[str, str]) -> None:
    """Revocations reach the Java LiveSource within a second; a key rotated in on the server
    verifies without a restart."""
    _mvn("live", live_env)


@pytest.fixture
def errors_env(bao: BaoDevServer, postgres_url: str, tmp_path: Path) -> Iterator[dict[str, str]]:
    with error_servers.error_servers(bao, postgres_url, tmp_path) as env:
        yield {**os.environ, **env}


def test_java_error_details(errors_env: dict[str, str]) -> None:
    """TokendException.from gives the reason, the field at fault and the retry delay of a
    live tokend's errors (TokendErrorsInteropTest, `mvn test -Perrors`)."""
    _mvn("errors", errors_env)


CHAIN_IDS = {
    "login": "spiffe://tokend.test/ns/login/sa/web",
    "orders": "spiffe://tokend.test/ns/orders/sa/api",
    "payments": "spiffe://tokend.test/ns/payments/sa/api",
    "thief": "spiffe://tokend.test/ns/x/sa/thief",
}
CHAIN_POLICY = f"""\
callers:
  - spiffe: "{CHAIN_IDS['login']}"
    rpcs: [Issue, Revoke]
    issue: {{audiences: ["orders", "payments"], scopes: ["*"]}}
  - spiffe: "{CHAIN_IDS['orders']}"
    rpcs: [Exchange]
    exchange: {{from_audiences: ["orders"], audiences: ["payments"], scopes: ["*"]}}
"""


@pytest.fixture
def chain_env(bao: BaoDevServer, tmp_path: Path) -> Iterator[dict[str, str]]:
    """A tokend where login issues, orders may Exchange orders -> payments, and payments and
    thief only hold certificates (Verify and the Watch streams need no policy entry). The
    server certificate is given to the Java test too: it runs its own mutual-TLS "payments"
    gRPC server that takes the presenter from the TLS session."""
    ca = TestCA(tmp_path / "pki")
    server = ca.server()
    certs = {name: ca.client(name, spiffe=spiffe) for name, spiffe in CHAIN_IDS.items()}
    settings = mtls_settings(
        bao.addr, bao.token, tmp_path, policy=CHAIN_POLICY, vault={"key_name": "java-chain"},
        server_cert=server.cert_file, server_key=server.key_file,
        client_ca=ca.cert_file)
    with RunningTokend(settings, tls_client=(ca.cert_file, certs["login"])) as running:
        env = {**os.environ, "TOKEND_ADDR": running.grpc_addr, "TOKEND_ISSUER": ISSUER,
               "TOKEND_CA_FILE": str(ca.cert_file),
               "TOKEND_SERVER_CERT": str(server.cert_file),
               "TOKEND_SERVER_KEY": str(server.key_file),
               "TOKEND_ORDERS_ID": CHAIN_IDS["orders"]}
        for name, issued in certs.items():
            env[f"TOKEND_{name.upper()}_CERT"] = str(issued.cert_file)
            env[f"TOKEND_{name.upper()}_KEY"] = str(issued.key_file)
        yield env


def test_java_exchange_and_binding(chain_env: dict[str, str]) -> None:
    """login -> orders -> payments: payments' Java verifier sees sub alice and actors
    [orders]; a token bound to orders' certificate is refused from the thief's (Java
    verifier behind a real mutual-TLS server, and tokend's Verify); an exchanged token is
    refused by a LiveSource-backed Java verifier within 1 s of its parent's Revoke."""
    _mvn("chain", chain_env)
