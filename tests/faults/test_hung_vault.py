"""A hung Vault (alive, answering nothing: the real OpenBao under SIGSTOP) must make Issue
fail fast with UNAVAILABLE, however many callers wait, while Verify stays ready; signing
health says NOT_SERVING until OpenBao answers again. (issue 13, item 14)"""

from __future__ import annotations

import os
import signal
import threading
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from prometheus_client.parser import text_string_to_metric_families

from tests.support.bao import BaoDevServer
from tests.support.tokend import RunningTokend, make_settings
from tokend.app import SERVICE_NAME
from tokend_client.v1 import tokend_pb2 as pb

VAULT_TIMEOUT = 3.0
PROBE_INTERVAL = 2.0  # signing.probe_interval's default
# Scheduling slack on a shared 2-core machine, on top of one Vault timeout.
SLACK = 1.5
CALLERS = 300
_HTTP = urllib.request.build_opener(urllib.request.ProxyHandler({}))
# The documented health name for signing (docs/operations.md), spelled out on purpose.
SIGNING_HEALTH_NAME = "tokend.v1.TokenService/Issue"
REQUEST = pb.IssueRequest(subject="alice", audience=["orders"])


@pytest.fixture(scope="module")
def own_bao() -> Iterator[BaoDevServer]:
    """A private OpenBao: freezing the session's shared one would stall other modules."""
    with BaoDevServer() as server:
        yield server


@pytest.fixture
def tokend(own_bao: BaoDevServer, tmp_path: Path) -> Iterator[RunningTokend]:
    settings = make_settings(own_bao.addr, own_bao.token, tmp_path,
                             vault={"timeout": VAULT_TIMEOUT, "key_name": "hung"},
                             rate_limit={"per_second": 10_000, "burst": 10_000})
    with RunningTokend(settings) as server:
        yield server


@contextmanager
def frozen(bao: BaoDevServer) -> Iterator[None]:
    """OpenBao stopped (SIGSTOP): connections are accepted by the kernel, never answered."""
    assert bao.pid is not None
    os.kill(bao.pid, signal.SIGSTOP)
    try:
        yield
    finally:
        os.kill(bao.pid, signal.SIGCONT)


def signing_health(server: RunningTokend, service: str = SIGNING_HEALTH_NAME) -> int:
    stub = health_pb2_grpc.HealthStub(server.channel)
    return stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=5).status


def metric(server: RunningTokend, name: str, default: float | None = None,
           **labels: str) -> float:
    with _HTTP.open(server.http_url + "/metrics", timeout=5) as response:
        text = response.read().decode()
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and sample.labels == labels:
                return float(sample.value)
    if default is not None:
        return default
    raise AssertionError(f"{name}{labels} is not exported")


def concurrent_issues(server: RunningTokend, count: int, timeout: float
                      ) -> list[tuple[grpc.StatusCode, float]]:
    """`count` Issues at once; each one's status code and how long its caller waited."""
    results: list[tuple[grpc.StatusCode, float]] = []
    lock = threading.Lock()
    finished = threading.Event()

    def on_done(started: float) -> object:
        def record(call: grpc.Future) -> None:
            waited = time.monotonic() - started
            with lock:
                results.append((call.code(), waited))
                if len(results) == count:
                    finished.set()
        return record

    for _ in range(count):
        call = server.stub.Issue.future(REQUEST, timeout=timeout)
        call.add_done_callback(on_done(time.monotonic()))
    assert finished.wait(timeout + 10), f"only {len(results)} of {count} answered"
    return results


def wait_for(condition: object, within: float) -> bool:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if condition():  # type: ignore[operator]
            return True
        time.sleep(0.1)
    return False


