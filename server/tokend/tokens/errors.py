"""Errors the token layer raises; the gRPC layer maps each to one status code."""


class BadRequest(ValueError):
    """The request itself is wrong; the message tells the caller what to change."""


class RefreshDenied(Exception):
    """The refresh token is unknown, expired, revoked or already spent."""


class Unavailable(Exception):
    """A dependency is down; the caller may retry. The message says which."""


class SigningUnavailable(Unavailable):
    """Vault cannot sign right now; Issue and Refresh fail, Verify keeps working."""


class RevocationsStale(Unavailable):
    """Verify fails closed: the denylist has not synced within the configured limit."""
