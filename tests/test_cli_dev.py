"""`tokend dev` as a newcomer meets it: taken ports, the ready block, a `kill -9` and a restart.

Real processes throughout: `tokend dev` with its own OpenBao, real listening sockets for
the taken ports, the CLI run as a subprocess with no exports beyond what the block says.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.support.bao import BaoDevServer
from tests.support.tokend import free_port
from tests.test_cli_token import clean_env, cli


def ports() -> dict[str, int]:
    from tests.support.bao import free_port as free

    return {"grpc": free_port(), "http": free_port(), "vault": free(pair=True)}


def dev_argv(data_dir: Path, p: dict[str, int]) -> list[str]:
    return [sys.executable, "-m", "tokend.cli", "dev", "--data-dir", str(data_dir),
            "--grpc-listen", f"127.0.0.1:{p['grpc']}", "--http-listen",
            f"127.0.0.1:{p['http']}", "--vault-port", str(p["vault"])]


@contextmanager
def listening(port: int) -> Iterator[socket.socket]:
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", port))
        sock.listen()
        yield sock


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


@pytest.mark.parametrize(("which", "offset", "flag"), [
    ("grpc", 0, "--grpc-listen 127.0.0.1:"),
    ("http", 0, "--http-listen 127.0.0.1:"),
    ("vault", 0, "--vault-port "),
    ("vault", 1, "--vault-port "),  # the cluster port, vault + 1
])
def test_a_taken_port_is_named_before_anything_starts(tmp_path: Path, which: str, offset: int,
                                                      flag: str) -> None:
    p = ports()
    taken = p[which] + offset
    data_dir = tmp_path / "data"
    with listening(taken):
        result = subprocess.run(dev_argv(data_dir, p), capture_output=True, text=True,
                                timeout=60, env=clean_env(), check=False)
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    line = next(x for x in result.stderr.splitlines() if f"port {taken} " in x)
    assert "already in use" in line and f"by pid {os.getpid()}" in line
    assert re.search(re.escape(flag) + r"\d+", line), line
    assert not (data_dir / "openbao" / "bao.pid").exists()  # no OpenBao was started
    assert not (data_dir / "openbao" / "raft").exists()


@contextmanager
def running_dev(data_dir: Path, p: dict[str, int], log: Path
                ) -> Iterator[subprocess.Popen[bytes]]:
    with log.open("ab") as out:
        process = subprocess.Popen(dev_argv(data_dir, p), stdout=out, stderr=out,
                                   env=clean_env())
    try:
        wait_for("tokend dev is ready", log, timeout=90, process=process)
        yield process
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGINT)
            try:
                process.wait(30)
            finally:
                process.kill()


def wait_for(text: str, log: Path, timeout: float = 20,
             process: subprocess.Popen[bytes] | None = None) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        content = log.read_text()
        if text in content:
            return content
        if process is not None and process.poll() is not None:
            break
        time.sleep(0.2)
    raise AssertionError(f"{text!r} not in {log}:\n{log.read_text()[-3000:]}")


def test_ready_block_and_kill_9_restart(tmp_path: Path) -> None:
    p = ports()
    data_dir = tmp_path / ".tokend-data"  # the default name: commands run in tmp_path find it
    first_log = tmp_path / "first.log"
    with running_dev(data_dir, p, first_log) as first:
        text = wait_for("tokend dev is ready", first_log)
        assert "==> OpenBao: starting" in text and "==> ports free" in text
        exports = [line.strip() for line in text.splitlines()
                   if line.strip().startswith("export ")]
        assert exports[0] == f"export TOKEND_ADDR=127.0.0.1:{p['grpc']}"
        assert exports[1].startswith(f"export VAULT_ADDR=http://127.0.0.1:{p['vault']} "
                                     "VAULT_TOKEN=$(cat ")
        token_file = (data_dir / "openbao" / "root-token").read_text().strip()
        assert token_file not in text  # the root token stays in its file

        # In the directory of the dev stack: no exports at all.
        issued = cli("token", "issue", "--sub", "alice", "--aud", "orders", "-o", "token",
                     cwd=tmp_path)
        assert issued.returncode == 0, issued.stderr
        keys = cli("keys", "list", "--json", cwd=tmp_path)
        assert keys.returncode == 0 and '"phase": "active"' in keys.stdout, keys.stderr
        # Anywhere else: exactly the pasted lines.
        elsewhere = tmp_path / "elsewhere"
        elsewhere.mkdir()
        pasted = subprocess.run(
            ["bash", "-c", "\n".join([*exports, f"{sys.executable} -m tokend.cli keys list"])],
            capture_output=True, text=True, timeout=60, cwd=elsewhere, env=clean_env(),
            check=False)
        assert pasted.returncode == 0 and "active" in pasted.stdout, pasted.stderr

        bao_pid = int((data_dir / "openbao" / "bao.pid").read_text())
        first.send_signal(signal.SIGKILL)
        first.wait(10)
    assert alive(bao_pid)  # the orphan a kill -9 leaves behind

    second_log = tmp_path / "second.log"
    with running_dev(data_dir, p, second_log) as second:
        text = wait_for("tokend dev is ready", second_log)
        assert f"stopped the OpenBao a killed tokend dev left running (pid {bao_pid})" in text
        assert not alive(bao_pid)
        verdict = cli("token", "verify", issued.stdout.strip(), "--aud", "orders",
                      cwd=tmp_path)
        assert verdict.returncode == 0 and verdict.stdout.startswith("valid: true")

        # A second `tokend dev` on the same data dir must not take the live one's OpenBao.
        clash = subprocess.run(dev_argv(data_dir, ports()), capture_output=True, text=True,
                               timeout=60, env=clean_env(), check=False)
        assert clash.returncode == 1 and "Traceback" not in clash.stderr
        assert f"another tokend dev (pid {second.pid})" in clash.stderr
        assert second.poll() is None
        assert cli("token", "verify", issued.stdout.strip(), "--aud", "orders",
                   cwd=tmp_path).returncode == 0
        second.send_signal(signal.SIGINT)
        assert second.wait(30) == 0
    assert not (data_dir / "dev.json").exists()


@pytest.mark.parametrize("which", ["grpc", "http"])
def test_serve_with_a_taken_port_says_which_setting(bao: BaoDevServer, tmp_path: Path,
                                                    which: str) -> None:
    p = ports()
    env = clean_env(
        VAULT_ADDR=bao.addr, VAULT_TOKEN=bao.token, TOKEND_INSECURE_PLAINTEXT="true",
        TOKEND_GRPC_LISTEN=f"127.0.0.1:{p['grpc']}", TOKEND_HTTP_LISTEN=f"127.0.0.1:{p['http']}",
        TOKEND_STORE_URL=f"sqlite:///{tmp_path / 'tokend.db'}", TOKEND_VAULT__CREATE_KEY="true",
        TOKEND_VAULT__KEY_NAME="busy-port")
    with listening(p[which]):
        result = subprocess.run([sys.executable, "-m", "tokend.cli", "serve"],
                                capture_output=True, text=True, timeout=60, env=env, check=False)
    assert result.returncode in (1, 2)
    assert "Traceback" not in result.stderr + result.stdout
    last = result.stderr.strip().splitlines()[-1]
    assert f"127.0.0.1:{p[which]}" in last or f"'127.0.0.1', {p[which]}" in last, last
    assert f"{which}_listen" in last, last
