"""gRPC TokenService: translates protobuf to the token layer and errors to status codes."""

from __future__ import annotations

import functools
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any, TypeVar

import grpc
import structlog
from google.protobuf import json_format, struct_pb2, timestamp_pb2

from tokend import metrics
from tokend.api.identity import caller_identity
from tokend.config import Settings
from tokend.keys.publisher import JwksPublisher
from tokend.tokens import policy
from tokend.tokens.authority import IssueResult, TokenAuthority
from tokend.tokens.errors import BadRequest, RefreshDenied, SigningUnavailable
from tokend_client.v1 import tokend_pb2 as pb
from tokend_client.v1 import tokend_pb2_grpc

log = structlog.get_logger("tokend.api")

Req = TypeVar("Req")
Resp = TypeVar("Resp")
Handler = Callable[[Any, Req, grpc.aio.ServicerContext], Awaitable[Resp]]

_STATUS: tuple[tuple[type[Exception], grpc.StatusCode], ...] = (
    (BadRequest, grpc.StatusCode.INVALID_ARGUMENT),
    (RefreshDenied, grpc.StatusCode.UNAUTHENTICATED),
    (SigningUnavailable, grpc.StatusCode.UNAVAILABLE),
)


def rpc(method: str) -> Callable[[Handler[Req, Resp]], Handler[Req, Resp]]:
    """Maps token-layer errors to status codes and records latency per method and code."""

    def decorate(handler: Handler[Req, Resp]) -> Handler[Req, Resp]:
        @functools.wraps(handler)
        async def wrapper(self: Any, request: Req, context: grpc.aio.ServicerContext) -> Resp:
            started = time.perf_counter()
            code = grpc.StatusCode.OK
            try:
                return await handler(self, request, context)
            except Exception as exc:
                code, message = _status_for(exc, method)
                await context.abort(code, message)
                raise  # unreachable: abort raises
            finally:
                metrics.RPC_SECONDS.labels(method, code.name).observe(
                    time.perf_counter() - started)

        return wrapper

    return decorate


def _status_for(exc: Exception, method: str) -> tuple[grpc.StatusCode, str]:
    for kind, code in _STATUS:
        if isinstance(exc, kind):
            return code, str(exc)
    # Unknown failures (store down, bugs): log the detail, tell the caller little.
    log.error("rpc.failed", method=method, error=type(exc).__name__, exc_info=exc)
    return grpc.StatusCode.UNAVAILABLE, f"{method} failed on the server; retry later"


class TokenServicer(tokend_pb2_grpc.TokenServiceServicer):
    def __init__(self, authority: TokenAuthority, publisher: JwksPublisher,
                 settings: Settings) -> None:
        self._authority = authority
        self._publisher = publisher
        self._settings = settings

    @rpc("Issue")
    async def Issue(self, request: pb.IssueRequest, context: grpc.aio.ServicerContext
                    ) -> pb.IssueResponse:
        tokens = self._settings.tokens
        ttl = request.ttl.ToTimedelta().total_seconds() if request.HasField("ttl") else None
        spec = policy.AccessTokenSpec(
            subject=policy.check_subject(request.subject),
            audience=policy.check_audience(request.audience, tokens.allowed_audiences),
            scopes=policy.check_scopes(request.scopes),
            claims=policy.check_claims(json_format.MessageToDict(request.claims), tokens),
            ttl=policy.check_ttl(ttl, tokens),
            client_id=caller_identity(context, self._settings.default_client_id),
        )
        result = await self._authority.issue(spec, with_refresh=request.include_refresh_token)
        return _issue_response(result)

    @rpc("Verify")
    async def Verify(self, request: pb.VerifyRequest, context: grpc.aio.ServicerContext
                     ) -> pb.VerifyResponse:
        result = self._authority.verify(request.token, request.audience,
                                        list(request.required_scopes))
        if not result.valid:
            assert result.reason is not None
            # The proto prefixes enum values (REASON_EXPIRED); the Python enum does not.
            reason = pb.Reason.Value("REASON_" + result.reason.name)
            return pb.VerifyResponse(valid=False, reason=reason)
        claims = result.claims or {}
        struct = struct_pb2.Struct()
        struct.update(claims)
        return pb.VerifyResponse(valid=True, claims=struct, subject=claims["sub"],
                                 expires_at=_timestamp(claims["exp"]))

    @rpc("Refresh")
    async def Refresh(self, request: pb.RefreshRequest, context: grpc.aio.ServicerContext
                      ) -> pb.IssueResponse:
        result = await self._authority.refresh(request.refresh_token, list(request.scopes))
        return _issue_response(result)

    @rpc("Revoke")
    async def Revoke(self, request: pb.RevokeRequest, context: grpc.aio.ServicerContext
                     ) -> pb.RevokeResponse:
        target = request.WhichOneof("target")
        authority = self._authority
        actions = {
            "token": authority.revoke_token,
            "jti": authority.revoke_jti,
            "refresh_token": authority.revoke_refresh,
            "subject": authority.revoke_subject,
        }
        if target is None:
            raise BadRequest("name what to revoke: one of token, jti, refresh_token, subject")
        count = await actions[target](getattr(request, target), request.reason or "unspecified")
        return pb.RevokeResponse(revoked=count)

    @rpc("GetJwks")
    async def GetJwks(self, request: pb.GetJwksRequest, context: grpc.aio.ServicerContext
                      ) -> pb.GetJwksResponse:
        return pb.GetJwksResponse(jwks_json=self._publisher.json)


def _issue_response(result: IssueResult) -> pb.IssueResponse:
    response = pb.IssueResponse(
        access_token=result.access.token, token_type="Bearer",  # noqa: S106 (a type name)
        expires_at=_timestamp(result.access.expires_at), jti=result.access.jti,
    )
    if result.refresh_token is not None and result.refresh_expires_at is not None:
        response.refresh_token = result.refresh_token
        response.refresh_expires_at.CopyFrom(_timestamp(result.refresh_expires_at))
    return response


def _timestamp(seconds: float) -> timestamp_pb2.Timestamp:
    stamp = timestamp_pb2.Timestamp()
    stamp.FromDatetime(datetime.fromtimestamp(seconds, UTC))
    return stamp
