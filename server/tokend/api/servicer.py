"""gRPC TokenService: translates protobuf to the token layer and errors to status codes."""

from __future__ import annotations

import dataclasses
import functools
import math
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import grpc
import structlog
from google.protobuf import json_format, timestamp_pb2

from tokend import metrics
from tokend.api.admission import Admission, Refused
from tokend.api.calls import CallContext, current_call
from tokend.api.policy import PolicyDenied, check_issue
from tokend.api.signals import RejectionWatch
from tokend.api.streams import (
    LiveStreams,
    ResumeAhead,
    SlowSubscriber,
    StreamEnded,
    TooManySubscribers,
)
from tokend.audit import AuditLog
from tokend.config import Settings
from tokend.keys.publisher import JwksPublisher
from tokend.store import StoreError
from tokend.tokens import policy
from tokend.tokens.authority import IssueResult, TokenAuthority
from tokend.tokens.errors import BadRequest, RefreshDenied, Unavailable
from tokend_client.v1 import tokend_pb2 as pb
from tokend_client.v1 import tokend_pb2_grpc

log = structlog.get_logger("tokend.api")

Req = TypeVar("Req")
Resp = TypeVar("Resp")
Handler = Callable[[Any, Req, grpc.aio.ServicerContext], Awaitable[Resp]]

class NotReady(Exception):
    """Keys or store are not loaded yet (start-up is waiting for Vault)."""


_STATUS: tuple[tuple[type[Exception], grpc.StatusCode], ...] = (
    (NotReady, grpc.StatusCode.UNAVAILABLE),
    (BadRequest, grpc.StatusCode.INVALID_ARGUMENT),
    (PolicyDenied, grpc.StatusCode.PERMISSION_DENIED),
    (RefreshDenied, grpc.StatusCode.UNAUTHENTICATED),
    (Unavailable, grpc.StatusCode.UNAVAILABLE),
    (SlowSubscriber, grpc.StatusCode.RESOURCE_EXHAUSTED),
    (TooManySubscribers, grpc.StatusCode.RESOURCE_EXHAUSTED),
    (ResumeAhead, grpc.StatusCode.FAILED_PRECONDITION),
    (StreamEnded, grpc.StatusCode.UNAVAILABLE),
)
# Verify and GetJwks are read-only: only rejected Verify calls are audited. A
# WatchRevocations stream discloses revoked subjects: who followed it is recorded.
_AUDITED = frozenset({"Issue", "Refresh", "Revoke", "WatchRevocations"})


def rpc(method: str, *, timed: bool = True
        ) -> Callable[[Handler[Req, Resp]], Handler[Req, Resp]]:
    """Admits the call, maps errors to status codes, records latency per method and
    code, writes the audit.

    Streams pass ``timed=False``: their length is not a latency. A client closing its
    stream (cancellation) is their normal end, not an error.
    """

    def decorate(handler: Handler[Req, Resp]) -> Handler[Req, Resp]:
        @functools.wraps(handler)
        async def wrapper(self: TokenServicer, request: Req,
                          context: grpc.aio.ServicerContext) -> Resp:
            started = time.perf_counter()
            try:
                call = self._admission.admit(method, context)
            except Refused as refusal:  # audited by admission, not timed: it never ran
                await context.abort(refusal.code, str(refusal))
                raise  # unreachable: abort raises
            current_call.set(call)
            code, message = grpc.StatusCode.OK, None
            try:
                return await handler(self, request, context)
            except Exception as exc:
                code, message = _status_for(exc, method)
                await context.abort(code, message)
                raise  # unreachable: abort raises
            finally:
                if timed:
                    metrics.child(metrics.RPC_SECONDS, method, code.name).observe(
                        time.perf_counter() - started)
                self._audit_call(call, method, code, message)

        return wrapper

    return decorate


def _status_for(exc: Exception, method: str) -> tuple[grpc.StatusCode, str]:
    for kind, code in _STATUS:
        if isinstance(exc, kind):
            return code, str(exc)
    if isinstance(exc, StoreError):
        # The detail may name database hosts: the log has it, the caller does not.
        log.warning("rpc.store_unavailable", method=method, error=str(exc))
        return grpc.StatusCode.UNAVAILABLE, (
            f"{method} failed: tokend's store (database) is unavailable; retry later")
    # Unknown failures (bugs): log the detail, tell the caller little.
    log.error("rpc.failed", method=method, error=type(exc).__name__, exc_info=exc)
    return grpc.StatusCode.UNAVAILABLE, f"{method} failed on the server; retry later"


