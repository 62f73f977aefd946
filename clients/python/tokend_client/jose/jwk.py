"""JWKs (RFC 7517, RFC 7518 §6, RFC 8037 §2): public JWK ↔ key, each key bound to one
algorithm, and the key policy a verifier applies before trusting a key (RSA size and
exponent, ROCA moduli, points off the curve or of small order). Hand-written on
``cryptography`` because general JOSE libraries accept keys this policy refuses."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, rsa

from .b64url import b64url_decode, b64url_encode, b64url_uint
from .json import strict_json_loads
from .jwa import (
    CURVE_BY_OPENSSL_NAME,
    CURVES,
    OKP_CURVES,
    Verify,
    VerifyingKey,
    make_verifier,
)

__all__ = ["MAX_JWKS_BYTES", "JwkSet", "PublicKey", "as_key_set", "jwk_members", "public_jwk"]

# A JWK Set is configuration, but it may be fetched over the network: bound it too.
MAX_JWKS_BYTES = 1024 * 1024
# A signer uses one header per key version, so a handful of entries covers every kid.
_MAX_REMEMBERED_HEADERS = 32

# ---------------------------------------------------------------------------
# Key policy
# ---------------------------------------------------------------------------

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


def _check_rsa_policy(key: rsa.RSAPublicKey) -> None:
    numbers = key.public_numbers()
    if not _RSA_MIN_BITS <= key.key_size <= _RSA_MAX_BITS:
        raise ValueError(f"RSA modulus must be {_RSA_MIN_BITS}-{_RSA_MAX_BITS} bits")
    # e = 1 makes every "signature" equal its message; even e is not RSA.
    if numbers.e < 3 or numbers.e % 2 == 0 or numbers.e.bit_length() > _RSA_MAX_EXPONENT_BITS:
        raise ValueError("RSA public exponent must be odd, at least 3 and at most 64 bits")
    if _has_roca_fingerprint(numbers.n):
        raise ValueError("RSA modulus has the ROCA fingerprint (CVE-2017-15361)")


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
    _verify: Verify = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.kid is not None and (not isinstance(self.kid, str) or not self.kid):
            raise ValueError("kid must be a non-empty string")
        verify = make_verifier(self.alg, self.key)
        if isinstance(self.key, rsa.RSAPublicKey):
            _check_rsa_policy(self.key)
        object.__setattr__(self, "_verify", verify)

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
        jwk = jwk_members(self.key)
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
    curve = CURVES.get(crv) if isinstance(crv, str) else None
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
    spec = OKP_CURVES.get(crv) if isinstance(crv, str) else None
    if spec is None:
        raise ValueError("unsupported OKP crv")  # RFC 8037 §2: X25519/X448 cannot sign
    key_bytes, _, load = spec
    x = _member_bytes(jwk, "x")
    if len(x) != key_bytes:
        raise ValueError("OKP x has the wrong length")
    _check_edwards_point(crv, x)
    return load(x)


def jwk_members(key: VerifyingKey) -> dict[str, str]:
    """The key-type members of a public JWK for ``key`` (no kid, alg or use)."""
    if isinstance(key, ec.EllipticCurvePublicKey):
        curve = CURVE_BY_OPENSSL_NAME.get(key.curve.name)
        if curve is None:
            raise ValueError(f"unsupported EC curve {key.curve.name}")
        numbers = key.public_numbers()
        # RFC 7518 §6.2.1.2: x and y are full-length, including leading zero octets.
        return {
            "kty": "EC",
            "crv": curve.name,
            "x": b64url_encode(numbers.x.to_bytes(curve.size, "big")),
            "y": b64url_encode(numbers.y.to_bytes(curve.size, "big")),
        }
    if isinstance(key, rsa.RSAPublicKey):
        numbers = key.public_numbers()
        # RFC 7518 §6.3.1.1: n and e are minimal big-endian octet strings.
        return {"kty": "RSA", "n": b64url_uint(numbers.n), "e": b64url_uint(numbers.e)}
    if isinstance(key, ed25519.Ed25519PublicKey | ed448.Ed448PublicKey):
        crv = "Ed25519" if isinstance(key, ed25519.Ed25519PublicKey) else "Ed448"
        return {"kty": "OKP", "crv": crv, "x": b64url_encode(key.public_bytes_raw())}  # RFC 8037 §2
    raise TypeError(f"unsupported public key type {type(key).__name__}")


def public_jwk(key: VerifyingKey, *, kid: str, alg: str) -> dict[str, str]:
    """The public JWK (RFC 7517 §4) a signer publishes for ``key``: with kid, alg and
    use "sig". Not checked against ``alg``: :class:`PublicKey` does that on the reading
    side."""
    return {**jwk_members(key), "kid": kid, "alg": alg, "use": "sig"}


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



def as_key_set(jwks: JwkSet | Mapping[str, Any] | str | bytes) -> JwkSet:
    """`jwks` as a JwkSet: one already built, or a JWK Set as a dict or JSON text."""
    if isinstance(jwks, JwkSet):
        return jwks
    if isinstance(jwks, Mapping | str | bytes | bytearray):
        return JwkSet.from_json(jwks)
    raise TypeError("jwks must be a JwkSet, a JWK Set dict or JSON text")
