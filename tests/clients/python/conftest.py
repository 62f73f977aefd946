"""Fixtures for the tokend_client tests: real keys, generated once per session."""

from __future__ import annotations

import pytest

from tests.client.client_test_support import SigningKey, generate_key

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
