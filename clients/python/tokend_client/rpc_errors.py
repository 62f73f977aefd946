"""Errors from tokend calls: a gRPC status code and the server's message.

An invalid token on ``verify`` is not an error (it is a result with ``valid=False``);
these are for requests the server refused or could not serve.
"""

from __future__ import annotations

import grpc

__all__ = [
    "InvalidArgumentError",
    "PermissionDeniedError",
    "TokendError",
    "UnauthenticatedError",
    "UnavailableError",
    "error_from_rpc",
    "status_code",
]


class TokendError(Exception):
    """A tokend call failed; ``code`` is the gRPC status, ``message`` the server's text."""

    code: grpc.StatusCode
    message: str

    def __init__(self, code: grpc.StatusCode, message: str) -> None:
        super().__init__(code, message)
        self.code = code
        self.message = message

    def __str__(self) -> str:
        return f"{self.code.name}: {self.message}"

    def __reduce__(self) -> tuple[type[TokendError], tuple[grpc.StatusCode, str]]:
        # Subclasses take the same arguments, so pickling keeps the class and both fields.
        return (type(self), (self.code, self.message))


class InvalidArgumentError(TokendError):
    """The request was malformed or broke a limit; the message says what to change."""


class UnauthenticatedError(TokendError):
    """The refresh token is unknown, expired, revoked or already spent."""


class PermissionDeniedError(TokendError):
    """The caller's identity may not make this request."""


class UnavailableError(TokendError):
    """tokend (or Vault behind it) could not serve the request; retrying later may work."""


_BY_CODE: dict[grpc.StatusCode, type[TokendError]] = {
    grpc.StatusCode.INVALID_ARGUMENT: InvalidArgumentError,
    grpc.StatusCode.UNAUTHENTICATED: UnauthenticatedError,
    grpc.StatusCode.PERMISSION_DENIED: PermissionDeniedError,
    grpc.StatusCode.UNAVAILABLE: UnavailableError,
}


def status_code(error: grpc.RpcError) -> grpc.StatusCode:
    """The status of a failed call (UNKNOWN when the error carries none)."""
    code = getattr(error, "code", None)
    value = code() if callable(code) else None
    return value if isinstance(value, grpc.StatusCode) else grpc.StatusCode.UNKNOWN


def error_from_rpc(error: grpc.RpcError) -> TokendError:
    """The :class:`TokendError` (subclass by status code) for a failed gRPC call."""
    code = status_code(error)
    details = getattr(error, "details", None)
    message = details() if callable(details) else None
    return _BY_CODE.get(code, TokendError)(code, message or code.name.lower())
