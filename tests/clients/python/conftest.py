"""Fixtures for the tokend_client tests: real keys, generated once per session, and a
scripted TokenService on loopback (no Vault, no tokend)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.clients.python.client_test_support import SigningKey, generate_key
from tests.clients.python.scripted_server import ScriptedServer

KEY_ALGORITHMS = ("ES256", "RS256", "PS256", "EdDSA")


@pytest.fixture(scope="session")
def signing_keys() -> dict[str, SigningKey]:
    """One signing key per algorithm the tests use, keyed by algorithm."""
    algs = (*KEY_ALGORITHMS, "ES384", "ES512", "RS384", "PS512", "Ed448")
    return {alg: generate_key(alg, kid=f"kid-{alg.lower()}") for alg in algs}


@pytest.fixture(params=KEY_ALGORITHMS)
def signing_key(request: pytest.FixtureRequest, signing_keys: dict[str, SigningKey]) -> SigningKey:
    """Each of the default LocalVerifier algorithms in turn."""
    return signing_keys[request.param]


@pytest.fixture
def scripted() -> Iterator[ScriptedServer]:
    """A scripted TokenService on loopback (see scripted_server.py)."""
    with ScriptedServer() as server:
        yield server
