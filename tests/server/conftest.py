from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.bao import BaoDevServer
from tests.support.tokend import RunningTokend, make_settings


@pytest.fixture(scope="module")
def tokend(bao: BaoDevServer, tmp_path_factory: pytest.TempPathFactory,
           request: pytest.FixtureRequest) -> Iterator[RunningTokend]:
    """One tokend per test module, with its own transit key and SQLite file."""
    key_name = request.module.__name__.rsplit(".", 1)[-1].replace("_", "-")
    data_dir: Path = tmp_path_factory.mktemp("tokend")
    settings = make_settings(bao.addr, bao.token, data_dir, vault={"key_name": key_name})
    with RunningTokend(settings) as server:
        yield server
