"""kill -9 of a replica in the middle of a stream of Revokes: every Revoke that answered
OK was committed first, so it is enforced after the restart, and on the other replica.

Calls in flight at the kill may or may not have been committed (the process can die
between the commit and the answer); the caller saw an error and retries, and Revoke is
idempotent, so either way nothing is lost. Only OK answers are held to account here.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Callable
from pathlib import Path

import grpc
import psycopg

from tests.support.bao import BaoDevServer
from tokend_client.v1 import tokend_pb2 as pb
from tokend_client.v1 import tokend_pb2_grpc

from .procs import (
    TokendProcess,
    create_key,
    issue,
    replica_config,
    running,
    verify,
    wait_for,
)

TOKENS = 150  # Revokes in the stream
KILL_AFTER = 60  # OK answers before the SIGKILL
SENDERS = 4  # concurrent callers, so several Revokes are in flight at the kill


def revoke_until_killed(replica: TokendProcess, tokens: list[pb.IssueResponse]
                        ) -> tuple[list[pb.IssueResponse], int]:
    """Stream Revokes from SENDERS threads; SIGKILL the replica after KILL_AFTER OKs.

    Returns the tokens whose Revoke answered OK and how many calls failed.
    """
    pending = iter(tokens)
    lock = threading.Lock()
    confirmed: list[pb.IssueResponse] = []
    failed = 0
    enough = threading.Event()
    # Their own channel: the kill must not cancel calls in flight on the client side.
    channel = grpc.insecure_channel(replica.grpc_addr)
    stub = tokend_pb2_grpc.TokenServiceStub(channel)

    def send() -> None:
        nonlocal failed
        while True:
            with lock:
                token = next(pending, None)
            if token is None:
                return
            request = pb.RevokeRequest(token=token.access_token, reason="kill -9 test")
            try:
                stub.Revoke(request, timeout=10)
            except grpc.RpcError:
                with lock:
                    failed += 1
                continue
            with lock:
                confirmed.append(token)
                if len(confirmed) >= KILL_AFTER:
                    enough.set()

    senders = [threading.Thread(target=send) for _ in range(SENDERS)]
    for sender in senders:
        sender.start()
    assert enough.wait(30), "the stream of Revokes did not get going"
    replica.kill()
    for sender in senders:
        sender.join(30)
    channel.close()
    assert len(confirmed) + failed == len(tokens)
    assert failed, "the kill came too late to interrupt the stream"
    return confirmed, failed


def all_revoked(replica: TokendProcess, tokens: list[pb.IssueResponse]) -> Callable[[], bool]:
    def check() -> bool:
        return all(verify(replica, t.access_token).reason == pb.REASON_REVOKED for t in tokens)

    return check


def test_kill9_during_revokes_postgres(bao: BaoDevServer, postgres_database: str,
                                       tmp_path: Path) -> None:
    create_key(bao, "kill9-pg")
    a, b = (TokendProcess(replica_config(bao.addr, bao.token, postgres_database, "kill9-pg"),
                          tmp_path / name) for name in "ab")
    with running(a, b):
        tokens = [issue(b, f"user-{i}") for i in range(TOKENS)]
        confirmed, failed = revoke_until_killed(a, tokens)
        with psycopg.connect(postgres_database) as conn:
            stored = {value for (value,) in conn.execute(
                "SELECT value FROM revocations WHERE kind = 'jti'")}
        assert {t.jti for t in confirmed} <= stored
        # Committed but never answered (in flight at the kill) must spread all the same.
        committed = [t for t in tokens if t.jti in stored]
        # b follows the store: every committed revocation reaches it with a dead a.
        wait_for(all_revoked(b, committed), 10, "committed revocations on b")
        a.start()
        assert all_revoked(a, committed)()
        print(f"\n[kill -9, postgres] {len(confirmed)} Revokes confirmed before the kill "
              f"({len(committed) - len(confirmed)} more committed unanswered), all enforced "
              f"on both replicas; {failed} failed at or after it")


def test_kill9_during_revokes_sqlite(bao: BaoDevServer, tmp_path: Path) -> None:
    db = tmp_path / "tokend.db"
    config = replica_config(bao.addr, bao.token, f"sqlite:///{db}", "kill9-sqlite")
    with TokendProcess(config, tmp_path / "a") as a:
        tokens = [issue(a, f"user-{i}") for i in range(TOKENS)]
        confirmed, failed = revoke_until_killed(a, tokens)
        # The file as the dead process left it (WAL included), before anyone reopens it.
        conn = sqlite3.connect(db)
        try:
            stored = {value for (value,) in conn.execute(
                "SELECT value FROM revocations WHERE kind = 'jti'")}
        finally:
            conn.close()
        assert {t.jti for t in confirmed} <= stored
        committed = [t for t in tokens if t.jti in stored]
        start = time.monotonic()
        a.start()
        assert all_revoked(a, committed)()
        print(f"\n[kill -9, sqlite] {len(confirmed)} Revokes confirmed "
              f"({len(committed) - len(confirmed)} more committed unanswered), all enforced "
              f"after a restart ({time.monotonic() - start:.1f} s); {failed} failed at or "
              f"after it")
