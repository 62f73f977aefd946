"""Shared fixtures: one real OpenBao dev server per test session, one plaintext tokend per
test module (`tokend`), and one live tokend with mutual TLS on loopback for the interop,
client-library and deployment smoke tests.
The PostgreSQL fixtures (`postgres_cluster`, `postgres_url`, `postgres_database`) come
from tests/support/postgres.py: one throwaway cluster for the whole session.

`interop_env` names the live server in environment variables, for other languages'
test runners: TOKEND_ADDR (host:port, TLS), TOKEND_CA_FILE, TOKEND_CLIENT_CERT,
TOKEND_CLIENT_KEY, TOKEND_JWKS_URL (plain HTTP on loopback), TOKEND_ISSUER, TOKEND_AUDIENCE.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
import uvloop

from tests.support.bao import BaoDevServer
from tests.support.postgres import (  # noqa: F401 (pytest fixtures)
    postgres_cluster,
    postgres_database,
    postgres_url,
)
from tests.support.tokend import RunningTokend, make_settings, mtls_tokend


def pytest_asyncio_loop_factories(config: pytest.Config, item: pytest.Item
                                  ) -> dict[str, object]:
    """The in-process servers of the tests run on uvloop, as `tokend serve` does by
    default (tokend.event_loop): the whole suite checks tokend on the loop it ships with."""
    return {"uvloop": uvloop.new_event_loop}


@pytest.fixture(scope="session")
def bao() -> Iterator[BaoDevServer]:
    with BaoDevServer() as server:
        yield server


@pytest.fixture(scope="module")
def tokend(bao: BaoDevServer, tmp_path_factory: pytest.TempPathFactory,
           request: pytest.FixtureRequest) -> Iterator[RunningTokend]:
    """One tokend per test module, with its own transit key and SQLite file."""
    key_name = request.module.__name__.rsplit(".", 1)[-1].replace("_", "-")
    data_dir: Path = tmp_path_factory.mktemp("tokend")
    settings = make_settings(bao.addr, bao.token, data_dir, vault={"key_name": key_name})
    with RunningTokend(settings) as server:
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
    with mtls_tokend(bao.addr, bao.token, directory, identity="spiffe://tokend.test/interop",
                     policy=POLICY, vault={"key_name": "interop"}) as (running, env):
        yield running, {**env, "TOKEND_AUDIENCE": AUDIENCE}


@pytest.fixture
def interop_env(interop_tokend: tuple[RunningTokend, dict[str, str]]) -> dict[str, str]:
    """The process environment plus the TOKEND_* variables naming the live server."""
    return {**os.environ, **interop_tokend[1]}