def test_a_hung_vault_fails_every_issue_fast_and_verify_stays_ready(
        own_bao: BaoDevServer, tokend: RunningTokend) -> None:
    before = tokend.stub.Issue(REQUEST, timeout=10).access_token
    assert signing_health(tokend) == health_pb2.HealthCheckResponse.SERVING
    with frozen(own_bao):
        results = concurrent_issues(tokend, CALLERS, timeout=30)
        codes = {code for code, _ in results}
        waits = sorted(waited for _, waited in results)
        assert codes == {grpc.StatusCode.UNAVAILABLE}, codes
        # Each within about one Vault timeout: not one timeout per batch queued ahead.
        print(f"{CALLERS} Issues, Vault frozen: p50 {waits[len(waits) // 2]:.2f}s, "
              f"max {waits[-1]:.2f}s (vault.timeout {VAULT_TIMEOUT}s)")
        assert waits[-1] < VAULT_TIMEOUT + SLACK, (waits[len(waits) // 2], waits[-1])

        # The circuit is open: the next Issue does not even wait for Vault.
        started = time.monotonic()
        with pytest.raises(grpc.RpcError) as refused:
            tokend.stub.Issue(REQUEST, timeout=10)
        assert refused.value.code() == grpc.StatusCode.UNAVAILABLE
        assert time.monotonic() - started < 0.5
        assert "cannot sign" in (refused.value.details() or "")

        # Verify and the service as a whole stay ready; signing says it cannot.
        answer = tokend.stub.Verify(pb.VerifyRequest(token=before, audience="orders"),
                                    timeout=5)
        assert answer.valid
        assert signing_health(tokend, "") == health_pb2.HealthCheckResponse.SERVING
        assert signing_health(tokend, SERVICE_NAME) == health_pb2.HealthCheckResponse.SERVING
        assert signing_health(tokend) == health_pb2.HealthCheckResponse.NOT_SERVING
        assert metric(tokend, "tokend_signing_available") == 0
        assert metric(tokend, "tokend_sign_shed_total", reason="circuit_open") > 0
        with _HTTP.open(tokend.http_url + "/readyz", timeout=5) as response:
            assert response.status == 200

    # OpenBao answers again: the probe closes the circuit without any Issue's help.
    assert wait_for(lambda: signing_health(tokend) == health_pb2.HealthCheckResponse.SERVING,
                    within=PROBE_INTERVAL + VAULT_TIMEOUT + 10)
    assert metric(tokend, "tokend_signing_available") == 1
    after = tokend.stub.Issue(REQUEST, timeout=10).access_token
    assert tokend.stub.Verify(pb.VerifyRequest(token=after, audience="orders"),
                              timeout=5).valid


def test_callers_that_gave_up_are_not_sent_to_vault(
        own_bao: BaoDevServer, tokend: RunningTokend) -> None:
    """Issues whose deadline passed while they queued behind a slow Vault are dropped
    before their batch leaves: Vault signs only for callers still waiting."""
    tokend.stub.Issue(REQUEST, timeout=10)  # warm: the key and the HTTP session exist
    sent_before = metric(tokend, "tokend_sign_inputs_total")
    dropped_before = metric(tokend, "tokend_sign_shed_total", default=0, reason="cancelled")
    with frozen(own_bao):
        # Two callers take both in-flight slots (batches leave max_wait apart)...
        held = []
        for _ in range(2):
            held.append(tokend.stub.Issue.future(REQUEST, timeout=10))
            time.sleep(0.1)
        # ...and these queue behind them, then give up (deadline) long before Vault answers.
        impatient = [tokend.stub.Issue.future(REQUEST, timeout=0.3) for _ in range(40)]
        for call in impatient:
            assert call.exception(5) is not None
            assert call.code() == grpc.StatusCode.DEADLINE_EXCEEDED
        time.sleep(0.2)
    # Thawed well within the Vault timeout: the held batches are answered after all.
    for call in held:
        assert call.result(10).access_token
    time.sleep(0.5)  # anything still queued would have left by now
    assert metric(tokend, "tokend_sign_inputs_total") - sent_before == 2
    dropped = metric(tokend, "tokend_sign_shed_total", reason="cancelled") - dropped_before
    assert dropped == 40
