"""Cookies for web backends that hand tokend tokens to browsers (framework-neutral).

The functions build ``Set-Cookie`` header values and read a ``Cookie`` header; pass
the strings to whatever your framework uses for headers.

* The access token goes in ``__Host-access_token``: ``HttpOnly`` (scripts cannot read
  it, so an XSS bug cannot steal it), ``Secure``, ``Path=/`` and no ``Domain``, which
  the ``__Host-`` prefix makes browsers enforce: no other subdomain can set or
  overwrite it.
* The refresh token goes in ``__Secure-refresh_token`` with ``Path`` set to the
  refresh endpoint, so the browser sends it there and nowhere else.
* ``SameSite=Strict`` by default (``Lax`` on request): the browser leaves the cookies
  off requests started by other sites, which is the first line against CSRF.
* ``Max-Age`` follows each token's expiry, so the browser drops a cookie when its
  token stops being useful.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.cookies import Morsel
from typing import Any, Literal

from .models import IssuedToken

__all__ = [
    "ACCESS_COOKIE",
    "MAX_COOKIE_BYTES",
    "REFRESH_COOKIE",
    "CookieError",
    "TokenCookies",
    "access_token_cookie",
    "clear_token_cookies",
    "read_token_cookies",
    "refresh_token_cookie",
    "token_cookies",
]

ACCESS_COOKIE = "__Host-access_token"
REFRESH_COOKIE = "__Secure-refresh_token"
# Browsers keep at most 4096 bytes of name plus value per cookie and silently drop
# bigger ones (RFC 6265 §6.1 sets that as the minimum they must support).
MAX_COOKIE_BYTES = 4096

SameSite = Literal["Strict", "Lax"]

# Access tokens are base64url segments joined by dots; refresh tokens are tkd_rt_ plus
# base64url. Neither needs quoting, and anything else in a cookie is not ours.
_TOKEN_VALUE = re.compile(r"[A-Za-z0-9._-]+")
# An absolute path without ';' (which would start a new attribute), spaces or controls.
_COOKIE_PATH = re.compile(r"/[A-Za-z0-9._~!$&'()*+,=:@%/-]*")


class CookieError(ValueError):
    """A token cookie is malformed, too large or ambiguous (sent twice)."""


@dataclass(frozen=True)
class TokenCookies:
    """The tokens found in a ``Cookie`` header; None for each one that was absent."""

    access_token: str | None = field(default=None, repr=False)
    refresh_token: str | None = field(default=None, repr=False)


def access_token_cookie(access_token: str, expires_at: datetime, *,
                        same_site: SameSite = "Strict", now: datetime | None = None) -> str:
    """The ``Set-Cookie`` value that stores ``access_token`` until ``expires_at``."""
    _check_value_to_set(ACCESS_COOKIE, access_token)
    return _set_cookie(ACCESS_COOKIE, access_token, path="/", same_site=same_site,
                       max_age=_max_age(expires_at, now))


def refresh_token_cookie(refresh_token: str, expires_at: datetime, *, path: str,
                         same_site: SameSite = "Strict", now: datetime | None = None) -> str:
    """The ``Set-Cookie`` value that stores ``refresh_token`` for requests under ``path``
    (your refresh endpoint) until ``expires_at``."""
    _check_value_to_set(REFRESH_COOKIE, refresh_token)
    return _set_cookie(REFRESH_COOKIE, refresh_token, path=_checked_path(path),
                       same_site=same_site, max_age=_max_age(expires_at, now))


def token_cookies(issued: IssuedToken, *, refresh_path: str, same_site: SameSite = "Strict",
                  now: datetime | None = None) -> list[str]:
    """``Set-Cookie`` values for an Issue/Refresh result: the access token, and the
    refresh token when there is one. Send each as its own ``Set-Cookie`` header."""
    headers = [access_token_cookie(issued.access_token, issued.expires_at,
                                   same_site=same_site, now=now)]
    if issued.refresh_token is not None and issued.refresh_expires_at is not None:
        headers.append(refresh_token_cookie(issued.refresh_token, issued.refresh_expires_at,
                                            path=refresh_path, same_site=same_site, now=now))
    return headers


def clear_token_cookies(*, refresh_path: str, same_site: SameSite = "Strict") -> list[str]:
    """``Set-Cookie`` values that delete both cookies (log out).

    Browsers match a deletion by name, path and domain, and refuse prefixed cookies
    without their attributes, so these repeat everything but the value.
    """
    return [
        _set_cookie(ACCESS_COOKIE, "", path="/", same_site=same_site, max_age=0),
        _set_cookie(REFRESH_COOKIE, "", path=_checked_path(refresh_path),
                    same_site=same_site, max_age=0),
    ]


def read_token_cookies(cookie_header: str | None, *,
                       max_value_bytes: int = MAX_COOKIE_BYTES) -> TokenCookies:
    """The token cookies in a ``Cookie`` request header (other cookies are ignored).

    Raises :class:`CookieError` when a token cookie is larger than ``max_value_bytes``,
    holds characters no token has, or appears twice: a second cookie of the same name
    can only come from somewhere else (e.g. a sibling subdomain setting
    ``__Secure-refresh_token`` with a wider ``Domain``), and guessing which one is
    genuine would let an attacker plant a session. Error messages never contain values.
    """
    found: dict[str, str] = {}
    for pair in (cookie_header or "").split(";"):
        name, _, value = pair.strip().partition("=")
        if name not in (ACCESS_COOKIE, REFRESH_COOKIE):
            continue
        if name in found:
            raise CookieError(f"cookie {name} was sent more than once")
        found[name] = _checked_read_value(name, value.strip(), max_value_bytes)
    return TokenCookies(access_token=found.get(ACCESS_COOKIE) or None,
                        refresh_token=found.get(REFRESH_COOKIE) or None)


def _set_cookie(name: str, value: str, *, path: str, same_site: str, max_age: int) -> str:
    morsel: Morsel[str] = Morsel()
    morsel.set(name, value, value)  # a token (checked by the callers) needs no quoting
    # Morsel renders Max-Age with %d and flags from booleans, whatever its stubs say.
    attributes: dict[str, Any] = {"path": path, "max-age": max_age, "secure": True,
                                  "samesite": _checked_same_site(same_site), "httponly": True}
    morsel.update(attributes)
    return morsel.OutputString()


def _check_value_to_set(name: str, value: str) -> None:
    if not isinstance(value, str) or not _TOKEN_VALUE.fullmatch(value):
        raise ValueError(f"{name}: not a token (unexpected characters)")
    if len(name) + 1 + len(value) > MAX_COOKIE_BYTES:
        raise ValueError(f"{name}: token too large for a cookie ({MAX_COOKIE_BYTES} bytes); "
                         "issue a smaller token (fewer claims)")


def _checked_read_value(name: str, value: str, max_value_bytes: int) -> str:
    if len(value) > max_value_bytes:
        raise CookieError(f"cookie {name} is larger than {max_value_bytes} bytes")
    if value and not _TOKEN_VALUE.fullmatch(value):
        raise CookieError(f"cookie {name} does not hold a token")
    return value


def _checked_same_site(same_site: str) -> str:
    # "None" would send the cookies on cross-site requests: exactly what CSRF needs.
    if same_site not in ("Strict", "Lax"):
        raise ValueError('same_site must be "Strict" or "Lax"')
    return same_site


def _checked_path(path: str) -> str:
    if not isinstance(path, str) or not _COOKIE_PATH.fullmatch(path):
        raise ValueError("refresh_path must be an absolute URL path without ';' or spaces")
    return path


def _max_age(expires_at: datetime, now: datetime | None) -> int:
    if expires_at.tzinfo is None:
        raise ValueError("expires_at must be timezone-aware (tokend's are UTC)")
    seconds = (expires_at - (now or datetime.now(UTC))).total_seconds()
    # Whole seconds rounded down, so the browser never keeps a cookie past its token.
    return max(int(seconds), 0)
