"""`tokend serve --workers N`: N tokend processes sharing the gRPC and HTTP ports.

Each worker is a whole tokend (`App`) with its own Vault session, store connection,
denylist and feed follower, so a revocation made through one worker reaches the others
through the store's feed exactly as it reaches other replicas. The ports are bound with
SO_REUSEPORT and the kernel spreads new connections over the workers.

The parent only supervises. SIGTERM or SIGINT is forwarded to every worker, which
drains and stops; the parent exits 0 once all have stopped cleanly. A worker that exits
on its own (a crash, a failed start) is not restarted: the parent stops the others and
exits non-zero, so the orchestrator (Kubernetes, systemd) restarts the whole group with
its own backoff and the failure shows in its restart count instead of being hidden.

The workers share two things through a private directory the parent makes (and removes):
the metrics (prometheus-client's multiprocess mode, so a scrape that reaches any worker
reports the group) and the per-caller rate-limit buckets (a caller's limit holds for the
group, whichever worker its connections land on).
"""

from __future__ import annotations

import ctypes
import fcntl
import multiprocessing
import os
import shutil
import signal
import sys
import tempfile
import time
from collections.abc import Callable
from multiprocessing.connection import wait
from multiprocessing.process import BaseProcess
from pathlib import Path
from types import FrameType

import structlog

from tokend import event_loop, metrics
from tokend.api.ratelimit import SharedRateLimiter, share_across_processes
from tokend.app import serve_forever
from tokend.config import Settings, split_host_port
from tokend.logs import configure_logging

log = structlog.get_logger("tokend.workers")

# How long stopping workers get before they are killed: App.stop's grace, and margin.
STOP_TIMEOUT = 30.0
_SHARED_PREFIX = "tokend-workers-"
_ABANDONED_AFTER = 60.0  # seconds
_PR_SET_PDEATHSIG = 1


def check_ports(settings: Settings) -> None:
    """Workers share fixed ports: port 0 would give each its own random one."""
    listeners = {"grpc_listen": settings.grpc_listen, "http_listen": settings.http_listen,
                 "http.metrics_listen": settings.http.metrics_listen}
    for name, listen in listeners.items():
        if listen is not None and split_host_port(listen)[1] == 0:
            raise ValueError(f"--workers needs a fixed port in {name}, not port 0")


def supervise(settings: Settings, count: int) -> int:
    """Run ``count`` workers until a signal stops them (0) or one dies (non-zero)."""
    check_ports(settings)
    remove_abandoned()
    shared = Path(tempfile.mkdtemp(prefix=_SHARED_PREFIX))
    # Held while this group runs: a directory whose lock is free was abandoned.
    owner = os.open(shared / "owner.lock", os.O_CREAT | os.O_RDWR, 0o600)
    fcntl.flock(owner, fcntl.LOCK_EX)
    try:
        return _supervise(settings, count, shared)
    finally:
        shutil.rmtree(shared, ignore_errors=True)
        os.close(owner)


def remove_abandoned() -> None:
    """Shared directories of groups killed with SIGKILL (no cleanup ran). In a pod /tmp is
    a memory volume that outlives container restarts, so they would pile up there."""
    for directory in Path(tempfile.gettempdir()).glob(f"{_SHARED_PREFIX}*"):
        try:
            if time.time() - directory.stat().st_mtime < _ABANDONED_AFTER:
                continue  # a group that is starting may not hold its lock yet
            owner = os.open(directory / "owner.lock", os.O_RDWR)
        except OSError:
            continue  # not ours to judge (no lock file yet, or not readable)
        try:
            fcntl.flock(owner, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            continue  # a running group holds it
        finally:
            os.close(owner)
        shutil.rmtree(directory, ignore_errors=True)
        log.info("workers.removed_abandoned", directory=str(directory))


def _supervise(settings: Settings, count: int, shared: Path) -> int:
    table = shared / "ratelimit"
    SharedRateLimiter.create(table)
    # Inherited by the spawned workers, which import prometheus-client afresh with it set.
    (shared / "metrics").mkdir()
    os.environ[metrics.MULTIPROCESS_ENV] = str(shared / "metrics")
    spawn = multiprocessing.get_context("spawn")  # no forked gRPC or event-loop state
    workers = [spawn.Process(target=_worker, args=(settings, index, os.getpid(), table),
                             name=f"tokend-worker-{index}") for index in range(count)]
    stopping = False

    def forward(signum: int, frame: FrameType | None) -> None:
        nonlocal stopping
        stopping = True
        _signal_all(workers, signal.SIGTERM)

    previous = {sig: signal.signal(sig, forward) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        for worker in workers:
            if not stopping:
                worker.start()
        log.info("workers.started", pids=[worker.pid for worker in workers])
        return _watch(workers, lambda: stopping)
    finally:
        _stop_all(workers)
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        os.environ.pop(metrics.MULTIPROCESS_ENV, None)


def _watch(workers: list[BaseProcess], stopping: Callable[[], bool]) -> int:
    """Wait for the workers to exit; the status of the group."""
    running = [worker for worker in workers if worker.pid is not None]
    status = 0
    while running:
        wait([worker.sentinel for worker in running], timeout=1.0)
        for worker in [w for w in running if not w.is_alive()]:
            running.remove(worker)
            code = worker.exitcode
            if stopping():
                # Our own SIGTERM can end a worker that had not installed its handler yet.
                status = status or int(code not in (0, -signal.SIGTERM))
                continue
            log.error("workers.worker_exited", worker=worker.name, pid=worker.pid,
                      exitcode=code)
            return code if code is not None and code > 0 else 1
    return status


def _signal_all(workers: list[BaseProcess], sig: signal.Signals) -> None:
    for worker in workers:
        if worker.pid is not None and worker.is_alive():
            os.kill(worker.pid, sig)


def _stop_all(workers: list[BaseProcess]) -> None:
    """SIGTERM whatever still runs, then SIGKILL what has not stopped in time."""
    _signal_all(workers, signal.SIGTERM)
    deadline = time.monotonic() + STOP_TIMEOUT
    for worker in workers:
        if worker.pid is not None:
            worker.join(max(0.0, deadline - time.monotonic()))
    _signal_all(workers, signal.SIGKILL)
    for worker in workers:
        if worker.pid is not None:
            worker.join()


def _worker(settings: Settings, index: int, parent: int, rate_limits: Path) -> None:
    """One worker process: a whole tokend on the shared ports."""
    _exit_with_parent(parent)
    share_across_processes(rate_limits)
    # Ctrl-C reaches the whole process group; the parent forwards it as SIGTERM.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    structlog.contextvars.bind_contextvars(worker=index, pid=os.getpid())
    configure_logging(settings.log_level)
    try:
        event_loop.run(serve_forever(settings, reuse_port=True), settings.event_loop)
    except Exception as exc:
        # The parent already validated the settings: this is a failed start or a crash.
        log.error("workers.failed", error=str(exc), error_type=type(exc).__name__)
        sys.exit(2)


def _exit_with_parent(parent: int) -> None:
    """A worker must not outlive a parent killed with SIGKILL (nobody would stop it)."""
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
    if os.getppid() != parent:  # it died before prctl took effect
        sys.exit(1)
