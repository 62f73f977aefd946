"""The Go client (clients/go): its unit tests, then its interop tests against the live tokend.

The LiveSource tests (TestInteropLive*) run on this module's own tokend with its own Transit
key ("goclient") re-read every 0.2 s, which they rotate; the shared server's key stays put.
The service-chain tests (TestInteropChain*: token exchange, RFC 8693, and certificate-bound
tokens, RFC 8705) run on another tokend whose policy lets `orders` exchange alice's token for
`payments`, with mTLS identities login, orders, payments and thief from one test CA.

`go test` downloads the modules pinned in clients/go/go.sum through the Go module proxy on a
fresh machine; -mod=readonly makes a go.mod/go.sum that is out of date fail instead of being
rewritten.
"""

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

GO_CLIENT = Path(__file__).resolve().parents[2] / "clients" / "go"
LIVE_TESTS = "TestInteropLive"
# Every error reason, on servers of their own (tests/support/error_servers.py).
ERROR_TESTS = "TestInteropErrors"
LIVE_AUDIENCE = "go-live"
LIVE_POLICY = """
callers:
  - identity: "spiffe://tokend.test/goclient"
    rpcs: [Issue, Refresh, Revoke]
    issue:
      audiences: ["go-live"]
      scopes: ["*"]
      claims: ["*"]
"""
CHAIN_TESTS = "TestInteropChain"
CHAIN_IDENTITIES = {
    "login": "spiffe://tokend.test/ns/login/sa/web",
    "orders": "spiffe://tokend.test/ns/orders/sa/api",
    "payments": "spiffe://tokend.test/ns/payments/sa/api",
    "thief": "spiffe://tokend.test/ns/thief/sa/api",
}
CHAIN_POLICY = f"""
callers:
  - spiffe: "{CHAIN_IDENTITIES['login']}"
    rpcs: [Issue, Revoke]
    issue: {{audiences: ["orders"], scopes: ["*"], bind_other_certificates: true}}
  - spiffe: "{CHAIN_IDENTITIES['orders']}"
    rpcs: [Exchange]
    exchange: {{from_audiences: ["orders"], audiences: ["payments"], scopes: ["payments:*"]}}
"""
# A cold module download and build of grpc-go took about 80 s on 2 cores; a warm run, seconds.
GO_TIMEOUT = 600


def run_go_test(env: dict[str, str], *extra: str) -> str:
    go = shutil.which("go", path=env.get("PATH"))
    assert go, "the go command is not on PATH; install Go 1.26 or later"
    env = {**env, "GOFLAGS": f"{env.get('GOFLAGS', '')} -mod=readonly".strip()}
    result = subprocess.run(
        [go, "test", "-count=1", *extra, "./..."],
        cwd=GO_CLIENT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        text=True, timeout=GO_TIMEOUT, check=False,
    )
    assert result.returncode == 0, f"go test {' '.join(extra)} failed:\n{result.stdout}"
    return result.stdout


@pytest.mark.timeout(GO_TIMEOUT + 60)
def test_go_unit() -> None:
    run_go_test(dict(os.environ))


@pytest.mark.timeout(GO_TIMEOUT + 60)
def test_go_interop(interop_env: dict[str, str]) -> None:
    skip = f"{LIVE_TESTS}|{ERROR_TESTS}|{CHAIN_TESTS}"  # each has its own server below
    run_go_test(interop_env, "-tags", "interop", "-skip", skip)


@pytest.fixture(scope="module")
def errors_env(bao: BaoDevServer, postgres_url: str,
               tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    with error_servers.error_servers(bao, postgres_url, tmp_path_factory.mktemp("goerrors")
                                     ) as env:
        yield {**os.environ, **env}


@pytest.mark.timeout(GO_TIMEOUT + 120)
def test_go_error_details(errors_env: dict[str, str]) -> None:
    """conformance/errors/cases.json through the Go client's tokend.ErrorFrom."""
    run_go_test(errors_env, "-tags", "interop", "-run", ERROR_TESTS, "-v")


@pytest.fixture(scope="module")
def live_env(bao: BaoDevServer, tmp_path_factory: pytest.TempPathFactory
             ) -> Iterator[dict[str, str]]:
    """A tokend for the Go LiveSource tests, and the OpenBao Transit key they rotate."""
    directory: Path = tmp_path_factory.mktemp("golive")
    with mtls_tokend(bao.addr, bao.token, directory, identity="spiffe://tokend.test/goclient",
                     policy=LIVE_POLICY, jwks_max_age=0,
                     vault={"key_name": "goclient", "key_refresh_interval": 0.2,
                            "propagation_delay": 0.2}) as (_, env):
        yield {**os.environ, **env, "TOKEND_AUDIENCE": LIVE_AUDIENCE, "TOKEND_BAO_ADDR": bao.addr,
               "TOKEND_BAO_TOKEN": bao.token, "TOKEND_TRANSIT_KEY": "goclient"}


@pytest.mark.timeout(GO_TIMEOUT + 60)
def test_go_live_source(live_env: dict[str, str]) -> None:
    run_go_test(live_env, "-tags", "interop", "-run", LIVE_TESTS, "-v")


@pytest.fixture(scope="module")
def chain_env(bao: BaoDevServer, tmp_path_factory: pytest.TempPathFactory
              ) -> Iterator[dict[str, str]]:
    """A tokend allowing login → orders → payments, and a client certificate per workload:
    TOKEND_CLIENT_CERT/KEY is login's, TOKEND_<NAME>_CERT/KEY the others'."""
    directory: Path = tmp_path_factory.mktemp("gochain")
    ca = TestCA(directory / "pki")
    server = ca.server()
    certs = {name: ca.client(name, spiffe=spiffe) for name, spiffe in CHAIN_IDENTITIES.items()}
    settings = mtls_settings(
        bao.addr, bao.token, directory, policy=CHAIN_POLICY, vault={"key_name": "gochain"},
        server_cert=server.cert_file, server_key=server.key_file,
        client_ca=ca.cert_file)
    with RunningTokend(settings, tls_client=(ca.cert_file, certs["login"])) as running:
        env = {**os.environ, "TOKEND_ADDR": running.grpc_addr, "TOKEND_CA_FILE": str(ca.cert_file),
               "TOKEND_CLIENT_CERT": str(certs["login"].cert_file),
               "TOKEND_CLIENT_KEY": str(certs["login"].key_file),
               "TOKEND_JWKS_URL": running.http_url + "/.well-known/jwks.json",
               "TOKEND_ISSUER": ISSUER, "TOKEND_AUDIENCE": "orders"}
        for name, spiffe in CHAIN_IDENTITIES.items():
            env[f"TOKEND_{name.upper()}_CERT"] = str(certs[name].cert_file)
            env[f"TOKEND_{name.upper()}_KEY"] = str(certs[name].key_file)
            env[f"TOKEND_{name.upper()}_ID"] = spiffe
        yield env


@pytest.mark.timeout(GO_TIMEOUT + 60)
def test_go_service_chain(chain_env: dict[str, str]) -> None:
    output = run_go_test(chain_env, "-tags", "interop", "-run", CHAIN_TESTS, "-v")
    for name in ("LoginOrdersPayments", "BoundTokenReplayedFromAnotherCertificate",
                 "ExchangedTokenDiesWithItsParent", "IssueWithBinding"):
        assert f"--- PASS: {CHAIN_TESTS}{name}" in output, output
    print(output)
