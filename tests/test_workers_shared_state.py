"""`tokend serve --workers 2` as an operator runs it: whichever worker a scrape reaches,
/metrics reports the whole group, and one caller's rate limit holds for the group rather
than once per worker."""

from __future__ import annotations

import os
import re
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.support.bao import BaoDevServer
from tests.test_workers import OWN_CONNECTION, Workers, start_workers, stop
from tokend.workers import remove_abandoned
from tokend_client.v1 import tokend_pb2 as pb
from tokend_client.v1 import tokend_pb2_grpc

_HTTP = urllib.request.build_opener(urllib.request.ProxyHandler({}))
BURST = 12
ATTEMPTS = 3 * BURST  # each on a new connection: both workers get more than BURST
# The labels of Issue's standard gRPC series, sorted (grpc_code sorts before them).
ISSUE = (("grpc_method", "Issue"), ("grpc_service", "tokend.v1.TokenService"),
         ("grpc_type", "unary"))


@pytest.fixture(scope="module")
def workers(bao: BaoDevServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Workers]:
    # Next to no refill during the test: the group may issue BURST tokens, no more.
    limits = {"rate_limit": {"per_second": 0.001, "burst": BURST}}
    running = start_workers(bao, tmp_path_factory.mktemp("shared"), extra=limits)
    yield running
    stop(running.process)


@pytest.fixture(scope="module")
def outcomes(workers: Workers) -> dict[str, list[object]]:
    """ATTEMPTS Issue calls by one caller, each on a fresh connection: the pids of the
    workers that issued, and the codes of the calls that were refused."""
    issued: list[object] = []
    refused: list[object] = []
    for _ in range(ATTEMPTS):
        with grpc.insecure_channel(workers.grpc_addr, options=OWN_CONNECTION) as channel:
            stub = tokend_pb2_grpc.TokenServiceStub(channel)
            try:
                answer = stub.Issue(pb.IssueRequest(subject="frank", audience=["orders"]),
                                    timeout=10)
            except grpc.RpcError as exc:
                refused.append(exc.code())
                continue
        issued.append(workers.pid_of(answer.jti))
    return {"issued": issued, "refused": refused}


def scrape(workers: Workers) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """One GET /metrics on a new connection, as {(sample name, labels): value}."""
    with _HTTP.open(workers.http_url + "/metrics", timeout=5) as response:
        text = response.read().decode()
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def test_a_callers_rate_limit_holds_across_workers(
        workers: Workers, outcomes: dict[str, list[object]]) -> None:
    # Per process, each worker would grant its own BURST: up to twice as many.
    assert len(outcomes["issued"]) == BURST
    assert set(outcomes["issued"]) == workers.pids(), "both workers issued: the calls spread"
    assert outcomes["refused"] == [grpc.StatusCode.RESOURCE_EXHAUSTED] * (ATTEMPTS - BURST)


def test_every_scrape_reports_the_whole_group(
        workers: Workers, outcomes: dict[str, list[object]]) -> None:
    expected = {
        ("tokend_tokens_issued_total", (("kind", "issue"),)): BURST,
        ("tokend_rate_limited_total", (("rpc", "Issue"),)): ATTEMPTS - BURST,
        ("tokend_signing_available", ()): 1,
        ("tokend_store_up", ()): 1,
        # The standard gRPC series (metrics_standard.py), derived from the group's values.
        ("grpc_server_handled_total", (("grpc_code", "OK"), *ISSUE)): BURST,
        ("grpc_server_handled_total", (("grpc_code", "ResourceExhausted"), *ISSUE)):
            ATTEMPTS - BURST,
        ("grpc_server_started_total", ISSUE): ATTEMPTS,
        ("grpc_server_msg_sent_total", ISSUE): BURST,
    }
    for _ in range(12):  # new connections: the kernel spreads them over both workers
        samples = scrape(workers)
        assert {key: samples.get(key) for key in expected} == expected
        # Gauges are one series for the group (min or max over the workers), no pid label.
        assert not any("pid" in dict(labels) for _, labels in samples)
        histogram = samples[("tokend_rpc_duration_seconds_count",
                             (("code", "OK"), ("method", "Issue")))]
        assert histogram == BURST


def test_only_abandoned_shared_directories_are_removed(workers: Workers) -> None:
    # A group killed with SIGKILL leaves its directory behind (in a pod, /tmp outlives the
    # container); the next group removes it, never the directory of a group that runs.
    running = [d for d in Path(tempfile.gettempdir()).glob("tokend-workers-*")
               if (d / "metrics").is_dir()]
    assert running, "the running group's directory"
    abandoned = Path(tempfile.mkdtemp(prefix="tokend-workers-"))
    (abandoned / "owner.lock").touch()
    (abandoned / "ratelimit").write_bytes(b"\0" * 64)
    remove_abandoned()
    assert abandoned.exists(), "a minute's grace: a group that starts may not lock it yet"
    os.utime(abandoned, (time.time() - 120, time.time() - 120))
    for directory in running:
        os.utime(directory, (time.time() - 120, time.time() - 120))
    remove_abandoned()
    assert not abandoned.exists()
    assert all(d.exists() for d in running)
    assert scrape(workers), "the running group still reads its metrics"


def test_log_and_audit_lines_share_their_field_names(
        workers: Workers, outcomes: dict[str, list[object]]) -> None:
    """stdout (audit) and stderr (logs) of `tokend serve` go to one file here, as a log
    collector would gather them: one set of names reads both (docs/operations.md)."""
    records = workers.records()
    audit = next(r for r in records if r.get("event") == "rpc.Issue")
    log = next(r for r in records if r.get("event") == "token.issued")
    header = ["timestamp", "level", "logger", "event"]
    assert list(audit)[:4] == header and list(log)[:4] == header
    assert audit["logger"] == "tokend.audit" and log["logger"].startswith("tokend.")
    assert (audit["level"], log["level"]) == ("info", "debug")
    for record in (audit, log):
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{6})?Z",
                            str(record["timestamp"])), record
    assert not {"ts", "severity"} & (set(audit) | set(log))
