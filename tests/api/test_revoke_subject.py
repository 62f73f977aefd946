"""Revoke(subject) against a running tokend: "sign out everywhere, then sign in" works,
and Revoke is rate-limited like the other RPCs that write."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from tests.support.bao import BaoDevServer
from tests.support.tokend import RunningTokend, make_settings
from tokend_client.v1 import tokend_pb2 as pb


def issue(server: RunningTokend, subject: str, *, refresh: bool = False) -> pb.IssueResponse:
    return server.stub.Issue(pb.IssueRequest(subject=subject, audience=["orders"],
                                             include_refresh_token=refresh), timeout=10)


def verify(server: RunningTokend, token: str) -> pb.VerifyResponse:
    return server.stub.Verify(pb.VerifyRequest(token=token, audience="orders"), timeout=10)


def start_of_next_second() -> None:
    """Sleep to just after a whole second begins, so what follows shares that second."""
    time.sleep(1.02 - time.time() % 1.0)


def test_a_token_issued_after_revoke_subject_answered_verifies(tokend: RunningTokend) -> None:
    # Several rounds, each lined up so the revocation and the sign-in after it would
    # share one whole second of iat: the case that used to hand out a dead token.
    for round_ in range(3):
        subject = f"sign-out-everywhere-{round_}"
        start_of_next_second()
        before = issue(tokend, subject, refresh=True)
        tokend.stub.Revoke(pb.RevokeRequest(subject=subject, reason="sign out"), timeout=10)
        after = issue(tokend, subject, refresh=True)

        assert verify(tokend, after.access_token).valid, f"round {round_}: new token dead"
        old = verify(tokend, before.access_token)
        assert not old.valid and old.reason == pb.REASON_REVOKED
        refreshed = tokend.stub.Refresh(
            pb.RefreshRequest(refresh_token=after.refresh_token), timeout=10)
        assert verify(tokend, refreshed.access_token).valid
        with pytest.raises(grpc.RpcError) as info:
            tokend.stub.Refresh(pb.RefreshRequest(refresh_token=before.refresh_token), timeout=10)
        assert info.value.code() is grpc.StatusCode.UNAUTHENTICATED


@pytest.fixture
def limited(bao: BaoDevServer, tmp_path: Path) -> Iterator[RunningTokend]:
    settings = make_settings(bao.addr, bao.token, tmp_path, vault={"key_name": "revoke-rate"},
                             rate_limit={"per_second": 0.001, "burst": 3})
    with RunningTokend(settings) as server:
        yield server


def test_revoke_beyond_the_callers_rate_is_refused_and_writes_nothing(
        limited: RunningTokend, tmp_path: Path) -> None:
    for n in range(3):
        limited.stub.Revoke(pb.RevokeRequest(jti=f"made-up-{n}"), timeout=10)
    for target in ({"jti": "made-up-3"}, {"subject": "made-up-subject"}):
        with pytest.raises(grpc.RpcError) as info:
            limited.stub.Revoke(pb.RevokeRequest(**target), timeout=10)
        assert info.value.code() is grpc.StatusCode.RESOURCE_EXHAUSTED
    with sqlite3.connect(tmp_path / "tokend.db") as db:
        rows = db.execute("SELECT kind, value FROM revocations ORDER BY seq").fetchall()
    db.close()
    assert rows == [("jti", f"made-up-{n}") for n in range(3)]
