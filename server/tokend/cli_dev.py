"""The user-facing side of `tokend dev`: port checks, progress lines, the closing banner.

Every port is checked before anything starts, so a taken one is named with the flag that
moves it, instead of OpenBao failing to bind while tokend talks to whatever listens there.
"""

from __future__ import annotations

import ipaddress
import json
import os
import shlex
import socket
import sys
import threading
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from tokend.config import split_host_port

# Loopback only: never let an http_proxy variable route the readiness probe elsewhere.
_HTTP = urllib.request.build_opener(urllib.request.ProxyHandler({}))


class PortTaken(Exception):
    """One or more ports `tokend dev` needs are in use; the message says which and how to move."""


@dataclass(frozen=True)
class Need:
    host: str
    port: int
    what: str
    flag: str  # the flag that moves it, with a suggested free value filled in later


def progress(message: str) -> None:
    print(f"==> {message}", file=sys.stderr, flush=True)


def dev_ports(grpc_listen: str, http_listen: str, vault_port: int) -> list[Need]:
    grpc_host, grpc_port = split_host_port(grpc_listen)
    http_host, http_port = split_host_port(http_listen)
    return [
        Need(grpc_host, grpc_port, "tokend gRPC", "--grpc-listen"),
        Need(http_host, http_port, "tokend HTTP (JWKS, discovery, health)", "--http-listen"),
        Need("127.0.0.1", vault_port, "OpenBao API", "--vault-port"),
        Need("127.0.0.1", vault_port + 1, "OpenBao cluster, always --vault-port + 1",
             "--vault-port"),
    ]


def check_ports(needs: list[Need]) -> None:
    """Raise PortTaken naming every taken port, who holds it (when we can see) and the fix."""
    problems = []
    for need in needs:
        if not _loopback(need.host):
            problems.append(f"tokend dev: {need.host} ({need.what}) is not a loopback "
                            f"address; dev serves plaintext on 127.0.0.1 or ::1 only "
                            f"({need.flag} 127.0.0.1:{need.port})")
            continue
        if _free(need.host, need.port):
            continue
        holder = _holder(need.port)
        problems.append(
            f"tokend dev: port {need.port} on {need.host} ({need.what}) is already in use"
            f"{f' by pid {holder}' if holder else ''}; move it with {_suggest(need, needs)}")
    if len(set(needs_ports := [(n.host, n.port) for n in needs])) != len(needs_ports):
        problems.append("tokend dev: two of the ports given are the same; give each its own")
    if problems:
        raise PortTaken("\n".join(problems))  # one line per port, nothing started


def _loopback(host: str) -> bool:
    try:
        return host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _free(host: str, port: int) -> bool:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        # SO_REUSEADDR as the servers set it: a TIME_WAIT left by the last run is no clash.
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError:
            return False
    return True


def _suggest(need: Need, needs: list[Need]) -> str:
    if need.flag == "--vault-port":
        base = needs[2].port
        free = next((p for p in range(base + 100, base + 200, 2)
                     if _free("127.0.0.1", p) and _free("127.0.0.1", p + 1)), None)
        return f"--vault-port {free}" if free else "--vault-port PORT"
    free = next((p for p in range(need.port + 1, need.port + 50) if _free(need.host, p)), None)
    host = f"[{need.host}]" if ":" in need.host else need.host
    return f"{need.flag} {host}:{free}" if free else f"{need.flag} HOST:PORT"


def _holder(port: int) -> str | None:
    """`1234 (vault server -dev)` for a listener we may inspect (our own uid), else None."""
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if fields[3] == "0A" and int(fields[1].rsplit(":", 1)[1], 16) == port:  # LISTEN
                inodes.add(f"socket:[{fields[9]}]")
    for pid in filter(str.isdigit, os.listdir("/proc")) if inodes else ():
        try:
            if any(os.readlink(f"/proc/{pid}/fd/{fd}") in inodes
                   for fd in os.listdir(f"/proc/{pid}/fd")):
                return f"{pid} ({_command(pid)})"
        except OSError:
            continue
    return None


def _command(pid: str) -> str:
    """`bao server -config=…` or `tokend dev --grpc-listen …`, shortened for one line."""
    argv = [a.decode(errors="replace") for a in
            Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0") if a]
    if len(argv) > 1 and Path(argv[0]).name.startswith("python"):
        argv = argv[1:]  # the interpreter says nothing; the script does
    text = " ".join([Path(argv[0]).name, *argv[1:]]) if argv else "?"
    return text if len(text) <= 60 else text[:57] + "..."


def write_state(data_dir: Path, **state: str) -> Path:
    """Record where the dev stack listens, so `tokend token …` and `tokend keys …` run in
    this directory find it without exports. Removed when `tokend dev` stops."""
    path = data_dir / "dev.json"
    path.write_text(json.dumps({**state, "pid": os.getpid()}, indent=2) + "\n")
    return path


def announce_when_ready(http_listen: str, lines: list[str], *, timeout: float = 300) -> None:
    """Print `lines` once /readyz answers 200, from a daemon thread (tokend blocks main)."""
    host, port = split_host_port(http_listen)
    url = f"http://{f'[{host}]' if ':' in host else host}:{port}/readyz"

    def wait() -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                with _HTTP.open(url, timeout=2) as response:
                    if response.status == 200:
                        print("\n".join(lines), file=sys.stderr, flush=True)
                        return
            except OSError:
                pass
            time.sleep(0.2)

    threading.Thread(target=wait, name="dev-banner", daemon=True).start()


def banner(*, grpc_listen: str, http_listen: str, vault_addr: str, data_dir: Path) -> list[str]:
    token_file = data_dir / "openbao" / "root-token"
    rule = "-" * 72
    return [
        "", rule,
        "tokend dev is ready (Ctrl-C stops tokend and OpenBao; DEVELOPMENT ONLY)",
        f"  gRPC     {grpc_listen}   (plaintext)",
        f"  HTTP     http://{http_listen}   (/.well-known/jwks.json, /metrics)",
        f"  OpenBao  {vault_addr}   (data: {data_dir / 'openbao'})",
        "",
        "In another terminal, paste:",
        f"  export TOKEND_ADDR={grpc_listen}",
        # The root token stays in its 0600 file rather than in the scrollback.
        f"  export VAULT_ADDR={vault_addr} VAULT_TOKEN=$(cat {shlex.quote(str(token_file))})",
        "then try: .venv/bin/tokend token issue --sub alice --aud orders --output token",
        rule, "",
    ]
