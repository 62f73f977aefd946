"""Per-call context: who is calling, from where, under which request id, and what to audit."""

from __future__ import annotations

from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any

from tokend.api.policy import CallerRule


@dataclass
class CallContext:
    identity: str
    rule: CallerRule | None
    peer: str
    request_id: str
    # Handlers add what the audit event should say (subject, jti, audience...).
    audit: dict[str, Any] = field(default_factory=dict)

    @property
    def caller_label(self) -> str:
        """A bounded-cardinality name for metrics: the policy entry, not the identity."""
        return self.rule.identity if self.rule is not None else self.identity


current_call: ContextVar[CallContext] = ContextVar("tokend_current_call")
