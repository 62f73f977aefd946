"""What the sync and async clients share: requests, results and the retry budget.

Only the I/O differs between :mod:`tokend_client.client` and :mod:`tokend_client.aio`;
everything here is plain computation, so both behave the same by construction.
"""

from __future__ import annotations

import math
import random
import secrets
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import grpc
from google.protobuf import duration_pb2, json_format, timestamp_pb2

from .errors import Reason
from .models import IssuedToken, VerifyResult
from .v1 import tokend_pb2 as pb

__all__ = [
    "Attempts",
    "RetryPolicy",
    "exchange_request",
    "issue_request",
    "issued_token",
    "refresh_request",
    "revoke_request",
    "verify_request",
    "verify_result",
]

Ttl = timedelta | float | int

# ---------------------------------------------------------------------------
# Retries
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class RetryPolicy:
    """Exponential backoff with jitter, for UNAVAILABLE only.

    Other codes are answers (a bad request stays bad; DEADLINE_EXCEEDED means the
    call's time is used up), so retrying them cannot help.
    """

    retries: int = 3
    initial_backoff: float = 0.1
    max_backoff: float = 2.0

    def __post_init__(self) -> None:
        if isinstance(self.retries, bool) or not isinstance(self.retries, int):
            raise TypeError("retries must be an int")
        if not 0 <= self.retries <= 10:
            raise ValueError("retries must be between 0 and 10")

    def backoff(self, retry: int, rng: random.Random) -> float:
        """Seconds to wait before retry number ``retry`` (0-based).

        Half of the exponential step is fixed and half random ("equal jitter"), so
        clients that failed together do not come back together, yet every wait is real.
        """
        step = min(self.max_backoff, self.initial_backoff * 2.0**retry)
        return step / 2 + rng.uniform(0, step / 2)


class Attempts:
    """One call's budget: a deadline shared by every attempt and the retries left."""

    def __init__(self, policy: RetryPolicy, timeout: float, *, retryable: bool,
                 rng: random.Random, clock: Callable[[], float] = time.monotonic) -> None:
        self._policy = policy
        self._retryable = retryable
        self._rng = rng
        self._clock = clock
        self._deadline = clock() + timeout
        self._retries_done = 0

    def remaining(self) -> float:
        """Seconds left for the next attempt (its gRPC deadline)."""
        return max(self._deadline - self._clock(), 0.0)

    def delay_before_retry(self, code: grpc.StatusCode) -> float | None:
        """How long to wait before trying again after ``code``; None means give up."""
        if not self._retryable or code is not grpc.StatusCode.UNAVAILABLE:
            return None
        if self._retries_done >= self._policy.retries:
            return None
        delay = self._policy.backoff(self._retries_done, self._rng)
        if delay >= self.remaining():
            return None  # no time would be left for the attempt itself
        self._retries_done += 1
        return delay


def check_timeout(timeout: object) -> float:
    """A call timeout: a positive, finite number of seconds."""
    if isinstance(timeout, bool) or not isinstance(timeout, int | float):
        raise TypeError("timeout must be a number of seconds")
    if not (math.isfinite(timeout) and timeout > 0):
        raise ValueError("timeout must be positive and finite")
    return float(timeout)


# ---------------------------------------------------------------------------
# Requests
# ---------------------------------------------------------------------------


def _strings(values: Iterable[str], what: str) -> list[str]:
    items = list(values)
    if not all(isinstance(item, str) for item in items):
        raise TypeError(f"{what} must be strings")
    return items


def _audiences(audience: str | Iterable[str]) -> list[str]:
    # A bare string is one audience, not a collection of characters.
    return [audience] if isinstance(audience, str) else _strings(audience, "audience")


def _scopes(scopes: str | Iterable[str], what: str) -> list[str]:
    # A string is read as the space-separated list the `scope` claim itself uses.
    if isinstance(scopes, str):
        return [name for name in scopes.split(" ") if name]
    return _strings(scopes, what)


def _duration(ttl: Ttl) -> duration_pb2.Duration:
    if isinstance(ttl, bool) or not isinstance(ttl, timedelta | int | float):
        raise TypeError("ttl must be a timedelta or a number of seconds")
    duration = duration_pb2.Duration()
    duration.FromTimedelta(ttl if isinstance(ttl, timedelta) else timedelta(seconds=ttl))
    return duration


def issue_request(subject: str, audience: str | Iterable[str], *, scopes: str | Iterable[str],
                  claims: Mapping[str, Any] | None, ttl: Ttl | None,
                  refresh: bool) -> pb.IssueRequest:
    """The IssueRequest for :meth:`TokenClient.issue` (the server validates the values)."""
    request = pb.IssueRequest(subject=subject, audience=_audiences(audience),
                              scopes=_scopes(scopes, "scopes"), include_refresh_token=refresh)
    if claims:
        request.claims.update(dict(claims))
    if ttl is not None:
        request.ttl.CopyFrom(_duration(ttl))
    return request


