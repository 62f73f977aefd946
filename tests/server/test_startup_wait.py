"""vault.startup_timeout: tokend waits out a Vault that is not up yet, visibly not ready."""

from __future__ import annotations

import asyncio
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

from tests.support.bao import BaoDevServer
from tests.support.tokend import make_settings
from tokend.app import App


def status(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:  # noqa: S310
            return response.status
    except urllib.error.HTTPError as error:
        return error.code


def test_waits_for_vault_and_reports_not_ready_meanwhile(tmp_path: Path) -> None:
    bao = BaoDevServer()  # not started yet: its address refuses connections
    settings = make_settings(bao.addr, bao.token, tmp_path,
                             vault={"key_name": "late", "startup_timeout": 30})
    app = App(settings)
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    started = asyncio.run_coroutine_threadsafe(app.start(), loop)
    try:
        deadline = time.monotonic() + 10
        while app.http_port == 0:
            assert time.monotonic() < deadline and not started.done()
            time.sleep(0.05)
        base = f"http://127.0.0.1:{app.http_port}"
        assert status(base + "/healthz") == 200
        assert status(base + "/readyz") == 503
        assert status(base + "/.well-known/jwks.json") == 503
        bao.start()
        started.result(timeout=30)
        assert status(base + "/readyz") == 200
        assert status(base + "/.well-known/jwks.json") == 200
    finally:
        asyncio.run_coroutine_threadsafe(app.stop(grace=0), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(5)
        bao.close()