class TokenServicer(tokend_pb2_grpc.TokenServiceServicer):
    def __init__(self, settings: Settings, admission: Admission, audit: AuditLog,
                 rejections: RejectionWatch) -> None:
        self._admission = admission
        self._wired: tuple[TokenAuthority, JwksPublisher] | None = None
        self._live: LiveStreams | None = None
        self._settings = settings
        self._audit = audit
        self._rejections = rejections

    def attach(self, authority: TokenAuthority, publisher: JwksPublisher,
               streams: LiveStreams | None = None) -> None:
        """Called once keys and store are loaded; until then every RPC is UNAVAILABLE."""
        self._live = streams
        self._wired = (authority, publisher)

    @property
    def _authority(self) -> TokenAuthority:
        if self._wired is None:
            raise NotReady("tokend is starting: signing keys are not loaded yet; retry")
        return self._wired[0]

    @property
    def _publisher(self) -> JwksPublisher:
        self._authority  # noqa: B018 (raises NotReady until wired)
        assert self._wired is not None
        return self._wired[1]

    @property
    def _streams(self) -> LiveStreams:
        self._authority  # noqa: B018 (raises NotReady until wired)
        if self._live is None:
            raise NotReady("live streams are not enabled on this server")
        return self._live

    @rpc("Issue")
    async def Issue(self, request: pb.IssueRequest, context: grpc.aio.ServicerContext
                    ) -> pb.IssueResponse:
        call = current_call.get()
        spec = self._issue_spec(request, call)
        result = await self._authority.issue(spec, with_refresh=request.include_refresh_token)
        metrics.child(metrics.ISSUED_BY_CALLER, call.caller_label).inc()
        call.audit.update(subject=spec.subject, audience=list(spec.audience),
                          jti=result.access.jti, refresh=request.include_refresh_token)
        return _issue_response(result)

    def _issue_spec(self, request: pb.IssueRequest, call: CallContext) -> policy.AccessTokenSpec:
        tokens = self._settings.tokens
        call.audit.update(subject=request.subject[:256], audience=list(request.audience)[:16])
        ttl = request.ttl.ToTimedelta().total_seconds() if request.HasField("ttl") else None
        spec = policy.AccessTokenSpec(
            subject=policy.check_subject(request.subject),
            audience=policy.check_audience(request.audience, tokens.allowed_audiences),
            scopes=policy.check_scopes(request.scopes),
            claims=policy.check_claims(_claims_of(request), tokens),
            ttl=_caller_default_ttl(policy.check_ttl(ttl, tokens), ttl, call),
            client_id=call.identity,
        )
        check_issue(call.rule, call.identity, audience=spec.audience, scopes=spec.scopes,
                    ttl=spec.ttl, claims=spec.claims.keys())
        return spec

    @rpc("Verify")
    async def Verify(self, request: pb.VerifyRequest, context: grpc.aio.ServicerContext
                     ) -> pb.VerifyResponse:
        result = self._authority.verify(request.token, request.audience,
                                        request.required_scopes)
        if not result.valid:
            assert result.reason is not None
            self._rejected(result.reason.name, result.claims)
            # The proto prefixes enum values (REASON_EXPIRED); the Python enum does not.
            reason = pb.Reason.Value("REASON_" + result.reason.name)
            return pb.VerifyResponse(valid=False, reason=reason)
        assert result.claims is not None and result.views is not None
        response = result.views.get("grpc")
        if response is None:  # first time this token verified: its answer is kept with it
            response = result.views["grpc"] = _verify_response(result.claims)
        return response

    def _rejected(self, reason: str, claims: dict[str, Any] | None) -> None:
        call = current_call.get()
        subject = claims.get("sub") if claims else None
        call.audit.update(outcome="rejected", reason=reason, subject=subject,
                          jti=claims.get("jti") if claims else None)
        self._rejections.rejected(call.identity, subject, reason)

    @rpc("Refresh")
    async def Refresh(self, request: pb.RefreshRequest, context: grpc.aio.ServicerContext
                      ) -> pb.IssueResponse:
        call = current_call.get()
        result = await self._authority.refresh(
            request.refresh_token, list(request.scopes), client_id=call.identity,
            permit=functools.partial(_refresh_permit, call),
            idempotency_key=request.idempotency_key)
        call.audit.update(subject=result.subject, jti=result.access.jti)
        if result.retried:
            call.audit["retried"] = True  # the same pair handed out a second time
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
        call = current_call.get()
        call.audit.update(target=target, reason=request.reason[:256] or None)
        if target in ("jti", "subject"):
            call.audit[target] = getattr(request, target)[:256]
        count = await actions[target](getattr(request, target), request.reason or "unspecified")
        call.audit["revoked"] = count
        return pb.RevokeResponse(revoked=count)

    @rpc("GetJwks")
    async def GetJwks(self, request: pb.GetJwksRequest, context: grpc.aio.ServicerContext
                      ) -> pb.GetJwksResponse:
        return pb.GetJwksResponse(jwks_json=self._publisher.json)

    @rpc("WatchRevocations", timed=False)
    async def WatchRevocations(self, request: pb.WatchRevocationsRequest,
                               context: grpc.aio.ServicerContext) -> None:
        current_call.get().audit["from_sequence"] = request.from_sequence
        await self._streams.revocations.serve(request.from_sequence, context)

    @rpc("WatchJwks", timed=False)
    async def WatchJwks(self, request: pb.WatchJwksRequest,
                        context: grpc.aio.ServicerContext) -> None:
        await self._streams.jwks.serve(context)

    def _audit_call(self, call: CallContext, method: str, code: grpc.StatusCode,
                    message: str | None) -> None:
        rejected = call.audit.get("outcome") == "rejected"
        if method not in _AUDITED and not rejected and code is grpc.StatusCode.OK:
            return
        outcome = call.audit.pop("outcome", "ok" if code is grpc.StatusCode.OK else "error")
        self._audit.emit(f"rpc.{method}", outcome=outcome, code=code.name, error=message,
                         caller=call.identity, peer=call.peer, request_id=call.request_id,
                         **call.audit)


