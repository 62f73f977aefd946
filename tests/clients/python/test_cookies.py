"""Set-Cookie values and Cookie parsing for browser-facing backends, attribute by attribute."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from tokend_client import IssuedToken
from tokend_client.cookies import (
    CookieError,
    access_token_cookie,
    clear_token_cookies,
    read_token_cookies,
    refresh_token_cookie,
    token_cookies,
)

NOW = datetime(2030, 1, 1, 12, 0, 0, tzinfo=UTC)
ACCESS = "eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJhbGljZSJ9.c2lnbmF0dXJl"
REFRESH = "tkd_rt_" + "Ab-_" * 10 + "xyz"


def issued(*, refresh: bool = True) -> IssuedToken:
    return IssuedToken(
        access_token=ACCESS, expires_at=NOW + timedelta(minutes=15), jti="j",
        refresh_token=REFRESH if refresh else None,
        refresh_expires_at=NOW + timedelta(days=30) if refresh else None)


def test_access_cookie_attributes() -> None:
    assert access_token_cookie(ACCESS, NOW + timedelta(seconds=900.9), now=NOW) == (
        f"__Host-access_token={ACCESS}; HttpOnly; Max-Age=900; Path=/; SameSite=Strict; Secure")


def test_refresh_cookie_attributes() -> None:
    value = refresh_token_cookie(REFRESH, NOW + timedelta(days=30), path="/auth/refresh",
                                 now=NOW)
    assert value == (f"__Secure-refresh_token={REFRESH}; HttpOnly; Max-Age=2592000; "
                     "Path=/auth/refresh; SameSite=Strict; Secure")
    assert "Domain" not in value and "Expires" not in value


def test_cookies_for_an_issued_token_pair() -> None:
    assert token_cookies(issued(), refresh_path="/auth/refresh", same_site="Lax", now=NOW) == [
        f"__Host-access_token={ACCESS}; HttpOnly; Max-Age=900; Path=/; SameSite=Lax; Secure",
        f"__Secure-refresh_token={REFRESH}; HttpOnly; Max-Age=2592000; Path=/auth/refresh; "
        "SameSite=Lax; Secure",
    ]
    assert token_cookies(issued(refresh=False), refresh_path="/r", now=NOW) == [
        f"__Host-access_token={ACCESS}; HttpOnly; Max-Age=900; Path=/; SameSite=Strict; Secure",
    ]


def test_clear_cookies() -> None:
    assert clear_token_cookies(refresh_path="/auth/refresh") == [
        "__Host-access_token=; HttpOnly; Max-Age=0; Path=/; SameSite=Strict; Secure",
        "__Secure-refresh_token=; HttpOnly; Max-Age=0; Path=/auth/refresh; SameSite=Strict; "
        "Secure",
    ]


def test_expired_token_gets_max_age_zero() -> None:
    assert "Max-Age=0;" in access_token_cookie(ACCESS, NOW - timedelta(seconds=5), now=NOW)


def test_max_age_uses_the_current_time_by_default() -> None:
    value = access_token_cookie(ACCESS, datetime.now(UTC) + timedelta(seconds=600))
    assert "Max-Age=599;" in value or "Max-Age=600;" in value


@pytest.mark.parametrize("same_site", ["None", "strict", "", "Strict; Domain=evil"])
def test_same_site_is_strict_or_lax(same_site: str) -> None:
    with pytest.raises(ValueError, match="same_site"):
        access_token_cookie(ACCESS, NOW, same_site=same_site, now=NOW)  # type: ignore[arg-type]


@pytest.mark.parametrize("path", ["auth/refresh", "/a; Domain=evil.example", "/a b", "", "/\n"])
def test_refresh_path_must_be_a_plain_absolute_path(path: str) -> None:
    with pytest.raises(ValueError, match="refresh_path"):
        refresh_token_cookie(REFRESH, NOW, path=path, now=NOW)
    with pytest.raises(ValueError, match="refresh_path"):
        clear_token_cookies(refresh_path=path)


@pytest.mark.parametrize("token", ["a;b", "a b", 'a"b', "a,b", "ä", ""])
def test_values_must_look_like_tokens(token: str) -> None:
    with pytest.raises(ValueError, match="not a token"):
        access_token_cookie(token, NOW, now=NOW)


def test_refresh_values_are_checked_too() -> None:
    with pytest.raises(ValueError, match="not a token"):
        refresh_token_cookie("tkd_rt_x; Domain=evil.example", NOW, path="/r", now=NOW)


def test_oversized_tokens_are_refused_when_setting() -> None:
    with pytest.raises(ValueError, match="too large for a cookie"):
        access_token_cookie("a" * 4096, NOW, now=NOW)
    access_token_cookie("a" * (4096 - len("__Host-access_token=")), NOW, now=NOW)


def test_naive_expiry_is_refused() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        access_token_cookie(ACCESS, datetime(2030, 1, 1), now=NOW)


def test_read_both_tokens() -> None:
    header = f"theme=dark; __Host-access_token={ACCESS};__Secure-refresh_token={REFRESH} ; x=1"
    cookies = read_token_cookies(header)
    assert (cookies.access_token, cookies.refresh_token) == (ACCESS, REFRESH)
    assert ACCESS not in repr(cookies) and REFRESH not in repr(cookies)


@pytest.mark.parametrize("header", [None, "", "theme=dark", "__Host-access_token=",
                                    "__host-access_token=abc", "access_token=abc"])
def test_absent_tokens_are_none(header: str | None) -> None:
    cookies = read_token_cookies(header)
    assert cookies.access_token is None and cookies.refresh_token is None


def test_other_cookies_may_hold_anything() -> None:
    cookies = read_token_cookies('prefs="a b;c"; junk; =; __Host-access_token=abc')
    assert cookies.access_token == "abc"


def test_oversized_values_are_refused() -> None:
    with pytest.raises(CookieError, match="larger than 4096 bytes"):
        read_token_cookies("__Host-access_token=" + "a" * 4097)
    with pytest.raises(CookieError, match="larger than 100 bytes"):
        read_token_cookies("__Secure-refresh_token=" + "a" * 101, max_value_bytes=100)
    assert read_token_cookies("__Host-access_token=" + "a" * 4096).access_token


@pytest.mark.parametrize("value", ['"abc"', "a%3Bb", "a\\b", "é"])
def test_values_that_are_not_tokens_are_refused(value: str) -> None:
    with pytest.raises(CookieError, match="does not hold a token") as info:
        read_token_cookies(f"__Host-access_token={value}")
    assert value not in str(info.value)


def test_duplicate_token_cookies_are_refused() -> None:
    # e.g. a sibling subdomain planted its own __Secure-refresh_token with Domain=.
    with pytest.raises(CookieError, match="more than once"):
        read_token_cookies(f"__Secure-refresh_token={REFRESH}; __Secure-refresh_token=other")


def test_round_trip() -> None:
    pairs = [value.split(";", 1)[0] for value in token_cookies(issued(), refresh_path="/r",
                                                                 now=NOW)]
    cookies = read_token_cookies("; ".join(pairs))
    assert (cookies.access_token, cookies.refresh_token) == (ACCESS, REFRESH)
