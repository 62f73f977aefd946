"""The interop fixture itself: mutual TLS on, the caller's SAN recorded as client_id."""

from __future__ import annotations

import grpc
import pytest

from tests.conftest import AUDIENCE
from tests.support.tokend import RunningTokend
from tokend_client.v1 import tokend_pb2 as pb


def test_mtls_issue_and_verify(interop_tokend: tuple[RunningTokend, dict[str, str]]) -> None:
    running, _ = interop_tokend
    issued = running.stub.Issue(pb.IssueRequest(subject="py", audience=[AUDIENCE]), timeout=10)
    result = running.stub.Verify(pb.VerifyRequest(token=issued.access_token, audience=AUDIENCE),
                                 timeout=10)
    assert result.valid
    assert result.claims["client_id"] == "spiffe://tokend.test/interop"


def test_plaintext_client_is_refused(interop_tokend: tuple[RunningTokend, dict[str, str]]) -> None:
    running, _ = interop_tokend
    with grpc.insecure_channel(running.grpc_addr) as channel, \
            pytest.raises(grpc.RpcError) as info:
        channel.unary_unary("/tokend.v1.TokenService/GetJwks")(b"", timeout=3)
    assert info.value.code() == grpc.StatusCode.UNAVAILABLE
