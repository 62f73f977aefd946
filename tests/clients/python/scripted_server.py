"""A scripted TokenService on 127.0.0.1:0 for the client's retry and error tests.

The real tokend cannot fail with UNAVAILABLE (or answer slowly) on demand, so these
tests run the real client against a small real gRPC server whose answers they script.
Everything about tokens themselves is tested against the real server in
tests/interop/test_python_client.py.
"""

from __future__ import annotations

import json
import threading
import time
from collections import Counter, defaultdict, deque
from concurrent import futures
from datetime import UTC, datetime, timedelta
from typing import Any

import grpc
from google.protobuf import message, timestamp_pb2

from tokend_client.v1 import tokend_pb2 as pb
from tokend_client.v1 import tokend_pb2_grpc

EXPIRES_AT = datetime(2030, 1, 2, 3, 4, 5, tzinfo=UTC)
ACCESS_TOKEN = "eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJhbGljZSJ9.c2ln"
REFRESH_TOKEN = "tkd_rt_" + "A" * 43


def _stamp(moment: datetime) -> timestamp_pb2.Timestamp:
    stamp = timestamp_pb2.Timestamp()
    stamp.FromDatetime(moment)
    return stamp


class ScriptedTokenService(tokend_pb2_grpc.TokenServiceServicer):
    """Answers every RPC, after first failing as scripted with :meth:`fail`."""

    def __init__(self, jwks: dict[str, Any] | None = None) -> None:
        self.calls: Counter[str] = Counter()
        self.requests: dict[str, list[message.Message]] = defaultdict(list)
        self.delay = 0.0
        self.active = 0  # calls being answered now
        self.peak = 0  # the most calls answered at once
        self.jwks = jwks or {"keys": []}
        self._failures: dict[str, deque[tuple[grpc.StatusCode, str]]] = defaultdict(deque)
        self._lock = threading.Lock()

    def fail(self, method: str, code: grpc.StatusCode, times: int = 1,
             message: str = "scripted failure") -> None:
        """Make the next ``times`` calls of ``method`` end with ``code`` and ``message``."""
        self._failures[method].extend([(code, message)] * times)

    def _enter(self, method: str, request: message.Message,
               context: grpc.ServicerContext) -> None:
        with self._lock:
            self.calls[method] += 1
            self.requests[method].append(request)
            failure = self._failures[method].popleft() if self._failures[method] else None
            self.active += 1
            self.peak = max(self.peak, self.active)
        if self.delay:
            time.sleep(self.delay)
        with self._lock:
            self.active -= 1
        if failure is not None:
            context.abort(*failure)

    def Issue(self, request: pb.IssueRequest, context: grpc.ServicerContext) -> pb.IssueResponse:
        self._enter("Issue", request, context)
        return _issue_response(refresh=request.include_refresh_token)

    def Refresh(self, request: pb.RefreshRequest,
                context: grpc.ServicerContext) -> pb.IssueResponse:
        self._enter("Refresh", request, context)
        return _issue_response(refresh=True)

    def Verify(self, request: pb.VerifyRequest,
               context: grpc.ServicerContext) -> pb.VerifyResponse:
        """A token named like a Reason ("REASON_EXPIRED") is invalid for that reason."""
        self._enter("Verify", request, context)
        return verify_response(request)

    def Revoke(self, request: pb.RevokeRequest,
               context: grpc.ServicerContext) -> pb.RevokeResponse:
        self._enter("Revoke", request, context)
        return pb.RevokeResponse(revoked=2)

    def GetJwks(self, request: pb.GetJwksRequest,
                context: grpc.ServicerContext) -> pb.GetJwksResponse:
        self._enter("GetJwks", request, context)
        return pb.GetJwksResponse(jwks_json=json.dumps(self.jwks))


def verify_response(request: pb.VerifyRequest) -> pb.VerifyResponse:
    """The scripted Verify answer: a token named like a Reason ("REASON_EXPIRED") is
    invalid for that reason, any other valid."""
    if request.token.startswith("REASON_"):
        return pb.VerifyResponse(valid=False, reason=pb.Reason.Value(request.token))
    response = pb.VerifyResponse(valid=True, subject="alice", expires_at=_stamp(EXPIRES_AT))
    response.claims.update({"sub": "alice", "exp": EXPIRES_AT.timestamp(),
                            "scope": "a b", "nested": {"n": [1, 2.5]}})
    return response


def _issue_response(*, refresh: bool) -> pb.IssueResponse:
    response = pb.IssueResponse(access_token=ACCESS_TOKEN, token_type="Bearer",
                                expires_at=_stamp(EXPIRES_AT), jti="jti-1")
    if refresh:
        response.refresh_token = REFRESH_TOKEN
        response.refresh_expires_at.CopyFrom(_stamp(EXPIRES_AT + timedelta(days=1)))
    return response


class _MethodCounter(grpc.ServerInterceptor):
    """Counts every call by method name, also of methods the service lacks."""

    def __init__(self) -> None:
        self.seen: Counter[str] = Counter()
        self._lock = threading.Lock()

    def intercept_service(self, continuation: Any,
                          handler_call_details: grpc.HandlerCallDetails) -> Any:
        with self._lock:
            self.seen[handler_call_details.method.rsplit("/", 1)[-1]] += 1
        return continuation(handler_call_details)


class ScriptedServer:
    """``with ScriptedServer() as server:`` serves ``server.service`` on ``server.target``;
    ``server.seen`` counts the calls by method, answered or not (UNIMPLEMENTED)."""

    def __init__(self, service: ScriptedTokenService | None = None) -> None:
        self.service = service or ScriptedTokenService()
        self._counter = _MethodCounter()
        self.seen = self._counter.seen
        self._server = grpc.server(futures.ThreadPoolExecutor(max_workers=16),
                                   interceptors=[self._counter])
        tokend_pb2_grpc.add_TokenServiceServicer_to_server(self.service, self._server)
        port = self._server.add_insecure_port("127.0.0.1:0")
        self.target = f"127.0.0.1:{port}"

    def __enter__(self) -> ScriptedServer:
        self._server.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.stop(grace=None).wait(5)
