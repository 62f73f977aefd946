"""Compact JWS (RFC 7515 §3.1, §5, §7.1), strict as RFC 8725 asks: the verifying side
(one pass over a token, the key chosen by ``kid`` from a configured key set, the
algorithm bound to the key) and the signing side (segments, signing input, the
serialized token). Hand-written because general JOSE libraries accept headers and
encodings this layer refuses (see the package docstring)."""

from __future__ import annotations

import json
from collections.abc import Collection, Mapping
from types import MappingProxyType
from typing import Any, NamedTuple

from ..errors import InvalidToken, Reason
from .b64url import _b64url_decode_ascii, b64url_encode
from .json import strict_json_loads
from .jwa import SUPPORTED_ALGORITHMS
from .jwk import JwkSet, PublicKey, as_key_set

__all__ = [
    "MAX_COMPACT_BYTES",
    "VerifiedJws",
    "compact_jws",
    "json_segment",
    "verify_compact",
    "verify_jws",
]

# Anything bigger is refused before parsing; LocalVerifier applies a tighter limit.
MAX_COMPACT_BYTES = 64 * 1024

# ---------------------------------------------------------------------------
# Signing (RFC 7515 §5.1, §7.1)
# ---------------------------------------------------------------------------

# One encoder for every token: json.dumps with options would build a new one per call.
_COMPACT_JSON = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False)


def json_segment(value: Any) -> str:
    """BASE64URL(UTF8(JSON)) of a header or claims object (RFC 7515 §5.1 steps 2-4),
    without insignificant whitespace."""
    return b64url_encode(_COMPACT_JSON.encode(value).encode())


def compact_jws(signing_input: str, signature: bytes) -> str:
    """The compact serialization (RFC 7515 §7.1) of ``signing_input`` (the ASCII
    ``header.payload`` that was signed, §5.1 step 5) and its raw signature."""
    return f"{signing_input}.{b64url_encode(signature)}"


# ---------------------------------------------------------------------------
# Verifying (RFC 7515 §5.2, RFC 8725)
# ---------------------------------------------------------------------------

# RFC 8725 §3.10 / RFC 7515 §4.1.2-4.1.6: keys come from our JWKS, never the token.
_KEY_SOURCE_HEADERS = frozenset({"jku", "x5u", "jwk", "x5c"})


class VerifiedJws(NamedTuple):
    """A JWS whose signature verified: its (read-only) header, payload and the key used."""

    header: Mapping[str, Any]
    payload: bytes
    key: PublicKey


def verify_compact(
    token: str | bytes,
    jwks: JwkSet | Mapping[str, Any] | str | bytes,
    algorithms: Collection[str],
) -> bytes:
    """Verify a compact JWS and return its decoded payload; raise InvalidToken.

    ``jwks`` given as a dict or JSON is parsed on every call; pass a :class:`JwkSet`
    on hot paths. An unusable ``jwks`` raises ValueError (a configuration error).
    """
    return verify_jws(token, jwks, algorithms).payload


def verify_jws(
    token: str | bytes,
    jwks: JwkSet | Mapping[str, Any] | str | bytes,
    algorithms: Collection[str],
) -> VerifiedJws:
    """Like :func:`verify_compact`, but also return the header and the key.

    One pass over the token. A header segment already seen on a validly signed token
    with this key set is not decoded again: the same text passed every header check
    then and selects the same key now; only the caller's algorithm allowlist is
    checked again, since it may differ between calls.
    """
    key_set = jwks if type(jwks) is JwkSet else as_key_set(jwks)
    if isinstance(algorithms, (str, bytes)):
        # "ES256" as a collection would allow every substring of it.
        raise TypeError("algorithms must be a collection of names, not a string")
    text = _token_text(token)
    dots = _dots(text)
    if dots is None:
        raise InvalidToken(Reason.MALFORMED, "token is not a three-segment compact JWS")
    header_b64 = text[: dots[0]]
    known = key_set._headers.get(header_b64)
    if known is None:
        header: Mapping[str, Any] = MappingProxyType(_decode_header(header_b64))
        key = _select_key(header, key_set, algorithms)
    else:
        header, key = known
        if key.alg not in algorithms:  # RFC 8725 §3.1, as in _select_key
            raise InvalidToken(Reason.DISALLOWED_ALGORITHM)
    payload = _verified_payload(text, dots, key)
    if known is None:
        key_set._remember_header(header_b64, header, key)
    return VerifiedJws(header, payload, key)


