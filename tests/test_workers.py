"""`tokend serve --workers 2` as an operator runs it: two processes on the same ports, each
with its own denylist following the same SQLite feed, supervised by the parent."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest
import yaml

from tests.api.streams.test_watch_rpcs import Collector
from tests.support.bao import BaoDevServer, free_port
from tokend.vault.dev import end_process
from tokend_client.v1 import tokend_pb2 as pb
from tokend_client.v1 import tokend_pb2_grpc

_HTTP = urllib.request.build_opener(urllib.request.ProxyHandler({}))
# Channels of one process share connections unless told otherwise: one connection each.
OWN_CONNECTION = [("grpc.use_local_subchannel_pool", 1)]


@dataclass
class Workers:
    process: subprocess.Popen[bytes]
    log: Path
    grpc_addr: str
    http_url: str

    def records(self) -> list[dict[str, object]]:
        """The JSON log lines written so far by the parent and the workers."""
        records = []
        for line in self.log.read_text(errors="replace").splitlines():
            try:
                records.append(json.loads(line))
            except ValueError:
                continue  # not JSON, or the last line still being written
        return records

    def pids(self) -> set[object]:
        return {r["pid"] for r in self.records() if r.get("event") == "tokend.started"}

    def pid_of(self, jti: str) -> object:
        """Which worker issued the token ``jti`` (from its `token.issued` log line)."""
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            for record in self.records():
                if record.get("event") == "token.issued" and record.get("jti") == jti:
                    return record["pid"]
            time.sleep(0.05)
        raise AssertionError(f"no log line for {jti}")


def start_workers(bao: BaoDevServer, directory: Path, count: int = 2,
                  extra: dict[str, object] | None = None) -> Workers:
    ports = {"grpc": free_port(), "http": free_port()}
    config = directory / "tokend.yaml"
    config.write_text(yaml.safe_dump({
        "insecure_plaintext": True,
        "grpc_listen": f"127.0.0.1:{ports['grpc']}",
        "http_listen": f"127.0.0.1:{ports['http']}",
        "store_url": f"sqlite:///{directory / 'tokend.db'}",
        "vault": {"addr": bao.addr, "create_key": True, "key_name": "workers"},
        "tokens": {"issuer": "https://tokend.test"},
        "log_level": "debug",  # for the token.issued lines that tell the workers apart
        **(extra or {}),
    }))
    log = directory / "tokend.log"
    env = {**os.environ, "VAULT_TOKEN": bao.token}
    env.pop("VAULT_ADDR", None)
    with log.open("ab") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "tokend.cli", "serve", "--workers", str(count),
             "--config", str(config)],
            stdout=out, stderr=out, env=env, cwd=directory)
    workers = Workers(process, log, f"127.0.0.1:{ports['grpc']}",
                      f"http://127.0.0.1:{ports['http']}")
    deadline = time.monotonic() + 60
    try:
        while len(workers.pids()) < count:
            if process.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"workers did not start:\n{log.read_text()[-4000:]}")
            time.sleep(0.1)
    except BaseException:
        stop(process)
        raise
    return workers


def stop(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM (the parent stops its workers), SIGKILL if that takes too long."""
    end_process(process, timeout=40)  # on SIGKILL the workers follow (parent-death signal)


@pytest.fixture(scope="module")
def workers(bao: BaoDevServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Workers]:
    running = start_workers(bao, tmp_path_factory.mktemp("workers"))
    yield running
    stop(running.process)


def issue_on_new_connection(workers: Workers) -> tuple[str, str, object]:
    """(jti, access token, worker pid): a fresh channel is a fresh TCP connection."""
    with grpc.insecure_channel(workers.grpc_addr, options=OWN_CONNECTION) as channel:
        stub = tokend_pb2_grpc.TokenServiceStub(channel)
        issued = stub.Issue(pb.IssueRequest(subject="dave", audience=["orders"]), timeout=10)
    return issued.jti, issued.access_token, workers.pid_of(issued.jti)


def test_connections_are_spread_over_both_workers(workers: Workers) -> None:
    served = [issue_on_new_connection(workers)[2] for _ in range(24)]
    assert set(served) == workers.pids()
    for _ in range(20):  # the HTTP side shares its port too: every worker is ready
        with _HTTP.open(workers.http_url + "/readyz", timeout=5) as response:
            assert response.status == 200


def test_a_revocation_through_one_worker_is_enforced_by_the_other(workers: Workers) -> None:
    channels: dict[object, grpc.Channel] = {}
    token = ""
    while len(channels) < 2:  # one channel pinned to each worker
        channel = grpc.insecure_channel(workers.grpc_addr, options=OWN_CONNECTION)
        issued = tokend_pb2_grpc.TokenServiceStub(channel).Issue(
            pb.IssueRequest(subject="erin", audience=["orders"]), timeout=10)
        pid = workers.pid_of(issued.jti)
        if pid in channels:
            channel.close()
            continue
        channels[pid] = channel
        token = token or issued.access_token
    try:
        one, other = (tokend_pb2_grpc.TokenServiceStub(c) for c in channels.values())
        feed = Collector(other.WatchRevocations(pb.WatchRevocationsRequest()))
        feed.wait_for(lambda event: event.checkpoint)
        started = time.monotonic()
        one.Revoke(pb.RevokeRequest(subject="erin", reason="test"), timeout=10)
        check = pb.VerifyRequest(token=token, audience="orders")
        while other.Verify(check, timeout=5).reason != pb.REASON_REVOKED:
            assert time.monotonic() - started < 1.0, "the other worker still accepts it"
            time.sleep(0.02)
        arrived, _ = feed.wait_for(lambda event: event.value == "erin")
        assert arrived - started < 1.0
        feed.call.cancel()
    finally:
        for channel in channels.values():
            channel.close()


def test_sigterm_stops_every_worker_cleanly(workers: Workers) -> None:
    # Last in this module: it stops the shared workers.
    pids = workers.pids()
    workers.process.send_signal(signal.SIGTERM)
    assert workers.process.wait(40) == 0
    for pid in pids:
        assert not _alive(pid)


def test_a_worker_that_dies_takes_the_group_down(bao: BaoDevServer, tmp_path: Path) -> None:
    running = start_workers(bao, tmp_path)
    try:
        victim, survivor = sorted(running.pids())  # type: ignore[type-var]
        os.kill(victim, signal.SIGKILL)  # type: ignore[arg-type]
        assert running.process.wait(40) != 0
        assert not _alive(survivor)
        exited = [r for r in running.records() if r.get("event") == "workers.worker_exited"]
        assert exited and exited[0]["pid"] == victim
    finally:
        stop(running.process)


def _alive(pid: object) -> bool:
    try:
        os.kill(pid, 0)  # type: ignore[arg-type]
    except ProcessLookupError:
        return False
    # A zombie (exited, not yet reaped by a parent that is gone) counts as dead.
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except OSError:
        return False
