"""A Refresh whose answer was lost, retried by the Python client.

The client reaches tokend through a loopback proxy that lets the request through and
drops the answer; once the server has committed the rotation (the spent row is in the
store), the proxy resets the connection, as a network failure would. The client retries
under the same idempotency key and must get the answer the server committed, with the
family alive. Any other second use of the spent token is still reuse.
"""

from __future__ import annotations

import hashlib
import sqlite3
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import grpc
import pytest

from tests.support.bao import BaoDevServer
from tests.support.tokend import RunningTokend, make_settings
from tokend_client import IssuedToken, TokenClient
from tokend_client.v1 import tokend_pb2 as pb

from .procs import wait_for
from .proxy import LoopbackProxy


def rows_of_family(db: Path, family_id: str) -> list[tuple[bytes, str, bool]]:
    """(token hash, access jti, spent) of every refresh token of a family, oldest first."""
    with sqlite3.connect(db) as conn:
        rows = conn.execute(
            "SELECT token_hash, access_jti, spent_at IS NOT NULL FROM refresh_tokens"
            " WHERE family_id = ? ORDER BY issued_at", (family_id,)).fetchall()
    conn.close()
    return [(bytes(h), jti, bool(spent)) for h, jti, spent in rows]


def digest(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


@pytest.fixture
def server(bao: BaoDevServer, tmp_path: Path) -> Iterator[RunningTokend]:
    settings = make_settings(bao.addr, bao.token, tmp_path, vault={"key_name": "refresh-retry"})
    with RunningTokend(settings) as running:
        yield running


def refresh_losing_the_answer(server: RunningTokend, db: Path, front: LoopbackProxy,
                              client: TokenClient, issued: IssuedToken) -> IssuedToken:
    front.drop_answers = True
    with ThreadPoolExecutor(1) as pool:
        pending = pool.submit(client.refresh, issued.refresh_token or "")
        wait_for(lambda: any(spent for _, _, spent in rows_of_family(db, issued.jti)), 10,
                 "the server committing the rotation")
        front.cut()  # the answer is lost with the connection
        front.drop_answers = False
        front.heal()
        return pending.result(timeout=30)


def test_the_retry_of_a_lost_refresh_gets_the_committed_answer(
        server: RunningTokend, tmp_path: Path) -> None:
    db = tmp_path / "tokend.db"
    with LoopbackProxy(server.app.grpc_port) as front, TokenClient.insecure_loopback(
            f"127.0.0.1:{front.port}", retries=3, timeout=20) as client:
        issued = client.issue("alice", "orders", refresh=True)
        assert issued.refresh_token is not None

        renewed = refresh_losing_the_answer(server, db, front, client, issued)

        # The pair the server committed (the only one it made), not a second one.
        rows = rows_of_family(db, issued.jti)
        assert rows == [(digest(issued.refresh_token), issued.jti, True),
                        (digest(renewed.refresh_token or ""), renewed.jti, False)]
        assert client.verify(renewed.access_token, "orders").valid
        again = client.refresh(renewed.refresh_token or "")  # the family is alive
        assert client.verify(again.access_token, "orders").valid


def test_any_other_second_use_is_still_reuse(server: RunningTokend, tmp_path: Path) -> None:
    db = tmp_path / "tokend.db"
    with LoopbackProxy(server.app.grpc_port) as front, TokenClient.insecure_loopback(
            f"127.0.0.1:{front.port}", retries=3, timeout=20) as client:
        issued = client.issue("bob", "orders", refresh=True)
        renewed = refresh_losing_the_answer(server, db, front, client, issued)
        # Another logical Refresh of the spent token (a new key, as a thief's would be).
        with pytest.raises(grpc.RpcError) as info:
            server.stub.Refresh(pb.RefreshRequest(refresh_token=issued.refresh_token or "",
                                                  idempotency_key="another-key-0123456789"),
                                timeout=10)
        assert info.value.code() is grpc.StatusCode.UNAUTHENTICATED
    # RFC 9700 §4.14.2: the whole family is revoked, the retried pair included.
    verdict = server.stub.Verify(pb.VerifyRequest(token=renewed.access_token, audience="orders"),
                                 timeout=10)
    assert not verdict.valid and verdict.reason == pb.REASON_REVOKED
    with pytest.raises(grpc.RpcError) as info:
        server.stub.Refresh(pb.RefreshRequest(refresh_token=renewed.refresh_token or ""),
                            timeout=10)
    assert info.value.code() is grpc.StatusCode.UNAUTHENTICATED


def test_a_bad_idempotency_key_is_invalid_argument(server: RunningTokend) -> None:
    issued = server.stub.Issue(pb.IssueRequest(subject="carol", audience=["orders"],
                                               include_refresh_token=True), timeout=10)
    for key in ("short", "x" * 129, "has space in it 0123", "line\nbreak-0123456789"):
        with pytest.raises(grpc.RpcError) as info:
            server.stub.Refresh(pb.RefreshRequest(refresh_token=issued.refresh_token,
                                                  idempotency_key=key), timeout=10)
        assert info.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    # Nothing was spent by the refused requests.
    server.stub.Refresh(pb.RefreshRequest(refresh_token=issued.refresh_token), timeout=10)