def _verify_remembered(token: object, remembered: Mapping[str, PublicKey]) -> bytes | None:
    """The payload of a compact JWS whose header segment the caller accepted before.

    For callers that check more of the header than :func:`verify_jws` (LocalVerifier:
    ``typ``): ``remembered`` maps header segments of tokens that verify_jws verified
    with one key set, and that passed the caller's own header rules, to the key
    verify_jws chose. The same text decodes to the same header, so only what follows
    it is checked, exactly as verify_jws checks it (raising InvalidToken alike). None
    when ``token`` is not ASCII text of three segments with a remembered header: then
    ask verify_jws. The caller keeps one mapping per key set and bounds its size.
    """
    if type(token) is not str or len(token) > MAX_COMPACT_BYTES:
        return None
    dots = _dots(token)
    if dots is None:
        return None
    key = remembered.get(token[: dots[0]])
    if key is None or not token.isascii():
        return None
    return _verified_payload(token, dots, key)


def _token_text(token: object) -> str:
    if not isinstance(token, str | bytes | bytearray):
        raise InvalidToken(Reason.MALFORMED, "token must be a string")
    if len(token) > MAX_COMPACT_BYTES:
        raise InvalidToken(Reason.TOO_LARGE)
    if isinstance(token, str):
        if not token.isascii():
            raise InvalidToken(Reason.MALFORMED, "token contains non-ASCII characters")
        return token
    try:
        return bytes(token).decode("ascii")
    except UnicodeDecodeError:
        raise InvalidToken(Reason.MALFORMED, "token contains non-ASCII bytes") from None


def _dots(text: str) -> tuple[int, int] | None:
    """Where the two dots of "header.payload.signature" are, or None if not exactly two.

    RFC 7515 §7.1: compact form is exactly three segments. The JSON serialization
    (§7.2) and JWE (five segments) are not accepted. (find and rfind scan at memchr
    speed, where split would walk the token character by character.)
    """
    first, last = text.find("."), text.rfind(".")
    if first == last or text.find(".", first + 1, last) != -1:
        return None
    return first, last


def _verified_payload(text: str, dots: tuple[int, int], key: PublicKey) -> bytes:
    """The decoded payload of ASCII ``text`` (header.payload.signature, split at
    ``dots``) if ``key`` verifies its signature: RFC 7515 §5.2 steps 6-8."""
    first, last = dots
    ascii_token = text.encode()
    payload = _decode_segment(ascii_token[first + 1 : last], "payload")
    signature = _decode_segment(ascii_token[last + 1 :], "signature")
    # RFC 7515 §5.2 step 8: the signing input is the ASCII text "header.payload".
    if not key._verify(ascii_token[:last], signature):
        raise InvalidToken(Reason.BAD_SIGNATURE)
    return payload


def _decode_segment(segment: bytes, name: str) -> bytes:
    try:
        return _b64url_decode_ascii(segment)
    except ValueError:
        raise InvalidToken(Reason.MALFORMED, f"{name} is not canonical base64url") from None


def _decode_header(segment: str) -> dict[str, Any]:
    raw = _decode_segment(segment.encode(), "header")
    try:
        header = strict_json_loads(raw)
    except ValueError:
        raise InvalidToken(Reason.MALFORMED, "header is not strict JSON") from None
    if not isinstance(header, dict):
        raise InvalidToken(Reason.MALFORMED, "header is not a JSON object")  # RFC 7515 §5.2
    return header


def _select_key(
    header: Mapping[str, Any], key_set: JwkSet, algorithms: Collection[str]
) -> PublicKey:
    alg = header.get("alg")
    if not isinstance(alg, str):
        raise InvalidToken(Reason.MALFORMED, "header alg is missing or not a string")
    # RFC 8725 §3.1/§3.2: never "none", never HMAC, nothing outside what we implement.
    if alg not in SUPPORTED_ALGORITHMS:
        raise InvalidToken(Reason.DISALLOWED_ALGORITHM)
    _check_header_members(header)
    key = key_set.get(header.get("kid"))
    if key is None:
        raise InvalidToken(Reason.UNKNOWN_KEY)
    # RFC 8725 §3.1: the key fixes the algorithm; the header may only agree with it.
    if alg != key.alg or alg not in algorithms:
        raise InvalidToken(Reason.DISALLOWED_ALGORITHM)
    return key


def _check_header_members(header: Mapping[str, Any]) -> None:
    if not _KEY_SOURCE_HEADERS.isdisjoint(header):
        names = ", ".join(sorted(_KEY_SOURCE_HEADERS.intersection(header)))
        raise InvalidToken(Reason.MALFORMED, f"header {names} not accepted")
    if "crit" in header:
        crit = header["crit"]
        # RFC 7515 §4.1.11: a non-empty array of names; we understand no extension.
        if not isinstance(crit, list) or not crit or not all(isinstance(c, str) for c in crit):
            raise InvalidToken(Reason.MALFORMED, "header crit is not a non-empty array")
        raise InvalidToken(Reason.MALFORMED, "header crit names unsupported extensions")
    # RFC 7797 §3: unencoded payloads are not supported.
    if "b64" in header and header["b64"] is not True:
        raise InvalidToken(Reason.MALFORMED, "unencoded payload (b64) not accepted")
