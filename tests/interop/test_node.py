"""The Node.js client (clients/node): its unit tests (conformance and Wycheproof vectors
included), then its interop suites against a live tokend with mutual TLS. All run through
npm with the committed package-lock.json."""

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

NODE_DIR = Path(__file__).resolve().parents[2] / "clients" / "node"
LIVE_AUDIENCE = "interop-live"
LIVE_POLICY = """
callers:
  - identity: "spiffe://tokend.test/node-live"
    rpcs: [Issue, Revoke]
    issue:
      audiences: ["interop-*"]
"""


def _run(*command: str, env: dict[str, str] | None = None) -> None:
    """Run `command` in clients/node; on failure, fail with its whole output."""
    result = subprocess.run(
        command, cwd=NODE_DIR, env=env, capture_output=True, text=True, timeout=240, check=False,
    )
    if result.returncode != 0:
        pytest.fail(f"{' '.join(command)} exited {result.returncode}\n"
                    f"--- stdout\n{result.stdout}\n--- stderr\n{result.stderr}", pytrace=False)


def _npm(*args: str, env: dict[str, str] | None = None) -> None:
    npm = shutil.which("npm")
    if npm is None:
        pytest.fail("npm is not on PATH: the Node.js client needs Node.js 20+ and npm")
    _run(npm, *args, env=env)


@pytest.fixture(scope="module")
def node_build() -> None:
    """Install (only when node_modules is missing or the lock changed) and compile, once."""
    _run(str(NODE_DIR / "scripts" / "ensure-deps"))
    _npm("run", "build", "--silent")


@pytest.mark.timeout(300)
def test_node_unit(node_build: None) -> None:
    """`npm test`: verifier, cookie and client unit tests; no server needed."""
    _npm("test")


@pytest.mark.timeout(300)
def test_node_interop(node_build: None, interop_env: dict[str, str]) -> None:
    """`npm run test:interop`: the whole token lifecycle against the live tokend."""
    _npm("run", "test:interop", env=interop_env)


@pytest.mark.timeout(300)
def test_node_verify_batching(node_build: None, interop_env: dict[str, str]) -> None:
    """`npm run test:batch`: concurrent verify() calls go out as VerifyMany (tokend's
    /metrics counts them) and answer exactly as unary Verify; a lone call stays unary."""
    _npm("run", "test:batch", env=interop_env)


@pytest.fixture
def live_env(bao: BaoDevServer, tmp_path: Path) -> Iterator[dict[str, str]]:
    """A tokend of its own for the LiveSource test, which rotates its key: new versions are
    re-read every 0.2 s and sign 0.5 s after publication (jwks_max_age 0 allows that)."""
    vault = {"key_name": "node-live", "key_refresh_interval": 0.2, "propagation_delay": 0.5}
    with mtls_tokend(bao.addr, bao.token, tmp_path, identity="spiffe://tokend.test/node-live",
                     policy=LIVE_POLICY, vault=vault, jwks_max_age=0) as (_, env):
        yield {**os.environ, **env, "TOKEND_AUDIENCE": LIVE_AUDIENCE, "TOKEND_BAO_ADDR": bao.addr,
               "TOKEND_BAO_TOKEN": bao.token, "TOKEND_KEY_NAME": vault["key_name"]}


@pytest.mark.timeout(300)
def test_node_live(node_build: None, live_env: dict[str, str]) -> None:
    """`npm run test:live`: revocations reach the Node LiveSource within a second, and a
    key rotated in on the server verifies without a restart."""
    _npm("run", "test:live", env=live_env)


CHAIN_IDS = {name: f"spiffe://tokend.test/ns/{name}/sa/api"
             for name in ("login", "orders", "payments", "thief")}
CHAIN_POLICY = f"""
callers:
  - spiffe: "{CHAIN_IDS['login']}"
    rpcs: [Issue, Revoke]
    issue: {{audiences: ["orders"], scopes: ["*"]}}
  - spiffe: "{CHAIN_IDS['orders']}"
    rpcs: [Exchange]
    exchange: {{from_audiences: ["orders"], audiences: ["payments"], scopes: ["payments:*"]}}
"""


@pytest.fixture
def chain_env(bao: BaoDevServer, tmp_path: Path) -> Iterator[dict[str, str]]:
    """A tokend with a policy for login (Issue, Revoke) and orders (Exchange); payments and
    thief only verify and watch. The payments service's own TLS certificate is
    TOKEND_SERVICE_CERT/KEY (a server certificate of the same CA)."""
    ca = TestCA(tmp_path / "pki")
    server_cert, service_cert = ca.server(), ca.server("payments-service")
    certs = {name: ca.client(name, spiffe=spiffe) for name, spiffe in CHAIN_IDS.items()}
    settings = mtls_settings(
        bao.addr, bao.token, tmp_path, policy=CHAIN_POLICY, vault={"key_name": "node-chain"},
        server_cert=server_cert.cert_file, server_key=server_cert.key_file,
        client_ca=ca.cert_file)
    with RunningTokend(settings, tls_client=(ca.cert_file, certs["login"])) as running:
        env = {**os.environ, "TOKEND_ADDR": running.grpc_addr, "TOKEND_CA_FILE": str(ca.cert_file),
               "TOKEND_ISSUER": ISSUER, "TOKEND_SERVICE_CERT": str(service_cert.cert_file),
               "TOKEND_SERVICE_KEY": str(service_cert.key_file)}
        for name, issued in certs.items():
            env[f"TOKEND_{name.upper()}_CERT"] = str(issued.cert_file)
            env[f"TOKEND_{name.upper()}_KEY"] = str(issued.key_file)
            env[f"TOKEND_{name.upper()}_ID"] = CHAIN_IDS[name]
        yield env


@pytest.mark.timeout(300)
def test_node_chain(node_build: None, chain_env: dict[str, str]) -> None:
    """`npm run test:chain`: login → orders → payments (payments' Node verifier sees sub
    alice, actors [orders]), a bound token replayed from another certificate refused by the
    Node verifier and by tokend's Verify, and the exchanged token dying with its parent on
    Revoke within a second (LiveSource)."""
    _npm("run", "test:chain", env=chain_env)


@pytest.fixture
def errors_env(bao: BaoDevServer, postgres_url: str, tmp_path: Path) -> Iterator[dict[str, str]]:
    with error_servers.error_servers(bao, postgres_url, tmp_path) as env:
        yield {**os.environ, **env}


@pytest.mark.timeout(300)
def test_node_error_details(node_build: None, errors_env: dict[str, str]) -> None:
    """`npm run test:errors`: tokendErrorFrom gives the reason, the field at fault and the
    retry delay of a live tokend's errors."""
    _npm("run", "test:errors", env=errors_env)
