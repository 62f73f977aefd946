"""`http.metrics_listen`: /metrics on an internal listener of its own, and gone from the
public one, so JWKS and discovery can face the internet. (issue 13, item 15)"""

from __future__ import annotations

import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.bao import BaoDevServer
from tests.support.tokend import RunningTokend, make_settings
from tokend.config import load_settings
from tokend.workers import check_ports

_HTTP = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def status_and_body(url: str) -> tuple[int, str]:
    try:
        with _HTTP.open(url, timeout=5) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, ""


@pytest.fixture
def tokend(bao: BaoDevServer, tmp_path: Path) -> Iterator[RunningTokend]:
    settings = make_settings(bao.addr, bao.token, tmp_path, vault={"key_name": "metrics"},
                             http={"metrics_listen": "127.0.0.1:0"})
    with RunningTokend(settings) as server:
        yield server


def test_metrics_leave_the_public_listener(tokend: RunningTokend) -> None:
    public = tokend.http_url
    internal = f"http://127.0.0.1:{tokend.app.metrics_port}"
    assert tokend.app.metrics_port not in (0, tokend.app.http_port)

    assert status_and_body(public + "/metrics")[0] == 404
    status, body = status_and_body(internal + "/metrics")
    assert status == 200 and "tokend_verifications_total" in body

    # The public endpoints stay public; the internal listener serves metrics only.
    for path in ("/.well-known/jwks.json", "/.well-known/openid-configuration",
                 "/healthz", "/readyz"):
        assert status_and_body(public + path)[0] == 200, path
        assert status_and_body(internal + path)[0] == 404, path


def test_metrics_listen_is_checked() -> None:
    for bad, why in (("nonsense", "is not host:port"),
                     ("127.0.0.1:8080", "must differ from http_listen")):
        with pytest.raises(ValueError, match=why):
            load_settings(None, insecure_plaintext=True, http_listen="127.0.0.1:8080",
                          http={"metrics_listen": bad})


def test_workers_need_a_fixed_metrics_port() -> None:
    """`--workers N` share each port (SO_REUSEPORT): port 0 would give each its own."""
    fixed = {"insecure_plaintext": True, "grpc_listen": "127.0.0.1:50051",
             "http_listen": "127.0.0.1:8080"}
    with pytest.raises(ValueError, match=r"http\.metrics_listen"):
        check_ports(load_settings(None, **fixed, http={"metrics_listen": "127.0.0.1:0"}))
    check_ports(load_settings(None, **fixed, http={"metrics_listen": "127.0.0.1:9090"}))
