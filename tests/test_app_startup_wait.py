"""vault.startup_timeout: tokend waits out a Vault that is not up yet, visibly not ready:
/readyz 503 and gRPC health NOT_SERVING until the keys are loaded."""

from __future__ import annotations

import asyncio
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from tests.faults.proxy import LoopbackProxy
from tests.support.bao import BaoDevServer
from tests.support.tokend import make_settings
from tokend.app import App
from tokend_client.v1 import tokend_pb2 as pb
from tokend_client.v1 import tokend_pb2_grpc


def status(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:  # noqa: S310
            return response.status
    except urllib.error.HTTPError as error:
        return error.code


def test_waits_for_vault_and_reports_not_ready_meanwhile(tmp_path: Path) -> None:
    bao = BaoDevServer()  # not started yet
    # tokend reaches it through a proxy that turns every connection away until bao has
    # transit mounted: a tokend that got in between bao listening and the mount would
    # see a Vault without transit, which is a configuration error, not a late start.
    with LoopbackProxy(bao.port) as proxy:
        proxy.cut()
        _wait_for_late_vault(bao, proxy, tmp_path)


def _wait_for_late_vault(bao: BaoDevServer, proxy: LoopbackProxy, tmp_path: Path) -> None:
    settings = make_settings(f"http://127.0.0.1:{proxy.port}", bao.token, tmp_path,
                             vault={"key_name": "late", "startup_timeout": 30})
    app = App(settings)
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    started = asyncio.run_coroutine_threadsafe(app.start(), loop)
    try:
        deadline = time.monotonic() + 10
        while app.grpc_port == 0:
            assert time.monotonic() < deadline and not started.done()
            time.sleep(0.05)
        base = f"http://127.0.0.1:{app.http_port}"
        assert status(base + "/healthz") == 200
        assert status(base + "/readyz") == 503
        assert status(base + "/.well-known/jwks.json") == 503
        with grpc.insecure_channel(f"127.0.0.1:{app.grpc_port}") as channel:
            check = health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(service="tokend.v1.TokenService"), timeout=5)
            assert check.status == health_pb2.HealthCheckResponse.NOT_SERVING
            with pytest.raises(grpc.RpcError) as info:
                tokend_pb2_grpc.TokenServiceStub(channel).GetJwks(pb.GetJwksRequest(), timeout=5)
            assert info.value.code() == grpc.StatusCode.UNAVAILABLE
            assert "starting" in info.value.details()
        bao.start()
        proxy.heal()
        started.result(timeout=30)
        assert status(base + "/readyz") == 200
        assert status(base + "/.well-known/jwks.json") == 200
    finally:
        asyncio.run_coroutine_threadsafe(app.stop(grace=0), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(5)
        bao.close()
