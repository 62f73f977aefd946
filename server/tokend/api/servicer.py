"""gRPC TokenService: each handler validates its request (api/requests.py), hands it to
the token layer, and answers (api/responses.py); the `rpc` wrapper admits the call, hands
the handler its CallContext, maps errors to status codes, times and audits."""

from __future__ import annotations

import functools
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, TypeVar

import grpc
import structlog

from tokend import metrics
from tokend.api import errors, requests
from tokend.api.admission import Admission, Refused
from tokend.api.caller_policy import check_exchange, check_spec, refresh_permit
from tokend.api.calls import CallContext
from tokend.api.decoding import MESSAGE as MALFORMED_MESSAGE
from tokend.api.decoding import Malformed, decoder
from tokend.api.errors import MalformedRequest, NotReady
from tokend.api.responses import VerifyAnswers, exchange_response, issue_response, refused
from tokend.api.signals import RejectionWatch
from tokend.api.streams import LiveStreams
from tokend.audit import AuditLog
from tokend.config import Settings
from tokend.keys.publisher import JwksPublisher
from tokend.tokens.authority import TokenAuthority, Verdict
from tokend.tokens.errors import BadRequest
from tokend.tracing import RpcSpan
from tokend_client.v1 import tokend_pb2 as pb
from tokend_client.v1 import tokend_pb2_grpc

if TYPE_CHECKING:
    from opentelemetry.trace import Tracer

log = structlog.get_logger("tokend.api")

Req = TypeVar("Req")
Resp = TypeVar("Resp")
# What a handler gets: the request, gRPC's context, and this call's own CallContext.
Handler = Callable[[Any, Req, grpc.aio.ServicerContext, CallContext], Awaitable[Resp]]
Method = Callable[[Any, Req, grpc.aio.ServicerContext], Awaitable[Resp]]

# Verify and GetJwks are read-only: only rejected Verify calls are audited. A
# WatchRevocations stream discloses revoked subjects: who followed it is recorded.
_AUDITED = frozenset({"Issue", "Refresh", "Revoke", "Exchange", "WatchRevocations"})


