"""A throwaway PostgreSQL cluster for tests, from the distribution's own binaries.

`initdb` into a private temporary directory, `pg_ctl start` on a free loopback port
(``listen_addresses=127.0.0.1``, the Unix socket in that directory, fsync on as in
production), trust authentication for one test superuser, and `pg_ctl stop -m immediate`
at the end. Never a shared server.

PostgreSQL refuses to run as root. As root (CI), the cluster runs as the unprivileged
``postgres`` user (created by Debian's package; created here as a system user if it is
missing) through ``runuser``, and the temporary directory is handed to that user. As
any other user, it runs as that user.

Binaries: ``$TOKEND_PG_BINDIR``, else ``pg_config --bindir``, else the newest
``/usr/lib/postgresql/<version>/bin`` (Debian keeps them off PATH), else PATH.
"""

from __future__ import annotations

import atexit
import os
import pwd
import re
import shlex
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path
from types import TracebackType

import psycopg
import pytest

from tests.support.bao import free_port
from tests.support.logs import log_tail

__all__ = [
    "PostgresCluster",
    "find_bindir",
    "postgres_cluster",
    "postgres_database",
    "postgres_url",
]

TEST_USER = "tokend_test"
RUN_AS_WHEN_ROOT = "postgres"
FALLBACK_SYSTEM_USER = "tokend-pg"
_NEEDED = ("initdb", "pg_ctl")


def find_bindir() -> Path:
    """The directory holding initdb and pg_ctl; raises with what to install if none."""
    candidates: list[Path] = []
    if env := os.environ.get("TOKEND_PG_BINDIR"):
        candidates.append(Path(env))
    if pg_config := shutil.which("pg_config"):
        result = subprocess.run(
            [pg_config, "--bindir"], capture_output=True, text=True, check=False
        )
        if result.returncode == 0:
            candidates.append(Path(result.stdout.strip()))
    candidates += sorted(
        Path("/usr/lib/postgresql").glob("*/bin"), key=_version_key, reverse=True
    )
    if initdb := shutil.which("initdb"):
        candidates.append(Path(initdb).resolve().parent)
    for directory in candidates:
        if all(os.access(directory / name, os.X_OK) for name in _NEEDED):
            return directory
    raise RuntimeError(
        "PostgreSQL server binaries (initdb, pg_ctl) not found: install Debian's "
        "`postgresql` package (scripts/test does), or set TOKEND_PG_BINDIR"
    )


def _version_key(path: Path) -> tuple[int, ...]:
    return tuple(int(n) for n in re.findall(r"\d+", path.parent.name)) or (0,)