_DELEGATION = {"any": pb.DELEGATION_UNSPECIFIED, "required": pb.DELEGATION_REQUIRED,
               "refused": pb.DELEGATION_REFUSED}


def verify_request(token: str, audience: str, required_scopes: str | Iterable[str],
                   delegation: str = "any") -> pb.VerifyRequest:
    """The VerifyRequest for :meth:`TokenClient.verify`."""
    if delegation not in _DELEGATION:
        raise ValueError("delegation must be one of 'any', 'required', 'refused'")
    return pb.VerifyRequest(token=token, audience=audience,
                            required_scopes=_scopes(required_scopes, "required_scopes"),
                            delegation=_DELEGATION[delegation])


def exchange_request(subject_token: str, audience: str | Iterable[str], *,
                     scopes: str | Iterable[str], ttl: Ttl | None,
                     actor_token: str | None) -> pb.ExchangeRequest:
    """The ExchangeRequest for :meth:`TokenClient.exchange` (RFC 8693)."""
    request = pb.ExchangeRequest(subject_token=subject_token, audience=_audiences(audience),
                                 scopes=_scopes(scopes, "scopes"), actor_token=actor_token or "")
    if ttl is not None:
        request.ttl.CopyFrom(_duration(ttl))
    return request


def refresh_request(refresh_token: str, scopes: str | Iterable[str]) -> pb.RefreshRequest:
    """The RefreshRequest for :meth:`TokenClient.refresh`, with a fresh idempotency key:
    one per logical Refresh, sent unchanged by each retry of it, so the server answers a
    retry whose first attempt it had committed with that same answer, not as reuse."""
    return pb.RefreshRequest(refresh_token=refresh_token, scopes=_scopes(scopes, "scopes"),
                             idempotency_key=secrets.token_urlsafe(24))


def revoke_request(*, token: str | None, jti: str | None, refresh_token: str | None,
                   subject: str | None, reason: str) -> pb.RevokeRequest:
    """The RevokeRequest for :meth:`TokenClient.revoke`: exactly one target must be given."""
    targets = {"token": token, "jti": jti, "refresh_token": refresh_token, "subject": subject}
    named = {name: value for name, value in targets.items() if value is not None}
    if len(named) != 1:
        raise ValueError("revoke needs exactly one of token=, jti=, refresh_token=, subject=")
    return pb.RevokeRequest(reason=reason, **named)


# ---------------------------------------------------------------------------
# Results
# ---------------------------------------------------------------------------


def _datetime(stamp: timestamp_pb2.Timestamp) -> datetime:
    return stamp.ToDatetime(tzinfo=UTC)


def issued_token(response: pb.IssueResponse) -> IssuedToken:
    """An IssueResponse (from Issue or Refresh) as an :class:`IssuedToken`."""
    has_refresh = bool(response.refresh_token)
    return IssuedToken(
        access_token=response.access_token,
        expires_at=_datetime(response.expires_at),
        jti=response.jti,
        refresh_token=response.refresh_token if has_refresh else None,
        refresh_expires_at=(_datetime(response.refresh_expires_at)
                            if has_refresh and response.HasField("refresh_expires_at") else None),
    )


def exchanged_token(response: pb.ExchangeResponse) -> IssuedToken:
    """An ExchangeResponse as an :class:`IssuedToken` (never with a refresh token)."""
    return IssuedToken(access_token=response.access_token,
                       expires_at=_datetime(response.expires_at), jti=response.jti)


def reason_from_proto(value: int) -> Reason | None:
    """``REASON_EXPIRED`` → ``Reason.EXPIRED``; None for UNSPECIFIED or a newer server's value."""
    try:
        name = pb.Reason.Name(pb.Reason.ValueType(value))
    except ValueError:
        return None
    return Reason.__members__.get(name.removeprefix("REASON_"))


def verify_result(response: pb.VerifyResponse) -> VerifyResult:
    """A VerifyResponse as a :class:`VerifyResult`."""
    if not response.valid:
        return VerifyResult(valid=False, reason=reason_from_proto(response.reason))
    return VerifyResult(
        valid=True,
        claims=_plain_numbers(json_format.MessageToDict(response.claims)),
        subject=response.subject,
        expires_at=_datetime(response.expires_at) if response.HasField("expires_at") else None,
        actors=tuple(response.actors),
    )


def _plain_numbers(value: Any) -> Any:
    # Struct keeps every number as a double; claims like exp and iat are integers in
    # the token, and should compare and serialize as such.
    if isinstance(value, float) and value.is_integer() and abs(value) < 2**53:
        return int(value)
    if isinstance(value, dict):
        return {key: _plain_numbers(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_plain_numbers(item) for item in value]
    return value

