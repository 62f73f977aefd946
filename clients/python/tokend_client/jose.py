"""Strict JWK parsing and compact JWS verification, written on ``cryptography``.

This is the signature layer under :class:`tokend_client.LocalVerifier`. It is
deliberately narrower than general JOSE libraries (RFC 8725, JWT Best Current
Practices):

* Compact serialization only, exactly three segments of canonical unpadded base64url.
* Headers are strict JSON objects: UTF-8, no duplicate names, no NaN/Infinity.
* The key is chosen by ``kid`` from a configured :class:`JwkSet` only. Headers that
  point at other keys (``jku``, ``x5u``, ``jwk``, ``x5c``) make the token MALFORMED.
* The algorithm is bound to the key: the header ``alg`` must equal the key's ``alg``
  and be in the caller's allowlist. ``none``, HMAC and unknown algorithms are
  DISALLOWED_ALGORITHM; symmetric (``oct``) keys are never accepted.
* Any ``crit`` header and ``b64: false`` (RFC 7797) make the token MALFORMED.
* ECDSA signatures are fixed-width ``r || s`` only, with ``0 < r, s < n``; RSA
  signatures are exactly the modulus length; PSS uses salt length = hash length.

Every problem with a token raises :class:`~tokend_client.errors.InvalidToken`;
problems with the key set or the arguments (configuration errors) raise
``ValueError``/``TypeError``.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
import re
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, NamedTuple, TypeAlias

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, padding, rsa

from .errors import InvalidToken, Reason

__all__ = [
    "MAX_COMPACT_BYTES",
    "SUPPORTED_ALGORITHMS",
    "JwkSet",
    "PublicKey",
    "VerifiedJws",
    "b64url_decode",
    "b64url_encode",
    "strict_json_loads",
    "verify_compact",
    "verify_jws",
]

VerifyingKey: TypeAlias = (
    ec.EllipticCurvePublicKey | rsa.RSAPublicKey | ed25519.Ed25519PublicKey | ed448.Ed448PublicKey
)

# Anything bigger is refused before parsing; LocalVerifier applies a tighter limit.
MAX_COMPACT_BYTES = 64 * 1024
# A JWK Set is configuration, but it may be fetched over the network: bound it too.
MAX_JWKS_BYTES = 1024 * 1024

# ---------------------------------------------------------------------------
# base64url (RFC 7515 §2, RFC 4648 §5)
# ---------------------------------------------------------------------------

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


def _ascii_text(data: str | bytes) -> str:
    if type(data) is str:  # the hot path; subclasses take the general route below
        return data
    if isinstance(data, str):
        return str(data)
    if isinstance(data, bytes | bytearray):
        return bytes(data).decode("ascii")  # UnicodeDecodeError is a ValueError
    raise TypeError("expected str or bytes")


# ---------------------------------------------------------------------------
# Strict JSON (RFC 8259, RFC 7515 §4, RFC 7519 §4)
# ---------------------------------------------------------------------------

# Integers longer than this are refused whatever sys.set_int_max_str_digits says:
# NumericDates need 10-11 digits, and int() of long digit strings is quadratic.
_MAX_INT_DIGITS = 64
_LONE_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")
# Arrays and objects open at once, the outer one included: a fixed limit, the same in
# every language's verifier, instead of whatever the recursion limit allows (tokend
# issues claims at most 17 deep: tokens.max_claims_depth <= 16, inside the claims).
MAX_JSON_DEPTH = 64
# A whole string (skipped) or one bracket.
_JSON_STRUCTURE = re.compile(r'"(?:[^"\\]|\\.)*"|[\[\]{}]')


def _unique_members(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj = dict(pairs)
    # RFC 7515 §4 / RFC 7519 §4: names MUST be unique; we reject rather than pick one.
    if len(obj) != len(pairs):
        raise ValueError("duplicate member name")
    return obj


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):  # 1e999 parses as inf without this
        raise ValueError("number out of range")
    return value


def _bounded_int(text: str) -> int:
    if len(text) > _MAX_INT_DIGITS:
        raise ValueError("integer too long")
    return int(text)


_NUMBER_RULES: dict[str, Callable[[str], Any]] = {
    "parse_float": _finite_float,
    "parse_int": _bounded_int,
    "parse_constant": _reject_constant,
}
_STRICT_DECODER = json.JSONDecoder(object_pairs_hook=_unique_members, **_NUMBER_RULES)
# The same rules, but the C scanner builds each object itself, keeping the last of
# duplicate members without a word: strict_json_loads checks that there were none.
_scan_objects_unchecked = json.JSONDecoder(**_NUMBER_RULES).scan_once


def strict_json_loads(data: str | bytes) -> Any:
    """Parse JSON strictly; raise ValueError on anything doubtful.

    Bytes must be UTF-8 (no BOM, no UTF-16 guessing). Refused: duplicate member
    names, NaN/Infinity, numbers that overflow to infinity, integers over 64 digits,
    lone UTF-16 surrogates (RFC 7493 §2.1) and more than MAX_JSON_DEPTH arrays and
    objects open at once.
    """
    text = bytes(data).decode("utf-8") if isinstance(data, (bytes, bytearray)) else data
    if not isinstance(text, str):
        raise TypeError("expected str or bytes")
    # Brackets inside strings only add to the count, so the exact (slower) measure runs
    # only for documents that might be too deep.
    if text.count("[") + text.count("{") > MAX_JSON_DEPTH and _depth(text) > MAX_JSON_DEPTH:
        raise ValueError("JSON nested too deeply")
    # The hot path: one scan of a document that is exactly one JSON object, without
    # JSONDecoder.decode's two whitespace regex matches or _unique_members.
    try:
        value, end = _scan_objects_unchecked(text, 0)
    except (StopIteration, ValueError, RecursionError):
        end = -1
    # Every object of m members has m - 1 commas between them; arrays and strings only
    # add commas. So commas + 1 >= the outer object's members >= len(value): equality
    # means no duplicate name was dropped, at any depth (an inner object with two
    # members would add a comma).
    if end != len(text) or type(value) is not dict or text.count(",") + 1 != len(value):
        # Anything unusual (not an object, whitespace around it, an error, a comma too
        # many) takes the full decoder, which raises the precise error or accepts.
        try:
            value = _STRICT_DECODER.decode(text)
        except RecursionError as exc:
            raise ValueError("JSON nested too deeply") from exc
    # The escape can only be written as "\u…": a backslash test (memchr) skips the regex.
    if "\\" in text and _LONE_SURROGATE_ESCAPE.search(text):
        _refuse_lone_surrogates(value)
    return value


def _depth(text: str) -> int:
    """How many arrays and objects of ``text`` are open at once, at most. Exact for valid
    JSON; for invalid JSON (an unterminated string) it may say more, never less."""
    depth = deepest = 0
    for match in _JSON_STRUCTURE.finditer(text):
        char = match.group()
        if char == "[" or char == "{":
            depth += 1
            deepest = max(deepest, depth)
        elif char == "]" or char == "}":
            depth -= 1
    return deepest


def _refuse_lone_surrogates(value: Any) -> None:
    # Iterative walk: the parsed value may be nested close to the recursion limit.
    pending = [value]
    while pending:
        item = pending.pop()
        if isinstance(item, str):
            try:
                item.encode("utf-8")
            except UnicodeEncodeError as exc:
                raise ValueError("lone surrogate in JSON string") from exc
        elif isinstance(item, dict):
            pending.extend(item)
            pending.extend(item.values())
        elif isinstance(item, list):
            pending.extend(item)


# ---------------------------------------------------------------------------
# Algorithms and curves (RFC 7518 §3, RFC 8037)
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class _Curve:
    name: str
    alg: str
    size: int  # bytes per coordinate and per signature half
    p: int  # field prime: coordinates must be below it
    n: int  # group order: signature halves must be in [1, n-1]
    curve: ec.EllipticCurve
    hash: hashes.HashAlgorithm


_CURVES: dict[str, _Curve] = {
    c.name: c
    for c in (
        _Curve(
            "P-256",
            "ES256",
            32,
            0xFFFFFFFF00000001000000000000000000000000FFFFFFFFFFFFFFFFFFFFFFFF,
            0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551,
            ec.SECP256R1(),
            hashes.SHA256(),
        ),
        _Curve(
            "P-384",
            "ES384",
            48,
            int(
                "FFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFE"
                "FFFFFFFF0000000000000000FFFFFFFF",
                16,
            ),
            int(
                "FFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFC7634D81F4372DDF"
                "581A0DB248B0A77AECEC196ACCC52973",
                16,
            ),
            ec.SECP384R1(),
            hashes.SHA384(),
        ),
        _Curve(
            "P-521",
            "ES512",
            66,
            2**521 - 1,
            int(
                "01FFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFF"
                "FA51868783BF2F966B7FCC0148F709A5D03BB5C9B8899C47AEBB6FB71E91386409",
                16,
            ),
            ec.SECP521R1(),
            hashes.SHA512(),
        ),
    )
}
_CURVE_BY_ALG: dict[str, _Curve] = {c.alg: c for c in _CURVES.values()}
_CURVE_BY_OPENSSL_NAME: dict[str, _Curve] = {c.curve.name: c for c in _CURVES.values()}

# RFC 7518 §3.3 (RSASSA-PKCS1-v1_5) and §3.5 (RSASSA-PSS): alg -> (hash, is PSS).
_RSA_ALGS: dict[str, tuple[hashes.HashAlgorithm, bool]] = {
    "RS256": (hashes.SHA256(), False),
    "RS384": (hashes.SHA384(), False),
    "RS512": (hashes.SHA512(), False),
    "PS256": (hashes.SHA256(), True),
    "PS384": (hashes.SHA384(), True),
    "PS512": (hashes.SHA512(), True),
}

# RFC 8037 §2: OKP curve -> (public key bytes, signature bytes, loader).
_OKP_CURVES: dict[str, tuple[int, int, Callable[[bytes], VerifyingKey]]] = {
    "Ed25519": (32, 64, ed25519.Ed25519PublicKey.from_public_bytes),
    "Ed448": (57, 114, ed448.Ed448PublicKey.from_public_bytes),
}

SUPPORTED_ALGORITHMS: frozenset[str] = frozenset({*_CURVE_BY_ALG, *_RSA_ALGS, "EdDSA"})

_RSA_MIN_BITS = 2048  # RFC 7518 §3.3 / §3.5: 2048 bits or larger MUST be used
_RSA_MAX_BITS = 8192  # verification cost grows with the modulus; bound it
_RSA_MAX_EXPONENT_BITS = 64  # the same bound OpenSSL applies to large moduli

# ROCA (CVE-2017-15361): moduli from the flawed Infineon generator are, modulo each of
# these primes, powers of 65537. A random modulus passes all 38 tests with
# probability ~2^-154, so a match means a factorable key.
_ROCA_PRIMES = (
    3, 5, 7, 11, 13, 17, 19, 23, 29, 31, 37, 41, 43, 47, 53, 59, 61, 67, 71, 73, 79,
    83, 89, 97, 101, 103, 107, 109, 113, 127, 131, 137, 139, 149, 151, 157, 163, 167,
)  # fmt: skip
_ROCA_RESIDUES: tuple[tuple[int, frozenset[int]], ...] = tuple(
    (p, frozenset(pow(65537, k, p) for k in range(p))) for p in _ROCA_PRIMES
)


def _has_roca_fingerprint(modulus: int) -> bool:
    return all(modulus % p in residues for p, residues in _ROCA_RESIDUES)


# ---------------------------------------------------------------------------
# Signature verifiers, built once per key (the hot path only calls them)
# ---------------------------------------------------------------------------

_Verify = Callable[[bytes, bytes], bool]


def _ecdsa_verifier(key: ec.EllipticCurvePublicKey, curve: _Curve) -> _Verify:
    algorithm = ec.ECDSA(curve.hash)
    size, key_verify = curve.size, key.verify
    # Equal-length big-endian octet strings compare like the integers they encode, so
    # the range check needs no integer conversion.
    zero, order = bytes(size), curve.n.to_bytes(size, "big")
    length, frames = 2 * size, _der_frames(size)

    def verify(signing_input: bytes, signature: bytes) -> bool:
        # RFC 7518 §3.4: the JWS signature is R || S, each exactly the curve size.
        if len(signature) != length:
            return False
        r, s = signature[:size], signature[size:]
        # FIPS 186-5 §6.4.2: reject r, s outside [1, n-1] before any curve arithmetic.
        if not (zero < r < order and zero < s < order):
            return False
        r_first, s_first = r[0], s[0]
        if r_first and s_first:  # no zero octet to strip: only the sign octets vary
            head, middle = frames[r_first >> 7][s_first >> 7]
            der = head + r + middle + s
        else:
            der = _der_signature(r, s)
        try:
            key_verify(der, signing_input, algorithm)
        except InvalidSignature:
            return False
        return True

    return verify


def _der_integer(value: bytes) -> bytes:
    """DER INTEGER of a positive big-endian value (X.690 §8.3: minimal, sign bit clear)."""
    value = value.lstrip(b"\x00")
    if value[0] & 0x80:
        value = b"\x00" + value
    return b"\x02" + len(value).to_bytes(1, "big") + value


def _der_sequence_header(length: int) -> bytes:
    # X.690 §8.1.3: short form up to 127 octets (P-256, P-384); P-521 needs the 0x81 form.
    return b"\x30" + (bytes((length,)) if length < 0x80 else bytes((0x81, length)))


def _der_signature(r: bytes, s: bytes) -> bytes:
    """The DER ECDSA-Sig-Value (RFC 3279 §2.2.3) that `cryptography` verifies: what
    encode_dss_signature makes, without the detour through Python integers."""
    body = _der_integer(r) + _der_integer(s)
    return _der_sequence_header(len(body)) + body


def _der_frames(size: int) -> list[list[tuple[bytes, bytes]]]:
    """The octets around r and s in _der_signature(r, s) when neither starts with a
    zero octet, indexed by the top bit of r's and of s's first octet (a set top bit
    takes a 0x00 sign octet): (everything before r, everything between r and s)."""
    frames = []
    for r_sign in (0, 1):
        row = []
        for s_sign in (0, 1):
            r_length, s_length = size + r_sign, size + s_sign
            head = _der_sequence_header(4 + r_length + s_length) + bytes((2, r_length))
            row.append((head + bytes(r_sign), bytes((2, s_length)) + bytes(s_sign)))
        frames.append(row)
    return frames


def _rsa_verifier(key: rsa.RSAPublicKey, alg: str) -> _Verify:
    hash_alg, is_pss = _RSA_ALGS[alg]
    pad: padding.AsymmetricPadding
    if is_pss:
        # RFC 7518 §3.5: MGF1 with the same hash, salt length equal to the hash size.
        pad = padding.PSS(mgf=padding.MGF1(hash_alg), salt_length=hash_alg.digest_size)
    else:
        pad = padding.PKCS1v15()
    modulus_bytes, key_verify = (key.key_size + 7) // 8, key.verify

    def verify(signing_input: bytes, signature: bytes) -> bool:
        # RFC 8017 §8.1.2 / §8.2.2 step 1: the signature is exactly k octets long.
        if len(signature) != modulus_bytes:
            return False
        try:
            key_verify(signature, signing_input, pad, hash_alg)
        except (InvalidSignature, ValueError):
            return False
        return True

    return verify


def _eddsa_verifier(key: ed25519.Ed25519PublicKey | ed448.Ed448PublicKey) -> _Verify:
    signature_bytes = 64 if isinstance(key, ed25519.Ed25519PublicKey) else 114
    key_verify = key.verify

    def verify(signing_input: bytes, signature: bytes) -> bool:
        # RFC 8032 §5.1.7 / §5.2.7: the signature has a fixed length.
        if len(signature) != signature_bytes:
            return False
        try:
            key_verify(signature, signing_input)
        except InvalidSignature:
            return False
        return True

    return verify


def _make_verifier(alg: str, key: object) -> _Verify:
    """Check that ``key`` may be used with ``alg`` and return its verify function."""
    if alg in _CURVE_BY_ALG:
        curve = _CURVE_BY_ALG[alg]
        if not isinstance(key, ec.EllipticCurvePublicKey) or key.curve.name != curve.curve.name:
            raise ValueError(f"{alg} needs a {curve.name} key")  # RFC 7518 §3.4
        return _ecdsa_verifier(key, curve)
    if alg in _RSA_ALGS:
        if not isinstance(key, rsa.RSAPublicKey):
            raise ValueError(f"{alg} needs an RSA key")
        _check_rsa_policy(key)
        return _rsa_verifier(key, alg)
    if alg == "EdDSA":
        if not isinstance(key, ed25519.Ed25519PublicKey | ed448.Ed448PublicKey):
            raise ValueError("EdDSA needs an Ed25519 or Ed448 key")  # RFC 8037 §3.1
        return _eddsa_verifier(key)
    raise ValueError("unsupported or disallowed algorithm")


def _check_rsa_policy(key: rsa.RSAPublicKey) -> None:
    numbers = key.public_numbers()
    if not _RSA_MIN_BITS <= key.key_size <= _RSA_MAX_BITS:
        raise ValueError(f"RSA modulus must be {_RSA_MIN_BITS}-{_RSA_MAX_BITS} bits")
    # e = 1 makes every "signature" equal its message; even e is not RSA.
    if numbers.e < 3 or numbers.e % 2 == 0 or numbers.e.bit_length() > _RSA_MAX_EXPONENT_BITS:
        raise ValueError("RSA public exponent must be odd, at least 3 and at most 64 bits")
    if _has_roca_fingerprint(numbers.n):
        raise ValueError("RSA modulus has the ROCA fingerprint (CVE-2017-15361)")


# ---------------------------------------------------------------------------
# Keys
# ---------------------------------------------------------------------------

_PRIVATE_MEMBERS = frozenset({"d", "p", "q", "dp", "dq", "qi", "k", "oth"})


@dataclass(frozen=True)
class PublicKey:
    """One verification key: its ``kid``, the single ``alg`` it is bound to, the key.

    Construction checks that ``alg`` fits the key (curve, RSA size and exponent,
    ROCA) and precomputes the verifier, so :meth:`verify` does no key parsing.
    """

    kid: str | None
    alg: str
    key: VerifyingKey
    _verify: _Verify = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.kid is not None and (not isinstance(self.kid, str) or not self.kid):
            raise ValueError("kid must be a non-empty string")
        object.__setattr__(self, "_verify", _make_verifier(self.alg, self.key))

    def __hash__(self) -> int:
        # cryptography key objects are comparable but not hashable.
        return hash((self.kid, self.alg))

    def verify(self, signing_input: bytes, signature: bytes) -> bool:
        """True when ``signature`` is valid for ``signing_input``; never raises for a bad one."""
        return self._verify(signing_input, signature)

    @classmethod
    def from_jwk(cls, jwk: Mapping[str, Any]) -> PublicKey:
        """Build from one public JWK (RFC 7517 §4); raise ValueError if unusable."""
        if not isinstance(jwk, Mapping):
            raise ValueError("JWK must be a JSON object")
        if not _PRIVATE_MEMBERS.isdisjoint(jwk):
            raise ValueError("JWK carries private key members")
        _check_key_usage(jwk)
        kid, alg = jwk.get("kid"), jwk.get("alg")
        if alg is not None and not isinstance(alg, str):
            raise ValueError("JWK alg must be a string")  # RFC 7517 §4.4
        key, implied_alg = _key_from_jwk(jwk)
        if alg is None:
            alg = implied_alg
        if alg is None:
            # RS* and PS* share one key type: without "alg" the header would choose.
            raise ValueError("RSA JWK needs alg (RS256/384/512 or PS256/384/512)")
        return cls(kid=kid, alg=alg, key=key)

    def to_jwk(self) -> dict[str, str]:
        """The public JWK for this key (with ``kid``, ``alg`` and ``use: sig``)."""
        jwk = _jwk_members(self.key)
        jwk.update(alg=self.alg, use="sig")
        if self.kid is not None:
            jwk["kid"] = self.kid
        return jwk


def _check_key_usage(jwk: Mapping[str, Any]) -> None:
    use = jwk.get("use")
    if use is not None and use != "sig":
        raise ValueError("JWK use is not sig")  # RFC 7517 §4.2
    ops = jwk.get("key_ops")
    if ops is None:
        return
    # RFC 7517 §4.3: an array of unique strings; we need "verify" among them.
    if not isinstance(ops, list) or not all(isinstance(op, str) for op in ops):
        raise ValueError("JWK key_ops must be an array of strings")
    if len(set(ops)) != len(ops) or "verify" not in ops:
        raise ValueError("JWK key_ops does not allow verify")


def _key_from_jwk(jwk: Mapping[str, Any]) -> tuple[VerifyingKey, str | None]:
    """Return the key and the alg its type implies (None for RSA)."""
    kty = jwk.get("kty")
    if kty == "EC":
        return _ec_from_jwk(jwk)
    if kty == "RSA":
        return _rsa_from_jwk(jwk), None
    if kty == "OKP":
        return _okp_from_jwk(jwk), "EdDSA"
    if kty == "oct":
        raise ValueError("symmetric (oct) keys are never accepted")  # RFC 8725 §3.1
    raise ValueError("unsupported kty")


def _member_bytes(jwk: Mapping[str, Any], name: str) -> bytes:
    value = jwk.get(name)
    if not isinstance(value, str):
        raise ValueError(f"JWK member {name} must be a base64url string")
    return b64url_decode(value)


def _ec_from_jwk(jwk: Mapping[str, Any]) -> tuple[ec.EllipticCurvePublicKey, str]:
    crv = jwk.get("crv")
    curve = _CURVES.get(crv) if isinstance(crv, str) else None
    if curve is None:
        raise ValueError("unsupported EC crv")
    x, y = _member_bytes(jwk, "x"), _member_bytes(jwk, "y")
    # RFC 7518 §6.2.1.2/§6.2.1.3: x and y are exactly the curve's coordinate size.
    if len(x) != curve.size or len(y) != curve.size:
        raise ValueError("EC coordinates have the wrong length")
    if max(int.from_bytes(x, "big"), int.from_bytes(y, "big")) >= curve.p:
        raise ValueError("EC coordinates are not reduced")
    # cryptography refuses points that are not on the curve (invalid-curve attacks).
    key = ec.EllipticCurvePublicKey.from_encoded_point(curve.curve, b"\x04" + x + y)
    return key, curve.alg


def _uint_member(jwk: Mapping[str, Any], name: str) -> int:
    raw = _member_bytes(jwk, name)
    # RFC 7518 §2 Base64urlUInt: the minimum number of octets, so no leading zero.
    if not raw or raw[0] == 0:
        raise ValueError(f"JWK member {name} is not a minimal unsigned integer")
    return int.from_bytes(raw, "big")


def _rsa_from_jwk(jwk: Mapping[str, Any]) -> rsa.RSAPublicKey:
    n, e = _uint_member(jwk, "n"), _uint_member(jwk, "e")
    if n.bit_length() > _RSA_MAX_BITS or e.bit_length() > _RSA_MAX_EXPONENT_BITS:
        raise ValueError("RSA key members are too large")
    return rsa.RSAPublicNumbers(e, n).public_key()


def _okp_from_jwk(jwk: Mapping[str, Any]) -> VerifyingKey:
    crv = jwk.get("crv")
    spec = _OKP_CURVES.get(crv) if isinstance(crv, str) else None
    if spec is None:
        raise ValueError("unsupported OKP crv")  # RFC 8037 §2: X25519/X448 cannot sign
    key_bytes, _, load = spec
    x = _member_bytes(jwk, "x")
    if len(x) != key_bytes:
        raise ValueError("OKP x has the wrong length")
    _check_edwards_point(crv, x)
    return load(x)


_ED25519_P = 2**255 - 19
_ED448_P = 2**448 - 2**224 - 1
# y of the two order-8 points of edwards25519 (-y gives the other two); the other points
# of small order have y in {0, 1, p - 1}.
_ED25519_ORDER_8_Y = 2707385501144840649318225287225658788936804267575313519463743609750303402022
_SMALL_ORDER_Y = {
    "Ed25519": frozenset(
        {0, 1, _ED25519_P - 1, _ED25519_ORDER_8_Y, _ED25519_P - _ED25519_ORDER_8_Y}
    ),
    "Ed448": frozenset({0, 1, _ED448_P - 1}),  # cofactor 4: orders 1, 2 and 4
}


def _check_edwards_point(crv: str, x: bytes) -> None:
    """Refuse non-canonical encodings and points of small order: with such a public key
    (the identity, say) forged signatures verify for every message, as with RSA e = 1."""
    if crv == "Ed25519":
        p, y = _ED25519_P, int.from_bytes(x, "little") & ((1 << 255) - 1)
    else:
        # RFC 8032 §5.2.3: the last octet holds only the sign of x, in its top bit.
        if x[-1] & 0x7F:
            raise ValueError("OKP x is not a canonical Ed448 point encoding")
        p, y = _ED448_P, int.from_bytes(x[:-1], "little")
    # RFC 8032 §5.1.3 / §5.2.3 step 1: y must be below p.
    if y >= p:
        raise ValueError("OKP x is not a canonical point encoding")
    if y in _SMALL_ORDER_Y[crv]:
        raise ValueError("OKP x is a point of small order")


def _jwk_members(key: VerifyingKey) -> dict[str, str]:
    if isinstance(key, ec.EllipticCurvePublicKey):
        curve = _CURVE_BY_OPENSSL_NAME[key.curve.name]
        numbers = key.public_numbers()
        return {
            "kty": "EC",
            "crv": curve.name,
            "x": b64url_encode(numbers.x.to_bytes(curve.size, "big")),
            "y": b64url_encode(numbers.y.to_bytes(curve.size, "big")),
        }
    if isinstance(key, rsa.RSAPublicKey):
        numbers = key.public_numbers()
        return {"kty": "RSA", "n": _uint_b64(numbers.n), "e": _uint_b64(numbers.e)}
    crv = "Ed25519" if isinstance(key, ed25519.Ed25519PublicKey) else "Ed448"
    return {"kty": "OKP", "crv": crv, "x": b64url_encode(key.public_bytes_raw())}


def _uint_b64(value: int) -> str:
    return b64url_encode(value.to_bytes((value.bit_length() + 7) // 8, "big"))


class JwkSet:
    """An immutable set of verification keys, looked up by ``kid``.

    Build it with ``JwkSet(keys)`` from :class:`PublicKey` objects or with
    :meth:`from_json` from a JWK Set document (RFC 7517 §5). Policy of ``from_json``:

    * The whole set is refused (ValueError) when it is not ``{"keys": [objects…]}``,
      when any entry carries private members (``d``, ``p``, ``q``, ``dp``, ``dq``,
      ``qi``, ``k``, ``oth``; so every ``oct`` key with its secret) because a
      publisher that leaks private keys is broken, or when two entries share a
      ``kid``, because lookup would be ambiguous.
    * Other keys that cannot be used for verification are dropped (RFC 7517 §5 says
      to ignore them): unknown ``kty``/``crv``, ``use`` other than ``sig``,
      ``key_ops`` without ``verify``, RSA without ``alg`` or below 2048 bits, bad
      exponent, ROCA moduli, points off the curve, ``alg`` inconsistent with the key.
      :attr:`rejected` lists them with the reason.

    Keys without a ``kid`` are kept but can never be selected, since tokens must
    name their key.
    """

    __slots__ = ("_by_kid", "_headers", "_keys", "_rejected")

    def __init__(self, keys: Iterable[PublicKey]) -> None:
        self._keys: tuple[PublicKey, ...] = tuple(keys)
        self._rejected: tuple[tuple[str | None, str], ...] = ()
        self._by_kid: dict[str, PublicKey] = {}
        # Header segment -> (header, key), for headers of tokens whose signature verified
        # with this set (see verify_jws): the header is then decoded once per key, not per
        # token. Bounded, and only ever filled by validly signed tokens.
        self._headers: dict[str, tuple[Mapping[str, Any], PublicKey]] = {}
        for key in self._keys:
            if not isinstance(key, PublicKey):
                raise TypeError("JwkSet holds PublicKey objects")
            if key.kid is None:
                continue
            if key.kid in self._by_kid:
                raise ValueError("duplicate kid in key set")  # RFC 7517 §4.5
            self._by_kid[key.kid] = key

    @classmethod
    def from_json(cls, data: Mapping[str, Any] | str | bytes) -> JwkSet:
        """Parse a JWK Set given as a dict or JSON text (see the class policy)."""
        if isinstance(data, str | bytes | bytearray):
            if len(data) > MAX_JWKS_BYTES:
                raise ValueError("JWK Set document is too large")
            data = strict_json_loads(data)
        entries = _jwks_entries(data)
        keys: list[PublicKey] = []
        rejected: list[tuple[str | None, str]] = []
        for entry in entries:
            try:
                keys.append(PublicKey.from_jwk(entry))
            except ValueError as exc:
                kid = entry.get("kid")
                rejected.append((kid if isinstance(kid, str) else None, str(exc)))
        key_set = cls(keys)
        key_set._rejected = tuple(rejected)
        return key_set

    @property
    def keys(self) -> tuple[PublicKey, ...]:
        """The usable keys, in document order."""
        return self._keys

    @property
    def rejected(self) -> tuple[tuple[str | None, str], ...]:
        """``(kid, reason)`` for each entry :meth:`from_json` dropped."""
        return self._rejected

    def get(self, kid: object) -> PublicKey | None:
        """The key named ``kid``, or None."""
        return self._by_kid.get(kid) if isinstance(kid, str) else None

    def _remember_header(self, segment: str, header: Mapping[str, Any], key: PublicKey) -> None:
        # Racing threads may both insert; the bound is then exceeded by at most a few.
        if len(self._headers) < _MAX_REMEMBERED_HEADERS:
            self._headers[segment] = (header, key)

    def __len__(self) -> int:
        return len(self._keys)

    def __iter__(self) -> Iterator[PublicKey]:
        return iter(self._keys)

    def __repr__(self) -> str:
        return f"JwkSet(kids={sorted(self._by_kid)!r})"


def _jwks_entries(document: object) -> list[Mapping[str, Any]]:
    if not isinstance(document, Mapping):
        raise ValueError("JWK Set must be a JSON object")
    entries = document.get("keys")
    # RFC 7517 §5: a JWK Set is an object whose "keys" member is an array of JWKs.
    if not isinstance(entries, list) or not all(isinstance(e, Mapping) for e in entries):
        raise ValueError('JWK Set needs a "keys" array of objects')
    if any(not _PRIVATE_MEMBERS.isdisjoint(entry) for entry in entries):
        raise ValueError("JWK Set contains private or symmetric key material")
    kids = [e["kid"] for e in entries if isinstance(e.get("kid"), str)]
    if len(kids) != len(set(kids)):
        raise ValueError("duplicate kid in JWK Set")  # RFC 7517 §4.5
    return entries


# ---------------------------------------------------------------------------
# Compact JWS verification (RFC 7515 §5.2, RFC 8725)
# ---------------------------------------------------------------------------

# RFC 8725 §3.10 / RFC 7515 §4.1.2-4.1.6: keys come from our JWKS, never the token.
_KEY_SOURCE_HEADERS = frozenset({"jku", "x5u", "jwk", "x5c"})
# A signer uses one header per key version, so a handful of entries covers every kid.
_MAX_REMEMBERED_HEADERS = 32


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


def as_key_set(jwks: JwkSet | Mapping[str, Any] | str | bytes) -> JwkSet:
    """`jwks` as a JwkSet: one already built, or a JWK Set as a dict or JSON text."""
    if isinstance(jwks, JwkSet):
        return jwks
    if isinstance(jwks, Mapping | str | bytes | bytearray):
        return JwkSet.from_json(jwks)
    raise TypeError("jwks must be a JwkSet, a JWK Set dict or JSON text")


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
