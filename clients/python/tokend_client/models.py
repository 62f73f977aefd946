"""What the tokend client returns: small immutable records with typed fields.

Token strings are bearer credentials, so they are left out of ``repr`` (and with it
out of tracebacks and debug logs).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from .errors import Reason

__all__ = ["IssuedToken", "VerifyResult"]


@dataclass(frozen=True)
class IssuedToken:
    """An access token from Issue or Refresh, with its refresh token when one was asked for.

    ``expires_at`` and ``refresh_expires_at`` are timezone-aware UTC datetimes.
    """

    access_token: str = field(repr=False)
    expires_at: datetime
    jti: str
    refresh_token: str | None = field(default=None, repr=False)
    refresh_expires_at: datetime | None = None


@dataclass(frozen=True)
class VerifyResult:
    """The server's verdict on a token.

    ``valid`` is the answer. When it is False, ``reason`` says why (None if this client
    does not know the server's reason) and the other fields are empty. When it is True,
    ``claims`` holds the token's claims (whole-number values as ``int``), ``subject``
    its ``sub`` and ``expires_at`` its ``exp`` as a UTC datetime. ``actors`` is the
    actor chain of a delegated token (RFC 8693 §4.1), the current actor first; empty
    for a direct token.
    """

    valid: bool
    reason: Reason | None = None
    claims: dict[str, Any] = field(default_factory=dict)
    subject: str | None = None
    expires_at: datetime | None = None
    actors: tuple[str, ...] = ()
