"""Revoke(subject) while an Issue for that subject waits on a slow Vault.

Vault is a real OpenBao behind a loopback proxy that holds its answers back, so the Issue
is still waiting for its signature when Revoke(subject) commits and answers. Whatever the
Issue then returns was issued before the revocation answered and must be dead: the access
token is REVOKED and the refresh token is refused, on both stores.
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from urllib.parse import urlsplit

import grpc
import pytest

from tests.support.bao import BaoDevServer
from tests.support.tokend import RunningTokend, make_settings
from tokend_client.v1 import tokend_pb2 as pb

from .proxy import LoopbackProxy

VAULT_DELAY = 1.5


def verify(server: RunningTokend, token: str) -> pb.VerifyResponse:
    return server.stub.Verify(pb.VerifyRequest(token=token, audience="orders"), timeout=10)


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_revoke_subject_wins_against_an_issue_waiting_on_vault(
        bao: BaoDevServer, tmp_path: Path, request: pytest.FixtureRequest, backend: str) -> None:
    store = ({"store_url": request.getfixturevalue("postgres_database")}
             if backend == "postgresql" else {})
    port = urlsplit(bao.addr).port
    assert port is not None
    with LoopbackProxy(port) as vault:
        settings = make_settings(f"http://127.0.0.1:{vault.port}", bao.token, tmp_path,
                                 vault={"key_name": "revoke-during-issue"}, **store)
        with RunningTokend(settings) as server, ThreadPoolExecutor(1) as pool:
            issue = pb.IssueRequest(subject="mallory", audience=["orders"],
                                    include_refresh_token=True)
            server.stub.Issue(issue, timeout=10)  # warm: keys loaded, Vault connection open
            vault.delay = VAULT_DELAY
            in_flight = pool.submit(server.stub.Issue, issue, timeout=20)
            time.sleep(VAULT_DELAY / 3)
            assert not in_flight.done(), "the Issue should still be waiting on Vault"
            server.stub.Revoke(pb.RevokeRequest(subject="mallory", reason="compromised"),
                               timeout=10)
            answered = time.time()
            vault.delay = 0.0
            stale = in_flight.result(timeout=20)

            checked = verify(server, stale.access_token)
            assert not checked.valid and checked.reason == pb.REASON_REVOKED
            with pytest.raises(grpc.RpcError) as info:
                server.stub.Refresh(pb.RefreshRequest(refresh_token=stale.refresh_token),
                                    timeout=10)
            assert info.value.code() is grpc.StatusCode.UNAUTHENTICATED

            # An Issue that starts after the answer is not affected.
            assert time.time() >= answered
            fresh = server.stub.Issue(issue, timeout=10)
            assert verify(server, fresh.access_token).valid
            renewed = server.stub.Refresh(pb.RefreshRequest(refresh_token=fresh.refresh_token),
                                          timeout=10)
            assert verify(server, renewed.access_token).valid
