"""What the sync and async clients share: requests, results and the service config.

Only the I/O differs between :mod:`tokend_client.client` and :mod:`tokend_client.aio`;
everything here is plain computation, so both behave the same by construction.
"""

from __future__ import annotations

import json
import math
import secrets
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime, timedelta
from importlib import resources
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from google.protobuf import duration_pb2, json_format, timestamp_pb2

from .errors import Reason
from .models import IssuedToken, VerifyResult
from .v1 import tokend_pb2 as pb

__all__ = [
    "SERVICE_CONFIG",
    "check_retries",
    "check_timeout",
    "exchange_request",
    "issue_request",
    "issued_token",
    "refresh_request",
    "revoke_request",
    "service_config",
    "verify_request",
    "verify_result",
]

Ttl = timedelta | float | int
# A copy of clients/service-config.json (tests/clients/test_service_config.py keeps
# it equal): retry policy and per-method deadlines, the same in every tokend client.
SERVICE_CONFIG = "service_config.json"

# ---------------------------------------------------------------------------
# Retries and deadlines: the gRPC service config shared by the four clients
# ---------------------------------------------------------------------------

# gRPC itself refuses more than 5 attempts per call (gRFC A6).
MAX_RETRIES = 4


def service_config(*, timeout: float | None, retries: int) -> tuple[str, dict[str, float]]:
    """The shared service config (clients/service-config.json, copied into this package)
    for the channel, and each method's deadline in seconds for the calls.

    ``timeout``, when given, replaces every per-method timeout; ``retries`` + 1 becomes
    each retry policy's maxAttempts (0: no retry policy). The timeouts leave the
    channel's config: grpc-python starts a service-config timeout about a second early
    (grpc/grpc#34547, #40633), so the client passes each call the same value itself.
    """
    config = json.loads(resources.files("tokend_client").joinpath(SERVICE_CONFIG).read_text())
    deadlines: dict[str, float] = {}
    for method in config["methodConfig"]:
        seconds = timeout if timeout is not None else _seconds(method.pop("timeout"))
        method.pop("timeout", None)
        deadlines.update((name["method"], seconds) for name in method["name"])
        if retries == 0:
            method.pop("retryPolicy", None)
        elif "retryPolicy" in method:
            method["retryPolicy"]["maxAttempts"] = retries + 1
    return json.dumps(config, separators=(",", ":")), deadlines


def _seconds(duration: str) -> float:
    """A protobuf JSON Duration ("5s", "0.5s") in seconds."""
    return float(duration.removesuffix("s"))


def check_retries(retries: object) -> int:
    """Retries after UNAVAILABLE: an int from 0 to MAX_RETRIES."""
    if isinstance(retries, bool) or not isinstance(retries, int):
        raise TypeError("retries must be an int")
    if not 0 <= retries <= MAX_RETRIES:
        raise ValueError(f"retries must be between 0 and {MAX_RETRIES} (gRPC allows at most "
                         f"{MAX_RETRIES + 1} attempts)")
    return retries


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
                  refresh: bool, bind_to_certificate: BindTo = False) -> pb.IssueRequest:
    """The IssueRequest for :meth:`TokenClient.issue` (the server validates the values)."""
    request = pb.IssueRequest(subject=subject, audience=_audiences(audience),
                              scopes=_scopes(scopes, "scopes"), include_refresh_token=refresh)
    if claims:
        request.claims.update(dict(claims))
    if ttl is not None:
        request.ttl.CopyFrom(_duration(ttl))
    binding = certificate_binding(bind_to_certificate)
    if binding is not None:
        request.binding.CopyFrom(binding)
    return request


# True: the client certificate of this client's own mTLS connection; a certificate (DER
# bytes or x509.Certificate): that one (the caller's policy entry must allow it).
BindTo = bool | bytes | x509.Certificate


def certificate_binding(bind_to: BindTo) -> pb.CertificateBinding | None:
    """The CertificateBinding (RFC 8705 §3) ``bind_to_certificate=`` asks for, or None."""
    if bind_to is False:
        return None
    if bind_to is True:
        return pb.CertificateBinding(caller_certificate=True)
    if isinstance(bind_to, x509.Certificate):
        return pb.CertificateBinding(certificate_der=bind_to.public_bytes(Encoding.DER))
    if isinstance(bind_to, bytes):
        return pb.CertificateBinding(certificate_der=bind_to)
    raise TypeError("bind_to_certificate is True, DER bytes or a cryptography x509.Certificate")


_DELEGATION = {"any": pb.DELEGATION_UNSPECIFIED, "required": pb.DELEGATION_REQUIRED,
               "refused": pb.DELEGATION_REFUSED}


def verify_request(token: str, audience: str,
                   required_scopes: str | Iterable[str], *,
                   presenter_certificate: bytes | x509.Certificate | None = None,
                   presenter_x5t_s256: str | None = None,
                   delegation: str = "any") -> pb.VerifyRequest:
    """The VerifyRequest for :meth:`TokenClient.verify`."""
    if delegation not in _DELEGATION:
        raise ValueError("delegation must be one of 'any', 'required', 'refused'")
    request = pb.VerifyRequest(token=token, audience=audience,
                               required_scopes=_scopes(required_scopes, "required_scopes"),
                               delegation=_DELEGATION[delegation])
    if presenter_certificate is not None and presenter_x5t_s256 is not None:
        raise ValueError("give presenter_certificate or presenter_x5t_s256, not both")
    if isinstance(presenter_certificate, x509.Certificate):
        request.presenter_certificate_der = presenter_certificate.public_bytes(Encoding.DER)
    elif presenter_certificate is not None:
        request.presenter_certificate_der = presenter_certificate
    elif presenter_x5t_s256 is not None:
        request.presenter_x5t_s256 = presenter_x5t_s256
    return request


def exchange_request(subject_token: str, audience: str | Iterable[str], *,
                     scopes: str | Iterable[str], ttl: Ttl | None,
                     actor_token: str | None, bind_to: BindTo = False) -> pb.ExchangeRequest:
    """The ExchangeRequest for :meth:`TokenClient.exchange` (RFC 8693)."""
    request = pb.ExchangeRequest(subject_token=subject_token, audience=_audiences(audience),
                                 scopes=_scopes(scopes, "scopes"), actor_token=actor_token or "")
    if ttl is not None:
        request.ttl.CopyFrom(_duration(ttl))
    binding = certificate_binding(bind_to)
    if binding is not None:
        request.binding.CopyFrom(binding)
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

