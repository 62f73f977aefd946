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
from tokend.api.decoding import MESSAGE as MALFORMED_MESSAGE
from tokend.api.decoding import Malformed, decoder
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
from tokend.store import InvalidValue, StoreError
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
    (InvalidValue, grpc.StatusCode.INVALID_ARGUMENT),
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
                if isinstance(request, Malformed):
                    metrics.MALFORMED_REQUESTS.labels(method).inc()
                    raise BadRequest(f"{method}: {MALFORMED_MESSAGE}")
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
    # Unknown failures are bugs, not outages: a retry would meet the same bug, so not
    # UNAVAILABLE. The log has the detail; the caller learns nothing of the internals.
    log.error("rpc.failed", method=method, error=type(exc).__name__, exc_info=exc)
    return grpc.StatusCode.INTERNAL, f"{method} failed on the server (an internal error)"


def add_to_server(servicer: TokenServicer, server: grpc.aio.Server) -> None:
    """`add_TokenServiceServicer_to_server`, with request decoding that reports a
    malformed message as INVALID_ARGUMENT after admission (api/decoding.py)."""
    service = pb.DESCRIPTOR.services_by_name["TokenService"]
    handlers = {}
    for method in service.methods:
        make = (grpc.unary_stream_rpc_method_handler if method.server_streaming
                else grpc.unary_unary_rpc_method_handler)
        handlers[method.name] = make(
            getattr(servicer, method.name),
            request_deserializer=decoder(getattr(pb, method.input_type.name).FromString),
            response_serializer=getattr(pb, method.output_type.name).SerializeToString,
        )
    server.add_generic_rpc_handlers(
        (grpc.method_handlers_generic_handler(service.full_name, handlers),))
    server.add_registered_method_handlers(service.full_name, handlers)


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
        # Audited once checked, never before: a refused value may be a secret.
        call.audit["subject"] = subject = policy.check_subject(request.subject)
        audience = policy.check_audience(request.audience, tokens.allowed_audiences)
        call.audit["audience"] = list(audience)
        ttl = _ttl_of(request)
        spec = policy.AccessTokenSpec(
            subject=subject,
            audience=audience,
            scopes=policy.check_scopes(request.scopes),
            claims=policy.check_claims(_claims_of(request), tokens),
            ttl=_caller_default_ttl(policy.check_ttl(ttl, tokens), ttl, call),
            client_id=call.client_id,
        )
        check_issue(call.rule, call.client_id, subject=spec.subject, audience=spec.audience,
                    scopes=spec.scopes, ttl=spec.ttl, claims=spec.claims.keys())
        return spec

    @rpc("Verify")
    async def Verify(self, request: pb.VerifyRequest, context: grpc.aio.ServicerContext
                     ) -> pb.VerifyResponse:
        _check_verify_names(request)
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
        self._rejections.rejected(call.caller, subject, reason)

    @rpc("Refresh")
    async def Refresh(self, request: pb.RefreshRequest, context: grpc.aio.ServicerContext
                      ) -> pb.IssueResponse:
        call = current_call.get()
        result = await self._authority.refresh(
            request.refresh_token, list(request.scopes), client_id=call.client_id,
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
        call.audit["target"] = target
        # Checked before anything is audited, logged or stored: a refused value may be a
        # secret pasted into the wrong field (a refresh token as a jti).
        policy.check_reason(request.reason)
        if target == "jti":
            policy.check_jti(request.jti)
        elif target == "subject":
            policy.check_subject(request.subject)
        call.audit["reason"] = request.reason or None
        if target in ("jti", "subject"):
            call.audit[target] = getattr(request, target)
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
        call = current_call.get()
        call.audit["from_sequence"] = request.from_sequence
        await self._streams.revocations.serve(request.from_sequence, context,
                                              caller=call.client_id)

    @rpc("WatchJwks", timed=False)
    async def WatchJwks(self, request: pb.WatchJwksRequest,
                        context: grpc.aio.ServicerContext) -> None:
        await self._streams.jwks.serve(context, caller=current_call.get().client_id)

    def _audit_call(self, call: CallContext, method: str, code: grpc.StatusCode,
                    message: str | None) -> None:
        rejected = call.audit.get("outcome") == "rejected"
        if method not in _AUDITED and not rejected and code is grpc.StatusCode.OK:
            return
        outcome = call.audit.pop("outcome", "ok" if code is grpc.StatusCode.OK else "error")
        self._audit.emit(f"rpc.{method}", outcome=outcome, code=code.name, error=message,
                         caller=call.caller, peer=call.peer, request_id=call.request_id,
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
    (docs/policy.md): the ttl is narrowed to the entry's max_ttl; a subject, audience,
    scope or custom claim the entry no longer grants is refused (the caller may narrow
    scopes)."""
    rule = call.rule
    if rule is None:  # the development allow-all policy
        return spec
    if rule.issue is None:
        raise PolicyDenied(f"caller {call.client_id!r} may not mint tokens any more "
                           "(its policy entry has no issue: section)")
    if rule.issue.max_ttl is not None and spec.ttl > rule.issue.max_ttl:
        spec = dataclasses.replace(spec, ttl=int(rule.issue.max_ttl))
    check_issue(rule, call.client_id, subject=spec.subject, audience=spec.audience,
                scopes=spec.scopes, ttl=spec.ttl, claims=spec.claims.keys())
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
    if not request.HasField("claims"):
        return {}
    try:
        return json_format.MessageToDict(request.claims)
    except ValueError:  # "Fail to serialize NaN/Infinity for Value.number_value"
        raise BadRequest("custom claims cannot hold NaN or infinity") from None


# google/protobuf/duration.proto: seconds within ±10,000 years, nanos with the same sign.
_MAX_DURATION_SECONDS = 315_576_000_000


def _ttl_of(request: pb.IssueRequest) -> float | None:
    """The requested ttl in seconds; Duration.ToTimedelta overflows on large values."""
    if not request.HasField("ttl"):
        return None
    seconds, nanos = request.ttl.seconds, request.ttl.nanos
    if (abs(seconds) > _MAX_DURATION_SECONDS or abs(nanos) > 999_999_999
            or (seconds and nanos and (seconds < 0) != (nanos < 0))):
        raise BadRequest("ttl is not a valid google.protobuf.Duration")
    return seconds + nanos / 1e9


def _check_verify_names(request: pb.VerifyRequest) -> None:
    # The token itself is judged by Verify (a malformed one is an answer, not an error).
    if policy.has_control(request.audience):
        raise BadRequest("audience cannot hold control characters")
    if request.required_scopes:
        policy.check_scopes(request.required_scopes)  # the rules of the scopes it names


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
