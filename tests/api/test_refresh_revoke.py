"""Refresh rotation, reuse detection and every kind of Revoke, over real gRPC."""

from __future__ import annotations

import time

import grpc
import pytest

from tests.api.test_issue_verify import invalid_argument, issue, segments, verify
from tests.support.tokend import RunningTokend
from tokend_client.v1 import tokend_pb2 as pb


def refresh(tokend: RunningTokend, token: str, scopes: tuple[str, ...] = ()) -> pb.IssueResponse:
    return tokend.stub.Refresh(pb.RefreshRequest(refresh_token=token, scopes=scopes), timeout=10)


def revoke(tokend: RunningTokend, **target: str) -> int:
    return tokend.stub.Revoke(pb.RevokeRequest(**target), timeout=10).revoked


def denied(call) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(grpc.RpcError) as info:
        call()
    assert info.value.code() == grpc.StatusCode.UNAUTHENTICATED


def test_refresh_rotates_and_keeps_the_grant(tokend: RunningTokend) -> None:
    first = issue(tokend, subject="carol", scopes=["a", "b"], claims={"tenant": "t1"},
                  include_refresh_token=True)
    assert first.refresh_token.startswith("tkd_rt_") and first.HasField("refresh_expires_at")
    second = refresh(tokend, first.refresh_token)
    assert second.refresh_token != first.refresh_token
    _, claims = segments(second.access_token)
    assert claims["sub"] == "carol" and claims["scope"] == "a b" and claims["tenant"] == "t1"
    assert claims["jti"] != first.jti
    assert verify(tokend, second.access_token).valid
    third = refresh(tokend, second.refresh_token, scopes=("a",))
    assert segments(third.access_token)[1]["scope"] == "a"


def test_refresh_cannot_widen_scopes(tokend: RunningTokend) -> None:
    first = issue(tokend, scopes=["a"], include_refresh_token=True)
    assert "cannot widen" in invalid_argument(lambda: refresh(tokend, first.refresh_token,
                                                              scopes=("a", "admin")))
    assert refresh(tokend, first.refresh_token).access_token  # not spent by the refusal


def test_reuse_revokes_the_family_and_its_access_tokens(tokend: RunningTokend) -> None:
    first = issue(tokend, subject="dave", include_refresh_token=True)
    second = refresh(tokend, first.refresh_token)
    third = refresh(tokend, second.refresh_token)
    denied(lambda: refresh(tokend, first.refresh_token))  # replay of a spent token
    for response in (first, second, third):
        assert verify(tokend, response.access_token).reason == pb.REASON_REVOKED
    denied(lambda: refresh(tokend, third.refresh_token))  # the live one is dead too


def test_refresh_input_errors(tokend: RunningTokend) -> None:
    assert "required" in invalid_argument(lambda: refresh(tokend, ""))
    assert "not a tokend refresh token" in invalid_argument(lambda: refresh(tokend, "abc"))
    denied(lambda: refresh(tokend, "tkd_rt_" + "A" * 43))


def test_revoke_by_token_and_by_jti(tokend: RunningTokend) -> None:
    a, b = issue(tokend), issue(tokend)
    assert revoke(tokend, token=a.access_token, reason="lost laptop") == 1
    assert revoke(tokend, jti=b.jti) == 1
    assert verify(tokend, a.access_token).reason == pb.REASON_REVOKED
    assert verify(tokend, b.access_token).reason == pb.REASON_REVOKED
    assert verify(tokend, issue(tokend).access_token).valid


def test_revoke_by_refresh_token(tokend: RunningTokend) -> None:
    first = issue(tokend, subject="erin", include_refresh_token=True)
    second = refresh(tokend, first.refresh_token)
    assert revoke(tokend, refresh_token=second.refresh_token) >= 1
    assert verify(tokend, second.access_token).reason == pb.REASON_REVOKED
    denied(lambda: refresh(tokend, second.refresh_token))
    # RFC 7009 §2.2: revoking something unknown is not an error.
    assert revoke(tokend, refresh_token="tkd_rt_" + "B" * 43) == 0


def test_revoke_subject(tokend: RunningTokend) -> None:
    old = issue(tokend, subject="frank", include_refresh_token=True)
    other = issue(tokend, subject="grace")
    assert revoke(tokend, subject="frank", reason="password changed") >= 1
    assert verify(tokend, old.access_token).reason == pb.REASON_REVOKED
    assert verify(tokend, other.access_token).valid
    denied(lambda: refresh(tokend, old.refresh_token))
    time.sleep(1.05)  # iat has one-second resolution: a token from the next second is new
    assert verify(tokend, issue(tokend, subject="frank").access_token).valid


def test_revoke_input_errors(tokend: RunningTokend) -> None:
    assert "name what to revoke" in invalid_argument(lambda: revoke(tokend))
    assert "not issued by this tokend" in invalid_argument(
        lambda: revoke(tokend, token="a.b.c"))
    assert "jti must be" in invalid_argument(lambda: revoke(tokend, jti="x" * 200))
    assert "reason" in invalid_argument(lambda: revoke(tokend, jti="abc", reason="r" * 300))
