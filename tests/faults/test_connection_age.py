"""A scale-up reaches clients that were already connected, through grpc.max_connection_age.

Two real tokend processes share one store behind a loopback L4 balancer (least open
connections, as a Kubernetes Service or an NLB places connections). A client connects
while only replica A exists; then replica B starts and joins the balancer. With a
connection age, A sends GOAWAY, the client's next connection lands on B, and B serves
calls within one connection age. Without one (grpc's default), every call stays on A.
"""

from __future__ import annotations

import time
import urllib.request
from pathlib import Path

import pytest

from tests.support.bao import BaoDevServer
from tokend_client import TokenClient

from .procs import TokendProcess, create_key, replica_config
from .proxy import LeastConnectionsProxy

AGE = 1.5  # seconds; grpc adds up to ±10 % jitter
GRACE = 1.0
_HTTP = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def served(replica: TokendProcess) -> float:
    """Verify calls this replica answered (every series of tokend_verifications_total)."""
    with _HTTP.open(f"{replica.http_url}/metrics", timeout=5) as resp:
        text = resp.read().decode()
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
               if line.startswith("tokend_verifications_total{"))


def port(replica: TokendProcess) -> int:
    return int(replica.grpc_addr.rsplit(":", 1)[1])


def first_call_on_b(client: TokenClient, b: TokendProcess, within: float) -> float | None:
    """Verify calls, one every 20 ms, until B has answered one: the seconds it took, or
    None if B answered none within ``within`` seconds."""
    started = time.monotonic()
    while time.monotonic() - started < within:
        assert not client.verify("not.a.token", "orders").valid
        if served(b) > 0:
            return time.monotonic() - started
        time.sleep(0.02)
    return None


@pytest.mark.parametrize("age", [AGE, 0], ids=["age-1.5s", "no-age"])
def test_a_client_connected_before_a_scale_up_reaches_the_new_replica(
        bao: BaoDevServer, tmp_path: Path, age: float) -> None:
    create_key(bao, "connection-age")
    config = replica_config(bao.addr, bao.token, f"sqlite:///{tmp_path / 'tokend.db'}",
                            "connection-age",
                            grpc={"max_connection_age": age, "max_connection_age_grace": GRACE})
    a = TokendProcess(config, tmp_path / "a")
    b = TokendProcess(config, tmp_path / "b")
    with a, LeastConnectionsProxy(port(a)) as balancer, \
            TokenClient.insecure_loopback(f"127.0.0.1:{balancer.port}") as client:
        for _ in range(5):
            client.verify("not.a.token", "orders")
        assert served(a) == 5
        with b:
            balancer.add_backend(port(b))
            if age:
                took = first_call_on_b(client, b, within=3 * AGE + GRACE)
                assert took is not None, f"B got no call; connections went to {balancer.placed}"
                # The connection was opened before B started: B is reached at its age.
                assert took <= AGE * 1.1 + 0.5, took
                assert balancer.placed[-1] == port(b)
            else:
                assert first_call_on_b(client, b, within=3 * AGE + GRACE) is None
                assert balancer.placed == [port(a)]
