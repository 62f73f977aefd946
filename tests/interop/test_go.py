"""The Go client (clients/go): its unit tests, then its interop tests against the live tokend.

The LiveSource tests (TestInteropLive*) run on this module's own tokend with its own Transit
key ("goclient") re-read every 0.2 s, which they rotate; the shared server's key stays put.

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
from tests.support.tokend import mtls_tokend

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
# A cold module download and build of grpc-go took about 80 s on 2 cores; a warm run, seconds.
GO_TIMEOUT = 600


def run_go_test(env: dict[str, str], *extra: str) -> None:
    go = shutil.which("go", path=env.get("PATH"))
    assert go, "the go command is not on PATH; install Go 1.26 or later"
    env = {**env, "GOFLAGS": f"{env.get('GOFLAGS', '')} -mod=readonly".strip()}
    result = subprocess.run(
        [go, "test", "-count=1", *extra, "./..."],
        cwd=GO_CLIENT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        text=True, timeout=GO_TIMEOUT, check=False,
    )
    assert result.returncode == 0, f"go test {' '.join(extra)} failed:\n{result.stdout}"


@pytest.mark.timeout(GO_TIMEOUT + 60)
def test_go_unit() -> None:
    run_go_test(dict(os.environ))


@pytest.mark.timeout(GO_TIMEOUT + 60)
def test_go_interop(interop_env: dict[str, str]) -> None:
    run_go_test(interop_env, "-tags", "interop", "-skip", f"{LIVE_TESTS}|{ERROR_TESTS}")


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
