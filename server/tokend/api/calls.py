"""Per-call context: who is calling, from where, under which request id, and what to audit.

Admission makes one per call; the servicer's wrapper hands it to the handler as an
argument (never through a global), and writes its audit line when the handler is done.
"""

from __future__ import annotations

import itertools
import os
import re
from typing import Any

import grpc

from tokend.api.caller_policy import CallerPolicy, CallerRule
from tokend.api.identity import Identity, UnusableCertificate, caller_identity

UNUSABLE = "(unusable client certificate)"  # the audit's name for a caller without identity
_REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")  # fullmatch: `$` passes a newline


class RequestIds:
    """The caller's `x-request-id` when it is well formed, else one made here.

    Made ids need to be unique, not secret: a random per-process prefix and a counter
    cost nothing, where uuid4 asks the OS for randomness on every call.
    """

    def __init__(self) -> None:
        self._prefix = os.urandom(6).hex()
        self._counter = itertools.count(1)

    def for_call(self, context: grpc.aio.ServicerContext) -> str:
        for key, value in context.invocation_metadata() or ():
            if key == "x-request-id" and isinstance(value, str) and _REQUEST_ID.fullmatch(value):
                return value
        return f"{self._prefix}{next(self._counter):010x}"


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
    def client_certificate_pem(self) -> bytes | None:
        """The verified client certificate of this connection (PEM), or None."""
        pem = self._context.auth_context().get("x509_pem_cert")
        return pem[0] if pem else None

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
