"""Admission of every TokenService call: identity, policy, rate limit, request id.

Runs inside each handler's wrapper (servicer.rpc) rather than as a gRPC interceptor: an
aio interceptor costs every call, Health/Check included, a coroutine and a new method
handler. A stream is admitted (or refused) once, when it opens.
"""

from __future__ import annotations

import grpc

from tokend import metrics
from tokend.api.caller_policy import OPEN_RPCS, CallerPolicy
from tokend.api.calls import CallContext, RequestIds
from tokend.api.identity import UnusableCertificate
from tokend.api.ratelimit import RateLimiter
from tokend.audit import AuditLog

# Every RPC that writes: one bucket per caller identity, shared by them all.
RATE_LIMITED_RPCS = frozenset({"Issue", "Refresh", "Revoke", "Exchange"})
# Read-only and answered from memory: no identity is worked out for them unless the audit
# needs one (a rejected Verify), so they cost no certificate lookup.
IDENTITY_FREE_RPCS = frozenset({"Verify", "VerifyMany", "GetJwks"})


class Refused(Exception):
    """The caller may not make this call now: a status for the caller, no audit of the RPC.
    ``reason`` is the ErrorInfo reason (api/errors.py), ``retry_after`` seconds or None."""

    def __init__(self, code: grpc.StatusCode, reason: str, message: str, *,
                 retry_after: float | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.reason = reason
        self.retry_after = retry_after


class Admission:
    def __init__(self, policy: CallerPolicy, limiter: RateLimiter, audit: AuditLog,
                 default_identity: str) -> None:
        self._policy = policy
        self._limiter = limiter
        self._audit = audit
        self._default_identity = default_identity
        self._ids = RequestIds()

    def admit(self, rpc: str, context: grpc.aio.ServicerContext) -> CallContext:
        """The call's context; raises Refused when the policy or the rate limit says no."""
        call = CallContext(context, self._default_identity, self._policy, self._ids)
        if rpc in IDENTITY_FREE_RPCS:
            return call
        self._identify(rpc, call)
        if rpc in OPEN_RPCS:
            return call
        if not self._policy.allows(call.identity, rpc):
            metrics.AUTHZ_DENIED.labels(rpc).inc()
            self._audit.emit("authz.denied", rpc=rpc, caller=call.caller,
                             peer=call.peer, request_id=call.request_id)
            raise Refused(grpc.StatusCode.PERMISSION_DENIED, "CALLER_NOT_ALLOWED",
                          f"caller {call.caller!r} may not call {rpc} "
                          "(not allowed by the policy file)")
        if rpc in RATE_LIMITED_RPCS and not self._within_limit(call):
            metrics.RATE_LIMITED.labels(rpc).inc()
            raise Refused(grpc.StatusCode.RESOURCE_EXHAUSTED, "RATE_LIMITED",
                          f"caller {call.caller!r} exceeded its rate limit for {rpc}; "
                          "retry with backoff", retry_after=self._refill_time(call))
        return call

    def _identify(self, rpc: str, call: CallContext) -> None:
        """A verified certificate that names no trustworthy identity is refused."""
        try:
            call.identity  # noqa: B018 (worked out once, kept by the call)
        except UnusableCertificate as exc:
            metrics.AUTHZ_DENIED.labels(rpc).inc()
            self._audit.emit("authn.refused", rpc=rpc, error=str(exc), peer=call.peer,
                             request_id=call.request_id)
            raise Refused(grpc.StatusCode.UNAUTHENTICATED, "UNUSABLE_CERTIFICATE",
                          str(exc)) from None

    def _within_limit(self, call: CallContext) -> bool:
        limit = call.rule.rate_limit if call.rule is not None else None
        return self._limiter.allow(call.client_id, limit)

    def _refill_time(self, call: CallContext) -> float:
        limit = call.rule.rate_limit if call.rule is not None else None
        return self._limiter.retry_after(call.client_id, limit)
