"""Strict base64url (RFC 7515 §2, RFC 4648 §5): hand-written because the standard
library's decoders accept padding, other alphabets and non-zero unused bits, and a
JWS segment must have exactly one accepted encoding."""

from __future__ import annotations

import base64
import binascii
import re

__all__ = ["b64url_decode", "b64url_encode", "b64url_uint"]

_B64URL_TEXT = re.compile(r"[A-Za-z0-9_-]*")
_B64URL_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
_B64URL_VALUE = {char: index for index, char in enumerate(_B64URL_ALPHABET)}
# Bits of the last character that carry no data, by (length % 4).
_UNUSED_BITS_MASK = {2: 0x0F, 3: 0x03}
# By length % 4, the characters that may end a canonical encoding (RFC 4648 §3.5: the
# unused bits are zero). None may end a length of 1 % 4, which no encoder produces;
# index 0 is never consulted (no unused bits).
_CANONICAL_LAST = (
    b"",
    b"",
    *(
        bytes(ord(char) for char, value in _B64URL_VALUE.items() if not value & mask)
        for mask in (_UNUSED_BITS_MASK[2], _UNUSED_BITS_MASK[3])
    ),
)
# base64url's two letters become standard base64's; "+", "/" and "=" become "!", which
# binascii's strict mode refuses like every other character outside the alphabet.
_TO_STRICT_STANDARD = bytes.maketrans(b"-_+/=", b"+/!!!")
_PADDING = (b"", b"", b"==", b"=")
_a2b_base64 = binascii.a2b_base64


def b64url_decode(data: str | bytes) -> bytes:
    """Decode canonical unpadded base64url; raise ValueError on anything else.

    Refused: ``=`` padding, ``+``/``/``, whitespace, any other character, a length
    that no encoder produces (``len % 4 == 1``) and non-zero unused trailing bits,
    so each byte string has exactly one accepted encoding.
    """
    text = _ascii_text(data)
    try:
        return _b64url_decode_ascii(text.encode("ascii"))
    except ValueError:  # UnicodeEncodeError too
        raise ValueError(_b64url_problem(text)) from None


def _b64url_decode_ascii(data: bytes) -> bytes:
    """b64url_decode of ASCII bytes, the one decoder every caller goes through.

    Raises ValueError (binascii.Error) without saying why.
    """
    remainder = len(data) & 3
    if remainder and data[-1] not in _CANONICAL_LAST[remainder]:
        raise ValueError("not canonical base64url")
    standard = data.translate(_TO_STRICT_STANDARD) + _PADDING[remainder]
    return _a2b_base64(standard, strict_mode=True)


def _b64url_problem(text: str) -> str:
    """What is wrong with text that _b64url_decode_ascii refused, for the error message."""
    # RFC 7515 §2: base64url with trailing '=' omitted and no other characters.
    if _B64URL_TEXT.fullmatch(text) is None:
        return "not unpadded base64url"
    if len(text) % 4 == 1:
        return "impossible base64url length"
    # RFC 4648 §3.5: canonical encoding sets the pad bits to zero.
    return "non-canonical base64url (unused bits set)"


def b64url_encode(data: bytes) -> str:
    """Encode bytes as unpadded base64url text."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64url_uint(value: int) -> str:
    """A non-negative integer as Base64urlUInt: minimal big-endian octets (RFC 7518 §2),
    one zero octet for zero."""
    return b64url_encode(value.to_bytes(max(1, (value.bit_length() + 7) // 8), "big"))


def _ascii_text(data: str | bytes) -> str:
    if type(data) is str:  # the hot path; subclasses take the general route below
        return data
    if isinstance(data, str):
        return str(data)
    if isinstance(data, bytes | bytearray):
        return bytes(data).decode("ascii")  # UnicodeDecodeError is a ValueError
    raise TypeError("expected str or bytes")