def _caller_default_ttl(ttl: int, requested: float | None, call: CallContext) -> int:
    """An unset ttl means the default, capped by the caller's own maximum."""
    rules = call.rule.issue if call.rule is not None else None
    if requested is None and rules is not None and rules.max_ttl is not None:
        return min(ttl, int(rules.max_ttl))
    return ttl


def _refresh_permit(call: CallContext, spec: policy.AccessTokenSpec
                    ) -> policy.AccessTokenSpec:
    """A Refresh obeys the caller's policy entry as it is now, not as it was at Issue
    (docs/policy.md): the ttl is narrowed to the entry's max_ttl; an audience, scope or
    custom claim the entry no longer grants is refused (the caller may narrow scopes)."""
    rule = call.rule
    if rule is None:  # the development allow-all policy
        return spec
    if rule.issue is None:
        raise PolicyDenied(f"caller {call.identity!r} may not mint tokens any more "
                           "(its policy entry has no issue: section)")
    if rule.issue.max_ttl is not None and spec.ttl > rule.issue.max_ttl:
        spec = dataclasses.replace(spec, ttl=int(rule.issue.max_ttl))
    check_issue(rule, call.identity, audience=spec.audience, scopes=spec.scopes,
                ttl=spec.ttl, claims=spec.claims.keys())
    return spec


def _issue_response(result: IssueResult) -> pb.IssueResponse:
    response = pb.IssueResponse(
        access_token=result.access.token, token_type="Bearer",  # noqa: S106 (a type name)
        jti=result.access.jti,
    )
    _set_timestamp(response.expires_at, result.access.expires_at)
    if result.refresh_token is not None and result.refresh_expires_at is not None:
        response.refresh_token = result.refresh_token
        _set_timestamp(response.refresh_expires_at, result.refresh_expires_at)
    return response


def _claims_of(request: pb.IssueRequest) -> dict[str, Any]:
    return json_format.MessageToDict(request.claims) if request.HasField("claims") else {}


def _verify_response(claims: dict[str, Any]) -> pb.VerifyResponse:
    # Filled in place: building a Struct apart and handing it over copies it (3x slower).
    response = pb.VerifyResponse(valid=True, subject=claims["sub"])
    response.claims.update(claims)
    _set_timestamp(response.expires_at, claims["exp"])
    return response


def _set_timestamp(field: timestamp_pb2.Timestamp, seconds: float) -> None:
    # Directly, not through datetime: this runs on every Verify and Issue answer.
    whole = math.floor(seconds)
    field.seconds = whole
    field.nanos = int((seconds - whole) * 1e9)
