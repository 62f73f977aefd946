"""One OpenBao for the tests/vault package: AppRole on, the documented policy loaded."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support.bao import BaoDevServer
from tests.vault.helpers import KEY, enable_auth, write_doc_policy


@pytest.fixture(scope="package")
def vault() -> Iterator[BaoDevServer]:
    """One OpenBao for this package: AppRole on, the documented policy, the key made."""
    with BaoDevServer() as server:
        client = server.client()
        enable_auth(client, "approle")
        write_doc_policy(client)
        client.secrets.transit.create_key(KEY, key_type="ecdsa-p256")
        yield server