def rpc(method: str, *, timed: bool = True
        ) -> Callable[[Handler[Req, Resp]], Method[Req, Resp]]:
    """Admits the call, hands its CallContext to the handler, answers errors with their
    status code and details (api/errors.py), records latency per method and code, writes
    the audit, and (tracing on) makes the call's span (tokend.tracing.RpcSpan).

    Streams pass ``timed=False``: their length is not a latency. A client closing its
    stream (cancellation) is their normal end, not an error.
    """

    def decorate(handler: Handler[Req, Resp]) -> Method[Req, Resp]:
        # Standard gRPC metrics of calls not in tokend_rpc_duration_seconds (metrics.py).
        standard = metrics.token_service(method)

        @functools.wraps(handler)
        async def wrapper(self: TokenServicer, request: Req,
                          context: grpc.aio.ServicerContext) -> Resp:
            started = time.perf_counter()
            if not timed:
                standard.started()
            # Tracing off (the default): this None check is all it costs (tokend.tracing).
            span = None if self._tracer is None else RpcSpan(self._tracer, method, context)
            try:
                call = self._admission.admit(method, context)
            except Refused as refusal:  # audited by admission, not timed: it never ran
                standard.ended(refusal.code, time.perf_counter() - started)
                if span is not None:
                    span.end(refusal.code, None)
                await errors.abort(context, errors.failure_for(refusal, method), method)
                raise  # unreachable: abort raises
            code, message = grpc.StatusCode.OK, None
            try:
                if isinstance(request, Malformed):
                    metrics.MALFORMED_REQUESTS.labels(method).inc()
                    raise MalformedRequest(f"{method}: {MALFORMED_MESSAGE}")
                return await handler(self, request, context, call)
            except Exception as exc:
                failure = errors.failure_for(exc, method)
                code, message = failure.code, failure.message
                call.audit["error_reason"] = failure.reason  # audit line and span
                await errors.abort(context, failure, method)
                raise  # unreachable: abort raises
            finally:
                if timed:
                    metrics.child(metrics.RPC_SECONDS, method, code.name).observe(
                        time.perf_counter() - started)
                else:
                    standard.ended(code, time.perf_counter() - started)
                if span is not None:  # before the audit, which takes "outcome" out
                    span.end(code, call)
                self._audit_call(call, method, code, message)

        return wrapper

    return decorate


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
                 rejections: RejectionWatch, tracer: Tracer | None = None) -> None:
        self._admission = admission
        self._tracer = tracer  # None: tracing off
        self._wired: tuple[TokenAuthority, JwksPublisher] | None = None
        self._live: LiveStreams | None = None
        self._tokens = settings.tokens
        self._audit = audit
        self._rejections = rejections
        self._answers = VerifyAnswers()

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
    async def Issue(self, request: pb.IssueRequest, context: grpc.aio.ServicerContext,
                    call: CallContext) -> pb.IssueResponse:
        spec = requests.issue_spec(request, call, self._tokens)
        check_spec(call.rule, call.client_id, spec)
        result = await self._authority.issue(spec, with_refresh=request.include_refresh_token)
        metrics.child(metrics.ISSUED_BY_CALLER, call.caller_label).inc()
        call.audit.update(subject=spec.subject, audience=list(spec.audience),
                          jti=result.access.jti, refresh=request.include_refresh_token)
        return issue_response(result)

    @rpc("Exchange")
    async def Exchange(self, request: pb.ExchangeRequest, context: grpc.aio.ServicerContext,
                       call: CallContext) -> pb.ExchangeResponse:
        """RFC 8693 token exchange: tokens/exchange.py; policy: check_exchange."""
        ask = requests.exchange_ask(request, call, self._tokens)
        plan = self._authority.plan_exchange(ask)
        spec = plan.spec
        call.audit.update(subject=spec.subject, parent_jti=plan.parent_jti, actor=plan.actor,
                          depth=plan.depth)
        check_exchange(call.rule, call.client_id, source=plan.source, audience=spec.audience,
                       scopes=spec.scopes, depth=plan.depth)
        access = await self._authority.exchange(plan)
        metrics.child(metrics.ISSUED_BY_CALLER, call.caller_label).inc()
        call.audit["jti"] = access.jti
        return exchange_response(access)

    @rpc("Verify")
    async def Verify(self, request: pb.VerifyRequest, context: grpc.aio.ServicerContext,
                     call: CallContext) -> pb.VerifyResponse:
        response, rejected = self._verify(request, self._authority)
        if rejected is not None:  # the call's audit line says so (_audit_call)
            call.audit.update(self._rejection(call, rejected))
        return response

    @rpc("VerifyMany")
    async def VerifyMany(self, request: pb.VerifyManyRequest,
                         context: grpc.aio.ServicerContext, call: CallContext
                         ) -> pb.VerifyManyResponse:
        """Each request answered as Verify would; the request's own INVALID_ARGUMENT
        becomes its `invalid` result (proto: VerifyManyResult), the others unaffected."""
        batch = request.requests
        requests.check_batch_size(len(batch))
        call.audit["batch_size"] = len(batch)  # a span attribute; no audit line of its own
        authority, verify = self._authority, self._verify  # NotReady fails the whole call
        answer = pb.VerifyManyResponse()
        add = answer.results.add
        rejections: list[tuple[int, Verdict]] = []
        for index, item in enumerate(batch):
            try:
                response, rejected = verify(item, authority)
            except BadRequest as exc:
                field, description, reason = errors.field_violation(exc)
                add(invalid=pb.InvalidRequest(field=field, description=description,
                                              reason=reason))
                continue
            # Copied into the answer in place: a result built apart and handed over is
            # copied twice (4x slower per token, measured).
            add().response.CopyFrom(response)
            if rejected is not None:
                rejections.append((index, rejected))
        for index, rejected in rejections:  # once the whole batch has been answered
            self._rejected_in_batch(call, index, rejected)
        return answer

    def _verify(self, request: pb.VerifyRequest, authority: TokenAuthority
                ) -> tuple[pb.VerifyResponse, Verdict | None]:
        """Verify's answer to one request and, when the token is refused, its verdict
        (for the audit); raises BadRequest for a request Verify refuses. Verify and each
        item of VerifyMany run exactly this."""
        result = authority.verify(*requests.verify_query(request, self._tokens))
        if not result.valid:
            assert result.reason is not None
            return refused(result.reason), result
        assert result.entry is not None
        response = self._answers.get(id(result.entry))
        if response is None:  # first time this token verified since it entered the cache
            response = self._answers.add(result.entry)
        return response, None

    def _rejection(self, call: CallContext, verdict: Verdict) -> dict[str, Any]:
        """A refused token, counted by the rejection watch (api/signals.py); returns what
        its audit line says of it."""
        assert verdict.reason is not None
        claims = verdict.claims or {}
        subject = claims.get("sub")
        self._rejections.rejected(call.caller, subject, verdict.reason.name)
        return {"outcome": "rejected", "reason": verdict.reason.name, "subject": subject,
                "jti": claims.get("jti")}

    def _rejected_in_batch(self, call: CallContext, index: int, verdict: Verdict) -> None:
        """One audit line per refused token of a VerifyMany, with the fields of a
        rejected Verify's line and the request's index in the batch."""
        self._audit.emit("rpc.VerifyMany", code="OK", error=None, caller=call.caller,
                         peer=call.peer, request_id=call.request_id, index=index,
                         **self._rejection(call, verdict))

    @rpc("Refresh")
    async def Refresh(self, request: pb.RefreshRequest, context: grpc.aio.ServicerContext,
                      call: CallContext) -> pb.IssueResponse:
        authority = self._authority
        query = requests.refresh_query(request)
        result = await authority.refresh(
            query.refresh_token, query.scopes, client_id=call.client_id,
            permit=functools.partial(refresh_permit, call.rule, call.client_id),
            idempotency_key=query.idempotency_key)
        call.audit.update(subject=result.subject, jti=result.access.jti)
        if result.retried:
            call.audit["retried"] = True  # the same pair handed out a second time
        return issue_response(result)

    @rpc("Revoke")
    async def Revoke(self, request: pb.RevokeRequest, context: grpc.aio.ServicerContext,
                     call: CallContext) -> pb.RevokeResponse:
        authority = self._authority
        actions = {
            "token": authority.revoke_token,
            "jti": authority.revoke_jti,
            "refresh_token": authority.revoke_refresh,
            "subject": authority.revoke_subject,
        }
        spec = requests.revoke_spec(request, call, self._tokens)
        count = await actions[spec.target](spec.value, spec.reason)
        call.audit["revoked"] = count
        return pb.RevokeResponse(revoked=count)

    @rpc("GetJwks")
    async def GetJwks(self, request: pb.GetJwksRequest, context: grpc.aio.ServicerContext,
                      call: CallContext) -> pb.GetJwksResponse:
        return pb.GetJwksResponse(jwks_json=self._publisher.json)

    @rpc("WatchRevocations", timed=False)
    async def WatchRevocations(self, request: pb.WatchRevocationsRequest,
                               context: grpc.aio.ServicerContext, call: CallContext) -> None:
        call.audit["from_sequence"] = request.from_sequence
        await self._streams.revocations.serve(request.from_sequence, context,
                                              caller=call.client_id)

    @rpc("WatchJwks", timed=False)
    async def WatchJwks(self, request: pb.WatchJwksRequest,
                        context: grpc.aio.ServicerContext, call: CallContext) -> None:
        await self._streams.jwks.serve(context, caller=call.client_id)

    def _audit_call(self, call: CallContext, method: str, code: grpc.StatusCode,
                    message: str | None) -> None:
        rejected = call.audit.get("outcome") == "rejected"
        if method not in _AUDITED and not rejected and code is grpc.StatusCode.OK:
            return
        outcome = call.audit.pop("outcome", "ok" if code is grpc.StatusCode.OK else "error")
        self._audit.emit(f"rpc.{method}", outcome=outcome, code=code.name, error=message,
                         caller=call.caller, peer=call.peer, request_id=call.request_id,
                         **call.audit)
