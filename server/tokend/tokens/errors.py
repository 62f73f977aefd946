"""Errors the token layer raises; the gRPC layer (api/errors.py) maps each to one status
code and one stable ErrorInfo reason (docs/errors.md)."""

from __future__ import annotations


class BadRequest(ValueError):
    """The request itself is wrong; the message tells the caller what to change.

    ``field`` is the request field at fault, as the proto names it ("subject",
    "audience", "required_scopes"...): the caller sees it in a BadRequest.FieldViolation
    and api/errors.py picks the reason from it (INVALID_SUBJECT...). None: the request
    as a whole."""

    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


class RefreshDenied(Exception):
    """The refresh token is unknown, expired, revoked or already spent. ``reused``: it
    was spent and presented again, and its family has just been revoked for it."""

    def __init__(self, message: str, *, reused: bool = False) -> None:
        super().__init__(message)
        self.reused = reused


class Unavailable(Exception):
    """A dependency is down; the caller may retry. The message says which;
    ``retry_after`` (seconds), when known, is when a retry may succeed."""

    def __init__(self, message: str, *, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class SigningUnavailable(Unavailable):
    """Vault cannot sign right now; Issue and Refresh fail, Verify keeps working."""


class RevocationsStale(Unavailable):
    """Verify fails closed: the denylist has not synced within the configured limit."""
