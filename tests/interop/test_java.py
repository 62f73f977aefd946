"""The Java client (clients/java) against a live tokend: `mvn test -Pinterop` runs the unit
tests (the conformance and Wycheproof vectors included) and the tests tagged "interop"
(TokendInteropTest) with the TOKEND_* variables; `mvn test -Plive` runs LiveSourceInteropTest
against a tokend of its own, whose key it rotates."""

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
