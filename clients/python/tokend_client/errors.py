"""Why a token was refused.

Every rejection by :func:`tokend_client.jose.verify_compact` and
:class:`tokend_client.verifier.LocalVerifier` is an :class:`InvalidToken` carrying a
machine-readable :class:`Reason` and a message for people. Messages name the rule that
failed and never contain the token or values copied from it, so they are safe to log.
"""

from __future__ import annotations

import enum
from typing import Any

__all__ = ["InvalidToken", "Reason"]


class Reason(str, enum.Enum):  # noqa: UP042 - the public contract is a str-mixin Enum
    """Machine-readable rejection reason; each value equals its name."""

    MALFORMED = "MALFORMED"
    TOO_LARGE = "TOO_LARGE"
    BAD_SIGNATURE = "BAD_SIGNATURE"
    UNKNOWN_KEY = "UNKNOWN_KEY"
    DISALLOWED_ALGORITHM = "DISALLOWED_ALGORITHM"
    WRONG_TYPE = "WRONG_TYPE"
    MISSING_CLAIM = "MISSING_CLAIM"
    EXPIRED = "EXPIRED"
    NOT_YET_VALID = "NOT_YET_VALID"
    ISSUED_IN_FUTURE = "ISSUED_IN_FUTURE"
    LIFETIME_TOO_LONG = "LIFETIME_TOO_LONG"
    WRONG_AUDIENCE = "WRONG_AUDIENCE"
    WRONG_ISSUER = "WRONG_ISSUER"
    MISSING_SCOPE = "MISSING_SCOPE"
    REVOKED = "REVOKED"
    CERTIFICATE_MISMATCH = "CERTIFICATE_MISMATCH"
    DELEGATION = "DELEGATION"


_DEFAULT_MESSAGES: dict[Reason, str] = {
    Reason.MALFORMED: "token is malformed",
    Reason.TOO_LARGE: "token is too large",
    Reason.BAD_SIGNATURE: "token signature does not verify",
    Reason.UNKNOWN_KEY: "token names no known key",
    Reason.DISALLOWED_ALGORITHM: "token algorithm is not allowed",
    Reason.WRONG_TYPE: "token has the wrong type",
    Reason.MISSING_CLAIM: "token lacks a required claim",
    Reason.EXPIRED: "token has expired",
    Reason.NOT_YET_VALID: "token is not yet valid",
    Reason.ISSUED_IN_FUTURE: "token was issued in the future",
    Reason.LIFETIME_TOO_LONG: "token lifetime exceeds the allowed maximum",
    Reason.WRONG_AUDIENCE: "token is not meant for this audience",
    Reason.WRONG_ISSUER: "token comes from an unexpected issuer",
    Reason.MISSING_SCOPE: "token lacks a required scope",
    Reason.REVOKED: "token has been revoked",
    Reason.CERTIFICATE_MISMATCH: "token is bound to another certificate",
    Reason.DELEGATION: "token delegation is not accepted here",
}


class InvalidToken(Exception):
    """A token was refused; ``reason`` says why, ``str(exc)`` says it for people.

    ``claims``: for a token refused after its signature verified (expired, wrong
    audience, missing scope, ...), the claims :class:`~tokend_client.LocalVerifier`
    authenticated, e.g. to record whose token was refused; None otherwise, and always
    None when the signature did not verify (then nothing in the token can be believed).
    The token was refused: never grant anything on these claims. Not part of
    ``str(exc)`` or ``repr(exc)``.
    """

    reason: Reason
    claims: dict[str, Any] | None = None

    def __init__(self, reason: Reason | str, message: str | None = None) -> None:
        self.reason = Reason(reason)
        super().__init__(message or _DEFAULT_MESSAGES[self.reason])

    def __reduce__(self) -> tuple[Any, ...]:
        # Keep reason, message and claims across pickling (e.g. multiprocessing workers).
        arguments = (self.reason, str(self))
        if self.claims is None:
            return (type(self), arguments)
        return (type(self), arguments, {"claims": self.claims})

    def __repr__(self) -> str:
        return f"InvalidToken({self.reason.value!r}, {str(self)!r})"
