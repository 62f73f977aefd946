"""Shared fixtures: one real OpenBao dev server per test session, tokend servers on loopback."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support.bao import BaoDevServer


@pytest.fixture(scope="session")
def bao() -> Iterator[BaoDevServer]:
    with BaoDevServer() as server:
        yield server
