"""Every error tokend answers, in one place: each exception maps to a gRPC status code and
a stable `google.rpc.ErrorInfo` reason, with `google.rpc.BadRequest` field violations for
INVALID_ARGUMENT and `google.rpc.RetryInfo` for UNAVAILABLE and RESOURCE_EXHAUSTED
(https://google.aip.dev/193). docs/errors.md lists every reason; a test holds the two to
each other (tests/api/test_errors.py).

To add an error: add its reason to REASONS (and a row to docs/errors.md), then either a
row to _BY_TYPE for a new exception class, or a field to FIELD_REASONS for a new request
field whose validation raises BadRequest(message, field=...).

Metadata holds only values the caller already knows or that name no secret: the RPC and
the field. Never a token, a refresh token, a subject or a database detail.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import NamedTuple

import grpc
import structlog
from google.protobuf import duration_pb2
from google.rpc import code_pb2, error_details_pb2, status_pb2
from grpc_status import rpc_status

from tokend.api.admission import Refused
from tokend.api.binding import NoClientCertificate
from tokend.api.caller_policy import PolicyDenied
from tokend.api.streams import (
    ResumeAhead,
    ShuttingDown,
    SlowSubscriber,
    StreamEnded,
    TooManySubscribers,
)
from tokend.store import InvalidValue, StoreError
from tokend.tokens.errors import (
    BadRequest,
    RefreshDenied,
    RevocationsStale,
    SigningUnavailable,
    Unavailable,
)

log = structlog.get_logger("tokend.api")

# ErrorInfo.domain: the service that answers (AIP-193: a globally unique name of the
# service). tokend is deployed under many host names, so it is the project's own name.
DOMAIN = "tokend.dev"
# When nothing better is known: a start-up, a reconnect, a dependency coming back.
DEFAULT_RETRY_AFTER = 1.0

Code = grpc.StatusCode


class NotReady(Exception):
    """Keys or store are not loaded yet (start-up is waiting for Vault)."""


class MalformedRequest(BadRequest):
    """The request bytes are no valid protobuf message (api/decoding.py)."""


class ReasonSpec(NamedTuple):
    code: grpc.StatusCode
    retry: bool  # RetryInfo attached: a retry after the delay may succeed


# Every reason tokend answers with; docs/errors.md has a row for each (code, reason,
# when, retry?), and tests/api/test_errors.py holds the two equal.
REASONS: dict[str, ReasonSpec] = {
    # INVALID_ARGUMENT: the request is wrong; a retry of the same request fails the same.
    "MALFORMED_REQUEST": ReasonSpec(Code.INVALID_ARGUMENT, False),
    "INVALID_REQUEST": ReasonSpec(Code.INVALID_ARGUMENT, False),
    "INVALID_SUBJECT": ReasonSpec(Code.INVALID_ARGUMENT, False),
    "INVALID_AUDIENCE": ReasonSpec(Code.INVALID_ARGUMENT, False),
    "INVALID_SCOPES": ReasonSpec(Code.INVALID_ARGUMENT, False),
    "INVALID_REQUIRED_SCOPES": ReasonSpec(Code.INVALID_ARGUMENT, False),
    "INVALID_CLAIMS": ReasonSpec(Code.INVALID_ARGUMENT, False),
    "INVALID_TTL": ReasonSpec(Code.INVALID_ARGUMENT, False),
    "INVALID_TOKEN": ReasonSpec(Code.INVALID_ARGUMENT, False),
    "INVALID_JTI": ReasonSpec(Code.INVALID_ARGUMENT, False),
    "INVALID_REASON": ReasonSpec(Code.INVALID_ARGUMENT, False),
    "INVALID_REFRESH_TOKEN": ReasonSpec(Code.INVALID_ARGUMENT, False),
    "INVALID_IDEMPOTENCY_KEY": ReasonSpec(Code.INVALID_ARGUMENT, False),
    "INVALID_FROM_SEQUENCE": ReasonSpec(Code.INVALID_ARGUMENT, False),
    "MISSING_REVOKE_TARGET": ReasonSpec(Code.INVALID_ARGUMENT, False),
    "INVALID_BINDING": ReasonSpec(Code.INVALID_ARGUMENT, False),
    "INVALID_SUBJECT_TOKEN": ReasonSpec(Code.INVALID_ARGUMENT, False),
    "INVALID_ACTOR_TOKEN": ReasonSpec(Code.INVALID_ARGUMENT, False),
    "INVALID_DELEGATION": ReasonSpec(Code.INVALID_ARGUMENT, False),
    "INVALID_PRESENTER": ReasonSpec(Code.INVALID_ARGUMENT, False),
    # Who the caller is and what it may do.
    "UNUSABLE_CERTIFICATE": ReasonSpec(Code.UNAUTHENTICATED, False),
    "REFRESH_TOKEN_INVALID": ReasonSpec(Code.UNAUTHENTICATED, False),
    "REFRESH_TOKEN_REUSED": ReasonSpec(Code.UNAUTHENTICATED, False),
    "CALLER_NOT_ALLOWED": ReasonSpec(Code.PERMISSION_DENIED, False),
    "POLICY_DENIED": ReasonSpec(Code.PERMISSION_DENIED, False),
    # Load and limits.
    "RATE_LIMITED": ReasonSpec(Code.RESOURCE_EXHAUSTED, True),
    "STREAM_LIMIT": ReasonSpec(Code.RESOURCE_EXHAUSTED, True),
    "STREAM_TOO_SLOW": ReasonSpec(Code.RESOURCE_EXHAUSTED, True),
    "RESUME_AHEAD": ReasonSpec(Code.FAILED_PRECONDITION, False),
    "NO_CLIENT_CERTIFICATE": ReasonSpec(Code.FAILED_PRECONDITION, False),
    # tokend or what it depends on cannot serve now.
    "NOT_READY": ReasonSpec(Code.UNAVAILABLE, True),
    "SIGNING_UNAVAILABLE": ReasonSpec(Code.UNAVAILABLE, True),
    "REVOCATIONS_STALE": ReasonSpec(Code.UNAVAILABLE, True),
    "DEPENDENCY_UNAVAILABLE": ReasonSpec(Code.UNAVAILABLE, True),
    "STORE_UNAVAILABLE": ReasonSpec(Code.UNAVAILABLE, True),
    "SHUTTING_DOWN": ReasonSpec(Code.UNAVAILABLE, True),
    "STREAM_ENDED": ReasonSpec(Code.UNAVAILABLE, True),
    # A bug: a retry would meet the same bug.
    "INTERNAL": ReasonSpec(Code.INTERNAL, False),
}

# The request field a BadRequest names (as the proto spells it) -> its reason. A field
# not listed answers INVALID_REQUEST (still with its FieldViolation).
FIELD_REASONS: dict[str, str] = {
    "subject": "INVALID_SUBJECT",
    "audience": "INVALID_AUDIENCE",
    "scopes": "INVALID_SCOPES",
    "required_scopes": "INVALID_REQUIRED_SCOPES",
    "claims": "INVALID_CLAIMS",
    "ttl": "INVALID_TTL",
    "token": "INVALID_TOKEN",
    "jti": "INVALID_JTI",
    "reason": "INVALID_REASON",
    "refresh_token": "INVALID_REFRESH_TOKEN",
    "idempotency_key": "INVALID_IDEMPOTENCY_KEY",
    "from_sequence": "INVALID_FROM_SEQUENCE",
    "target": "MISSING_REVOKE_TARGET",
    # RFC 8705 certificate binding (api/binding.py).
    "binding": "INVALID_BINDING",
    "binding.certificate_der": "INVALID_BINDING",
    "include_refresh_token": "INVALID_BINDING",  # only refused together with a binding
    "presenter_certificate_der": "INVALID_PRESENTER",
    "presenter_x5t_s256": "INVALID_PRESENTER",
    # Exchange (RFC 8693) and Verify's delegation option.
    "subject_token": "INVALID_SUBJECT_TOKEN",
    "actor_token": "INVALID_ACTOR_TOKEN",
    "delegation": "INVALID_DELEGATION",
}


@dataclass
class Failure:
    """One error answer: what the caller gets as status, message and details."""

    reason: str
    message: str
    retry_after: float | None = None
    violations: list[tuple[str, str]] = field(default_factory=list)  # (field, description)
    metadata: dict[str, str] = field(default_factory=dict)

    @property
    def code(self) -> grpc.StatusCode:
        return REASONS[self.reason].code

    def status(self, method: str) -> status_pb2.Status:
        """The google.rpc.Status carried in the grpc-status-details-bin trailer."""
        info = error_details_pb2.ErrorInfo(reason=self.reason, domain=DOMAIN,
                                           metadata={"method": method, **self.metadata})
        details = [info]
        if self.violations:
            details.append(error_details_pb2.BadRequest(field_violations=[
                error_details_pb2.BadRequest.FieldViolation(field=name, description=text)
                for name, text in self.violations]))
        if REASONS[self.reason].retry:
            details.append(error_details_pb2.RetryInfo(retry_delay=_duration(
                DEFAULT_RETRY_AFTER if self.retry_after is None else self.retry_after)))
        status = status_pb2.Status(code=_CODE_NUMBERS[self.code], message=self.message)
        for detail in details:
            status.details.add().Pack(detail)
        return status


def _duration(seconds: float) -> duration_pb2.Duration:
    # At least a millisecond, at most an hour: a caller never spins, never waits for ever.
    seconds = min(max(seconds, 0.001), 3600.0) if math.isfinite(seconds) else 3600.0
    delay = duration_pb2.Duration()
    delay.FromNanoseconds(round(seconds * 1e9))
    return delay


_CODE_NUMBERS: dict[grpc.StatusCode, int] = {
    code: getattr(code_pb2, code.name) for code in grpc.StatusCode}


def _bad_request(exc: BadRequest) -> Failure:
    if isinstance(exc, MalformedRequest):
        return Failure("MALFORMED_REQUEST", str(exc))
    if exc.field is None:
        return Failure("INVALID_REQUEST", str(exc))
    return Failure(FIELD_REASONS.get(exc.field, "INVALID_REQUEST"), str(exc),
                   violations=[(exc.field, str(exc))], metadata={"field": exc.field})


def field_violation(exc: BadRequest) -> tuple[str, str, str]:
    """(field, description, reason) of the refusal a unary call refused with `exc`
    carries (its BadRequest field violation and ErrorInfo reason): a VerifyMany item's
    `invalid` result. No field named: ("", message, reason)."""
    failure = _bad_request(exc)
    field, description = failure.violations[0] if failure.violations else ("", failure.message)
    return field, description, failure.reason


def _refused(exc: Refused) -> Failure:
    return Failure(exc.reason, str(exc), retry_after=exc.retry_after)


def _refresh_denied(exc: RefreshDenied) -> Failure:
    return Failure("REFRESH_TOKEN_REUSED" if exc.reused else "REFRESH_TOKEN_INVALID", str(exc))


def _unavailable(reason: str) -> Callable[[Exception], Failure]:
    def failure(exc: Exception) -> Failure:
        return Failure(reason, str(exc), retry_after=getattr(exc, "retry_after", None))
    return failure


def _plain(reason: str) -> Callable[[Exception], Failure]:
    return lambda exc: Failure(reason, str(exc))


# First match wins: subclasses before their bases.
_BY_TYPE: tuple[tuple[type[Exception], Callable[[Exception], Failure]], ...] = (
    (Refused, _refused),  # type: ignore[list-item]
    (BadRequest, _bad_request),  # type: ignore[list-item]
    (InvalidValue, _plain("INVALID_REQUEST")),
    (NotReady, _unavailable("NOT_READY")),
    (PolicyDenied, _plain("POLICY_DENIED")),
    (RefreshDenied, _refresh_denied),  # type: ignore[list-item]
    (SigningUnavailable, _unavailable("SIGNING_UNAVAILABLE")),
    (RevocationsStale, _unavailable("REVOCATIONS_STALE")),
    (Unavailable, _unavailable("DEPENDENCY_UNAVAILABLE")),
    (SlowSubscriber, _unavailable("STREAM_TOO_SLOW")),
    (TooManySubscribers, _unavailable("STREAM_LIMIT")),
    (ResumeAhead, _plain("RESUME_AHEAD")),
    (NoClientCertificate, _plain("NO_CLIENT_CERTIFICATE")),
    (ShuttingDown, lambda exc: Failure("SHUTTING_DOWN", str(exc), retry_after=0.0)),
    (StreamEnded, _unavailable("STREAM_ENDED")),
)


def failure_for(exc: Exception, method: str) -> Failure:
    """The answer for `exc` raised while serving `method`."""
    for kind, describe in _BY_TYPE:
        if isinstance(exc, kind):
            return describe(exc)
    if isinstance(exc, StoreError):
        # The detail may name database hosts: the log has it, the caller does not.
        log.warning("rpc.store_unavailable", method=method, error=str(exc))
        return Failure("STORE_UNAVAILABLE", f"{method} failed: tokend's store (database) is "
                       "unavailable; retry later")
    # Unknown failures are bugs, not outages: a retry would meet the same bug, so not
    # UNAVAILABLE. The log has the detail; the caller learns nothing of the internals.
    log.error("rpc.failed", method=method, error=type(exc).__name__, exc_info=exc)
    return Failure("INTERNAL", f"{method} failed on the server (an internal error)")


async def abort(context: grpc.aio.ServicerContext, failure: Failure, method: str) -> None:
    """Ends the call with `failure`: status code, message and google.rpc.Status details.
    Raises (as context.abort does)."""
    await context.abort_with_status(rpc_status.to_status(failure.status(method)))