class PostgresCluster:
    """``with PostgresCluster() as pg:`` gives ``pg.url`` (database ``tokend``).

    `stop()` and `start()` may be called in between to take the server away and bring
    it back on the same port with the same data.
    """

    def __init__(self, *, start_timeout: int = 30) -> None:
        self.bindir = find_bindir()
        self._start_timeout = start_timeout
        self._run_as = _unprivileged_user() if os.geteuid() == 0 else None
        self.base = Path(tempfile.mkdtemp(prefix="tokend-pg-", dir=_temp_root(self._run_as)))
        if self._run_as is not None:
            # The server's user must own its data directory and socket directory.
            shutil.chown(self.base, user=self._run_as, group=pwd.getpwnam(self._run_as).pw_gid)
        self.data_dir = self.base / "data"
        self.log_path = self.base / "postgres.log"
        self.port = 0
        self._running = False

    @property
    def host(self) -> str:
        return "127.0.0.1"

    def url_for(self, dbname: str) -> str:
        return f"postgresql://{TEST_USER}@{self.host}:{self.port}/{dbname}"

    @property
    def url(self) -> str:
        return self.url_for("tokend")

    # -- lifecycle -------------------------------------------------------------------

    def __enter__(self) -> PostgresCluster:
        try:
            self._initdb()
            self.start()
            self.create_database("tokend")
        except BaseException:
            self.destroy()
            raise
        atexit.register(self.destroy)  # if the session dies before the fixture ends
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.destroy()

    def _initdb(self) -> None:
        self._run(
            "initdb", "-D", str(self.data_dir), "-A", "trust", "-U", TEST_USER,
            "-E", "UTF8", "--locale=C",
            # Only skips syncing initdb's own files; the server below runs with fsync on.
            "--no-sync",
        )  # fmt: skip

    def start(self) -> None:
        """Start (again) on a free port, or on the same port after `stop()`."""
        for attempt in range(3):
            port = self.port or free_port()
            options = " ".join(
                shlex.quote(arg)
                for arg in (
                    "-c", "listen_addresses=127.0.0.1", "-c", f"port={port}",
                    "-k", str(self.base), "-c", "fsync=on",
                )
            )  # fmt: skip
            result = self._run(
                "pg_ctl", "start", "-D", str(self.data_dir), "-l", str(self.log_path),
                "-w", "-t", str(self._start_timeout), "-o", options, check=False,
            )  # fmt: skip
            if result.returncode == 0:
                self.port = port
                self._running = True
                return
            if self.port or attempt == 2:  # a fixed port is not retried elsewhere
                break
        raise RuntimeError(f"pg_ctl start failed:\n{result.stdout}\n{log_tail(self.log_path, 20)}")

    def stop(self) -> None:
        """Stop at once, like a crash: committed work must survive (fsync is on)."""
        if self._running:
            self._run("pg_ctl", "stop", "-D", str(self.data_dir), "-m", "immediate", "-w")
            self._running = False

    def destroy(self) -> None:
        """Stop the server and delete every file; idempotent."""
        try:
            if self.data_dir.exists():
                self.stop()
        finally:
            shutil.rmtree(self.base, ignore_errors=True)
            atexit.unregister(self.destroy)

    # -- helpers ---------------------------------------------------------------------

    def create_database(self, name: str) -> str:
        """Create database ``name``; returns its URL."""
        if not re.fullmatch(r"[a-z_][a-z0-9_]{0,62}", name):
            raise ValueError(f"not a plain database name: {name!r}")
        with psycopg.connect(self.url_for("postgres"), autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.url_for(name)

    def _run(self, tool: str, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        command = [str(self.bindir / tool), *args]
        if self._run_as is not None:
            command = ["runuser", "-u", self._run_as, "--", *command]
        result = subprocess.run(
            command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
            stdin=subprocess.DEVNULL, cwd=self.base, timeout=self._start_timeout + 30,
            check=False,
        )  # fmt: skip
        if check and result.returncode != 0:
            raise RuntimeError(f"{tool} failed:\n{result.stdout}\n{log_tail(self.log_path, 20)}")
        return result



def _temp_root(run_as: str | None) -> str:
    """Where the cluster's directory goes: somewhere the server's user can reach."""
    root = tempfile.gettempdir()
    if run_as is not None and not os.stat(root).st_mode & 0o001:
        return "/tmp"  # e.g. TMPDIR under /root: the postgres user could not enter it
    return root


def _unprivileged_user() -> str:
    """The user to run PostgreSQL as when we are root: ``postgres``, created if need be."""
    for name in (RUN_AS_WHEN_ROOT, FALLBACK_SYSTEM_USER):
        try:
            pwd.getpwnam(name)
            return name
        except KeyError:
            continue
    subprocess.run(
        ["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin",
         FALLBACK_SYSTEM_USER],
        check=True,
    )  # fmt: skip
    return FALLBACK_SYSTEM_USER


# -- pytest fixtures (a conftest imports them) -----------------------------------------


@pytest.fixture(scope="session")
def postgres_cluster() -> Iterator[PostgresCluster]:
    """One throwaway cluster for the whole session."""
    with PostgresCluster() as cluster:
        yield cluster


@pytest.fixture(scope="session")
def postgres_url(postgres_cluster: PostgresCluster) -> str:
    """URL of the session's ``tokend`` database (shared: tests must not assume it empty)."""
    return postgres_cluster.url


@pytest.fixture
def postgres_database(postgres_cluster: PostgresCluster) -> str:
    """URL of a new, empty database for one test."""
    return postgres_cluster.create_database(_unique_name())


_counter = iter(range(1, 1 << 30))


def _unique_name() -> str:
    return f"t{os.getpid()}_{next(_counter)}"
