"""Per-call context: who is calling, from where, under which request id, and what to audit."""

from __future__ import annotations

from contextvars import ContextVar
from typing import TYPE_CHECKING, Any

import grpc

from tokend.api.identity import Identity, UnusableCertificate, caller_identity
from tokend.api.policy import CallerPolicy, CallerRule

if TYPE_CHECKING:
    from tokend.api.admission import RequestIds


UNUSABLE = "(unusable client certificate)"  # the audit's name for a caller without identity


class CallContext:
    """Each fact is worked out on first use: a Verify (open to every authenticated caller,
    audited only when refused) usually needs none of them."""

    __slots__ = ("_context", "_default", "_identity", "_ids", "_policy", "_request_id",
                 "audit")

    def __init__(self, context: grpc.aio.ServicerContext, default_identity: str,
                 policy: CallerPolicy, ids: RequestIds) -> None:
        self._context = context
        self._default = default_identity
        self._policy = policy
        self._ids = ids
        self._identity: Identity | None = None
        self._request_id: str | None = None
        # Handlers add what the audit event should say (subject, jti, audience...).
        self.audit: dict[str, Any] = {}

    @property
    def identity(self) -> Identity:
        """Raises UnusableCertificate (admission refuses such callers where it matters)."""
        if self._identity is None:
            self._identity = caller_identity(self._context, self._default)
        return self._identity

    @property
    def client_id(self) -> str:
        """The kind-tagged label recorded in tokens (`client_id`) and refresh families."""
        return self.identity.label

    @property
    def caller(self) -> str:
        """The label for audit lines and signals; never raises."""
        try:
            return self.identity.label
        except UnusableCertificate:
            return UNUSABLE

    @property
    def rule(self) -> CallerRule | None:
        return self._policy.rule_for(self.identity)  # remembered per identity there

    @property
    def peer(self) -> str:
        return str(self._context.peer())

    @property
    def request_id(self) -> str:
        if self._request_id is None:
            self._request_id = self._ids.for_call(self._context)
        return self._request_id

    @property
    def caller_label(self) -> str:
        """A bounded-cardinality name for metrics: the policy entry, not the identity."""
        return self.rule.label if self.rule is not None else self.client_id


current_call: ContextVar[CallContext] = ContextVar("tokend_current_call")
