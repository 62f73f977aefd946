"""The `act` (actor) claim of delegated tokens (RFC 8693 §4.1) and the delegation option.

A token obtained by token exchange names who acts on the subject's behalf in ``act``:
``{"sub": "payments-caller", "act": {"sub": "orders"}}`` means payments-caller acts for
the subject, having received the token from orders, which acted first. The rules are
docs/verifier-contract.md section "A. Delegation (act)"; every local verifier applies
them the same way.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

from .errors import InvalidToken, Reason

__all__ = ["DELEGATION_OPTIONS", "MAX_ACT_DEPTH", "Delegation", "actors", "check_delegation"]

# Rule A1: at most this many nested act objects. tokend's own policy cannot allow more.
MAX_ACT_DEPTH = 8
Delegation = Literal["any", "required", "refused"]
DELEGATION_OPTIONS: frozenset[str] = frozenset({"any", "required", "refused"})


def actors(claims: Mapping[str, Any]) -> list[str]:
    """The actor chain of verified claims, the current actor (outermost ``act``) first;
    empty for a direct (not delegated) token. Raises InvalidToken(MALFORMED) for an
    ``act`` that breaks rule A1 (a verifier has refused such a token already)."""
    chain: list[str] = []
    act = claims.get("act", _ABSENT) if isinstance(claims, Mapping) else _ABSENT
    while act is not _ABSENT:
        # RFC 8693 §4.1: the value of act is a JSON object naming the actor by `sub`.
        if not isinstance(act, dict):
            raise InvalidToken(Reason.MALFORMED, "claim act is not a JSON object")
        sub = act.get("sub")
        if not isinstance(sub, str) or not sub:
            raise InvalidToken(Reason.MALFORMED, "an act object lacks a non-empty string sub")
        chain.append(sub)
        if len(chain) > MAX_ACT_DEPTH:
            raise InvalidToken(Reason.MALFORMED,
                               f"claim act is nested deeper than {MAX_ACT_DEPTH}")
        act = act.get("act", _ABSENT)
    return chain


def check_delegation(claims: Mapping[str, Any], delegation: str) -> None:
    """Rules A1 (act shape, MALFORMED) then A2 (the delegation option, DELEGATION)."""
    delegated = bool(actors(claims)) if "act" in claims else False
    if delegation == "required" and not delegated:
        raise InvalidToken(Reason.DELEGATION, "only delegated tokens (with act) are accepted")
    if delegation == "refused" and delegated:
        raise InvalidToken(Reason.DELEGATION, "delegated tokens (with act) are refused here")


def delegation_option(value: object) -> str:
    if not isinstance(value, str) or value not in DELEGATION_OPTIONS:
        raise ValueError("delegation must be one of 'any', 'required', 'refused'")
    return value


_ABSENT: Any = object()
