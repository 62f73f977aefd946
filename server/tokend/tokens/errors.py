"""Errors the token layer raises; the gRPC layer maps each to one status code."""


class BadRequest(ValueError):
    """The request itself is wrong; the message tells the caller what to change."""


class RefreshDenied(Exception):
    """The refresh token is unknown, expired, revoked or already spent."""


class SigningUnavailable(Exception):
    """Vault cannot sign right now; Issue and Refresh fail, Verify keeps working."""
