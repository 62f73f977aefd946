"""Fixtures for the tokend_client tests: real keys, generated once per session, and a
scripted TokenService on loopback (no Vault, no tokend)."""

from __future__ import annotations

import inspect
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import pytest

from tests.clients.python.client_test_support import SigningKey, generate_key
from tests.clients.python.scripted_server import ScriptedServer
from tokend_client import AsyncTokenClient, TokenClient

Client = TokenClient | AsyncTokenClient

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


async def outcome(value: Any) -> Any:
    """A sync client's result as it is, an async client's awaited."""
    return await value if inspect.isawaitable(value) else value


@pytest.fixture(params=["sync", "async"])
async def make_client(request: pytest.FixtureRequest) -> AsyncIterator[Callable[..., Client]]:
    """Builds loopback clients of one kind (sync, then async) and closes them afterwards."""
    kind = TokenClient if request.param == "sync" else AsyncTokenClient
    made: list[Client] = []

    def make(target: str, **settings: Any) -> Client:
        client = kind.insecure_loopback(target, **settings)
        made.append(client)
        return client

    yield make
    for client in made:
        await outcome(client.close())
