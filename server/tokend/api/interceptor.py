"""Runs before every TokenService handler: identity, policy, rate limit, request id.

Unary calls and the server-streaming Watch RPCs alike: a stream is admitted (or refused)
once, when it opens.
"""

from __future__ import annotations

import itertools
import os
import re
from collections.abc import Awaitable, Callable
from typing import Any

import grpc

from tokend import metrics
from tokend.api.calls import CallContext, current_call
from tokend.api.identity import caller_identity
from tokend.api.policy import CallerPolicy
from tokend.api.ratelimit import RateLimiter
from tokend.audit import AuditLog

SERVICE_PREFIX = "/tokend.v1.TokenService/"
RATE_LIMITED_RPCS = frozenset({"Issue", "Refresh"})
_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")

# Request ids need to be unique, not secret: a random per-process prefix and a counter
# cost nothing, where uuid4 asks the OS for randomness on every call.
_ID_PREFIX = os.urandom(6).hex()
_ID_COUNTER = itertools.count(1)


def next_request_id() -> str:
    return f"{_ID_PREFIX}{next(_ID_COUNTER):010x}"


Behaviour = Callable[[Any, grpc.aio.ServicerContext], Awaitable[Any]]


class CallerInterceptor(grpc.aio.ServerInterceptor):
    def __init__(self, policy: CallerPolicy, limiter: RateLimiter, audit: AuditLog,
                 default_identity: str) -> None:
        self._policy = policy
        self._limiter = limiter
        self._audit = audit
        self._default_identity = default_identity

    async def intercept_service(
        self, continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        handler = await continuation(handler_call_details)
        method = handler_call_details.method
        if handler is None or not method.startswith(SERVICE_PREFIX):
            return handler
        if handler.unary_unary:
            inner, wrap = handler.unary_unary, grpc.unary_unary_rpc_method_handler
        elif handler.unary_stream:
            inner, wrap = handler.unary_stream, grpc.unary_stream_rpc_method_handler
        else:
            return handler
        rpc = method.removeprefix(SERVICE_PREFIX)
        metadata = dict(handler_call_details.invocation_metadata or ())
        guarded = self._guard(rpc, inner, metadata.get("x-request-id"))
        return wrap(guarded, request_deserializer=handler.request_deserializer,
                    response_serializer=handler.response_serializer)

    def _guard(self, rpc: str, inner: Behaviour, request_id: Any) -> Behaviour:
        # Streaming handlers are coroutines writing with context.write (not async
        # generators), so one wrapper serves both kinds.
        async def behaviour(request: Any, context: grpc.aio.ServicerContext) -> Any:
            call = self._call_context(context, request_id)
            current_call.set(call)
            if not self._policy.allows(call.identity, rpc):
                metrics.AUTHZ_DENIED.labels(rpc).inc()
                self._audit.emit("authz.denied", rpc=rpc, caller=call.identity,
                                 peer=call.peer, request_id=call.request_id)
                await context.abort(grpc.StatusCode.PERMISSION_DENIED,
                                    f"caller {call.identity!r} may not call {rpc} "
                                    "(not allowed by the policy file)")
            if rpc in RATE_LIMITED_RPCS and not self._within_limit(call):
                metrics.RATE_LIMITED.labels(rpc).inc()
                await context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED,
                                    f"caller {call.identity!r} exceeded its rate limit for "
                                    f"{rpc}; retry with backoff")
            return await inner(request, context)

        return behaviour

    def _call_context(self, context: grpc.aio.ServicerContext, request_id: Any) -> CallContext:
        identity = caller_identity(context, self._default_identity)
        if not (isinstance(request_id, str) and _REQUEST_ID.match(request_id)):
            request_id = next_request_id()
        return CallContext(identity=identity, rule=self._policy.rule_for(identity),
                           peer=context.peer(), request_id=request_id)

    def _within_limit(self, call: CallContext) -> bool:
        limit = call.rule.rate_limit if call.rule is not None else None
        return self._limiter.allow(call.identity, limit)
