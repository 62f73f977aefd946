"""Errors from tokend calls: a gRPC status code, the server's message and its
machine-readable details (google.rpc.Status in the grpc-status-details-bin trailer).

Match on ``reason`` (stable, UPPER_SNAKE, listed in docs/errors.md), never on the message:

    try:
        client.issue("alice", "orders")
    except TokendError as exc:
        if exc.reason == "RATE_LIMITED":
            time.sleep(exc.retry_delay or 1)

An invalid token on ``verify`` is not an error (it is a result with ``valid=False``);
these are for requests the server refused or could not serve.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import grpc
from google.protobuf.message import DecodeError
from google.rpc import error_details_pb2, status_pb2

__all__ = [
    "DOMAIN",
    "FieldViolation",
    "InvalidArgumentError",
    "PermissionDeniedError",
    "ResourceExhaustedError",
    "TokendError",
    "UnauthenticatedError",
    "UnavailableError",
    "error_from_rpc",
    "status_code",
]

# ErrorInfo.domain of every error tokend itself answers (docs/errors.md).
DOMAIN = "tokend.dev"
_DETAILS_KEY = "grpc-status-details-bin"


@dataclass(frozen=True)
class FieldViolation:
    """One request field at fault (google.rpc.BadRequest.FieldViolation)."""

    field: str  # as the proto names it: "subject", "audience", "required_scopes"...
    description: str


class TokendError(Exception):
    """A tokend call failed.

    ``code`` is the gRPC status, ``message`` the server's text (for people). The details,
    empty when the server sent none (e.g. a proxy answered, or the connection failed):
    ``reason`` the stable ErrorInfo reason ("" if none), ``domain`` its domain
    ("tokend.dev"), ``metadata`` the ErrorInfo metadata (never a secret),
    ``field_violations`` for INVALID_ARGUMENT, ``retry_delay`` in seconds (RetryInfo)
    when a retry after it may succeed, else None.
    """

    code: grpc.StatusCode
    message: str
    reason: str
    domain: str
    metadata: Mapping[str, str]
    field_violations: tuple[FieldViolation, ...]
    retry_delay: float | None

    def __init__(self, code: grpc.StatusCode, message: str, *, reason: str = "",
                 domain: str = "", metadata: Mapping[str, str] | None = None,
                 field_violations: tuple[FieldViolation, ...] = (),
                 retry_delay: float | None = None) -> None:
        super().__init__(code, message)
        self.code = code
        self.message = message
        self.reason = reason
        self.domain = domain
        self.metadata = dict(metadata or {})
        self.field_violations = tuple(field_violations)
        self.retry_delay = retry_delay

    def __str__(self) -> str:
        if self.reason:
            return f"{self.code.name} ({self.reason}): {self.message}"
        return f"{self.code.name}: {self.message}"

    def __reduce__(self) -> tuple[Any, ...]:
        # Subclasses take the same arguments, so pickling keeps the class and every field.
        return (_rebuild, (type(self), self.code, self.message, self._details()))

    def _details(self) -> dict[str, Any]:
        return {"reason": self.reason, "domain": self.domain, "metadata": self.metadata,
                "field_violations": self.field_violations, "retry_delay": self.retry_delay}


def _rebuild(kind: type[TokendError], code: grpc.StatusCode, message: str,
             details: dict[str, Any]) -> TokendError:
    return kind(code, message, **details)


class InvalidArgumentError(TokendError):
    """The request was malformed or broke a limit; ``field_violations`` says which
    field, the message what to change."""


class UnauthenticatedError(TokendError):
    """The refresh token is unknown, expired, revoked or already spent
    (REFRESH_TOKEN_INVALID, REFRESH_TOKEN_REUSED), or the client certificate names no
    usable identity (UNUSABLE_CERTIFICATE)."""


class PermissionDeniedError(TokendError):
    """The caller's identity may not make this request."""


class ResourceExhaustedError(TokendError):
    """A limit was reached (RATE_LIMITED, STREAM_LIMIT...); retry after ``retry_delay``."""


class UnavailableError(TokendError):
    """tokend (or Vault behind it) could not serve the request; retrying later may work."""


_BY_CODE: dict[grpc.StatusCode, type[TokendError]] = {
    grpc.StatusCode.INVALID_ARGUMENT: InvalidArgumentError,
    grpc.StatusCode.UNAUTHENTICATED: UnauthenticatedError,
    grpc.StatusCode.PERMISSION_DENIED: PermissionDeniedError,
    grpc.StatusCode.RESOURCE_EXHAUSTED: ResourceExhaustedError,
    grpc.StatusCode.UNAVAILABLE: UnavailableError,
}


def status_code(error: grpc.RpcError) -> grpc.StatusCode:
    """The status of a failed call (UNKNOWN when the error carries none)."""
    code = getattr(error, "code", None)
    value = code() if callable(code) else None
    return value if isinstance(value, grpc.StatusCode) else grpc.StatusCode.UNKNOWN


def error_from_rpc(error: grpc.RpcError) -> TokendError:
    """The :class:`TokendError` (subclass by status code) for a failed gRPC call, with
    the details the server sent."""
    code = status_code(error)
    details = getattr(error, "details", None)
    message = details() if callable(details) else None
    return _BY_CODE.get(code, TokendError)(code, message or code.name.lower(),
                                           **_details_of(error, code))


def _details_of(error: grpc.RpcError, code: grpc.StatusCode) -> dict[str, Any]:
    status = _status_of(error)
    # A status whose code differs from the call's is not about this call (gRPC's rule).
    if status is None or status.code != code.value[0]:
        return {}
    found: dict[str, Any] = {}
    for detail in status.details:
        if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
            info = error_details_pb2.ErrorInfo()
            detail.Unpack(info)
            found.update(reason=info.reason, domain=info.domain, metadata=dict(info.metadata))
        elif detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
            bad = error_details_pb2.BadRequest()
            detail.Unpack(bad)
            found["field_violations"] = tuple(
                FieldViolation(v.field, v.description) for v in bad.field_violations)
        elif detail.Is(error_details_pb2.RetryInfo.DESCRIPTOR):
            retry = error_details_pb2.RetryInfo()
            detail.Unpack(retry)
            found["retry_delay"] = retry.retry_delay.ToNanoseconds() / 1e9
    return found


def _status_of(error: grpc.RpcError) -> status_pb2.Status | None:
    trailers = getattr(error, "trailing_metadata", None)
    for key, value in (trailers() if callable(trailers) else None) or ():
        if key == _DETAILS_KEY and isinstance(value, bytes):
            try:
                return status_pb2.Status.FromString(value)
            except DecodeError:
                return None
    return None
