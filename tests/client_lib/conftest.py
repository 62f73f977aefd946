"""Fixtures for the tokend_client library tests (no Vault, no tokend)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.client_lib.scripted_server import ScriptedServer


@pytest.fixture
def scripted() -> Iterator[ScriptedServer]:
    """A scripted TokenService on loopback (see scripted_server.py)."""
    with ScriptedServer() as server:
        yield server
