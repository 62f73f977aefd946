"""Real `tokend serve` processes for fault tests: started, SIGKILLed and stopped by PID.

Each process gets its own YAML file (plaintext gRPC and HTTP on loopback, ports picked
by the kernel and read back from the `tokend.started` log line), its own log and audit
files, and an environment without TOKEND_* or VAULT_* variables, so nothing from the
caller's shell overrides the file. Prometheus metrics are per process, which is why
these tests do not run replicas in-process.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from types import TracebackType
from typing import Any

import grpc
import yaml

from tests.support.bao import BaoDevServer
from tests.support.logs import log_tail
from tests.support.tokend import ISSUER
from tokend.vault.dev import end_process
from tokend_client.v1 import tokend_pb2 as pb
from tokend_client.v1 import tokend_pb2_grpc

# Loopback only: never let an http_proxy variable route test traffic elsewhere.
_HTTP = urllib.request.build_opener(urllib.request.ProxyHandler({}))
AUDIENCE = "orders"


def replica_config(vault_addr: str, vault_token: str, store_url: str, key_name: str,
                   **overrides: Any) -> dict[str, Any]:
    """Settings for one replica; ``overrides`` are merged into the top level."""
    tokens = {"issuer": ISSUER, **overrides.pop("tokens", {})}
    return {
        "insecure_plaintext": True,
        "grpc_listen": "127.0.0.1:0",
        "http_listen": "127.0.0.1:0",
        "store_url": store_url,
        "vault": {"addr": vault_addr, "token": vault_token, "create_key": True,
                  "key_name": key_name},
        "tokens": tokens,
        **overrides,
    }


class TokendProcess:
    """``with TokendProcess(config, directory) as t:`` gives ``t.stub`` and ``t.metric()``.

    `kill()` sends SIGKILL (no shutdown code runs); `start()` may then run it again with
    the same configuration (new ports).
    """

    def __init__(self, config: dict[str, Any], directory: Path, *,
                 ready_timeout: float = 30.0) -> None:
        self.directory = directory
        directory.mkdir(parents=True, exist_ok=True)
        self.config_path = directory / "tokend.yaml"
        self.config_path.write_text(yaml.safe_dump(
            {**config, "audit_log": str(directory / "audit.jsonl")}))
        self.log_path = directory / "tokend.log"
        self._ready_timeout = ready_timeout
        self._proc: subprocess.Popen[bytes] | None = None
        self._channel: grpc.Channel | None = None
        self.grpc_addr = ""
        self.http_url = ""
        self.starts = 0

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc else None

    @property
    def stub(self) -> tokend_pb2_grpc.TokenServiceStub:
        if self._channel is None:
            raise RuntimeError("tokend is not running")
        return tokend_pb2_grpc.TokenServiceStub(self._channel)

    def start(self) -> TokendProcess:
        if self._proc is not None:
            raise RuntimeError(f"tokend already running (pid {self._proc.pid})")
        self.starts += 1
        offset = self.log_path.stat().st_size if self.log_path.exists() else 0
        env = {k: v for k, v in os.environ.items()
               if not k.startswith(("TOKEND_", "VAULT_"))}
        with self.log_path.open("ab") as log, (self.directory / "stdout").open("ab") as out:
            self._proc = subprocess.Popen(
                [sys.executable, "-m", "tokend.cli", "serve", "--config", str(self.config_path)],
                stdin=subprocess.DEVNULL, stdout=out, stderr=log, cwd=self.directory, env=env,
            )
        try:
            started = self._wait_started(offset)
        except BaseException:
            self.kill()
            raise
        self.grpc_addr = f"127.0.0.1:{started['grpc_port']}"
        self.http_url = f"http://127.0.0.1:{started['http_port']}"
        self._channel = grpc.insecure_channel(self.grpc_addr)
        return self

    def _wait_started(self, offset: int) -> dict[str, Any]:
        deadline = time.monotonic() + self._ready_timeout
        while time.monotonic() < deadline:
            for line in self._log_lines(offset):
                if '"tokend.started"' in line:
                    return json.loads(line)
            assert self._proc is not None
            if self._proc.poll() is not None:
                raise RuntimeError(f"tokend exited with {self._proc.returncode}:\n"
                                   f"{self.log_tail()}")
            time.sleep(0.05)
        raise TimeoutError(f"tokend not started in {self._ready_timeout} s:\n{self.log_tail()}")

    def _log_lines(self, offset: int) -> list[str]:
        with self.log_path.open("rb") as log:
            log.seek(offset)
            return log.read().decode(errors="replace").splitlines()

    def kill(self) -> None:
        """SIGKILL: the process gets no chance to finish anything."""
        self._end(signal.SIGKILL)

    def stop(self) -> None:
        """SIGTERM (graceful shutdown), SIGKILL if it has not exited within 10 s."""
        self._end(signal.SIGTERM)

    def _end(self, sig: signal.Signals) -> None:
        # The signal first: closing the channel first would cancel calls in flight on
        # the client side, and a kill test wants them to meet the dying server.
        proc, self._proc = self._proc, None
        if proc is not None:
            end_process(proc, sig, timeout=10)
        channel, self._channel = self._channel, None
        if channel is not None:
            channel.close()

    def ready(self) -> bool:
        """Whether /readyz answers 200."""
        try:
            with _HTTP.open(f"{self.http_url}/readyz", timeout=5) as resp:
                return resp.status == 200
        except urllib.error.HTTPError:
            return False

    def metric(self, name: str) -> float:
        """The value of an unlabelled metric from this process's /metrics."""
        with _HTTP.open(f"{self.http_url}/metrics", timeout=5) as resp:
            text = resp.read().decode()
        for line in text.splitlines():
            if line.startswith(name + " "):
                return float(line.split()[1])
        raise AssertionError(f"{name} not in /metrics")

    def log_tail(self, lines: int = 40) -> str:
        return log_tail(self.log_path, lines)

    def __enter__(self) -> TokendProcess:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()


@contextmanager
def running(*replicas: TokendProcess) -> Iterator[tuple[TokendProcess, ...]]:
    """Start the replicas side by side (each start waits for its process); stop them all
    at the end, also when a start failed."""
    try:
        with ThreadPoolExecutor(len(replicas)) as pool:
            for started in [pool.submit(replica.start) for replica in replicas]:
                started.result()
        yield replicas
    finally:
        for replica in replicas:
            replica.stop()


def create_key(bao: BaoDevServer, key_name: str) -> None:
    """Create the transit key up front, so replicas starting together do not race to."""
    bao.client().secrets.transit.create_key(name=key_name, key_type="ecdsa-p256")


def verify(replica: TokendProcess, token: str) -> pb.VerifyResponse:
    return replica.stub.Verify(pb.VerifyRequest(token=token, audience=AUDIENCE), timeout=10)


def issue(replica: TokendProcess, subject: str, *, refresh: bool = False) -> pb.IssueResponse:
    request = pb.IssueRequest(subject=subject, audience=[AUDIENCE], include_refresh_token=refresh)
    return replica.stub.Issue(request, timeout=10)


def wait_for(check: Any, timeout: float, what: str, interval: float = 0.05) -> float:
    """Call ``check()`` until it returns true; returns the seconds it took."""
    start = time.monotonic()
    while True:
        try:
            if check():
                return time.monotonic() - start
        except grpc.RpcError:
            pass  # not there yet: a replica restarting, a store coming back
        if time.monotonic() - start > timeout:
            raise AssertionError(f"{what}: not within {timeout} s")
        time.sleep(interval)
