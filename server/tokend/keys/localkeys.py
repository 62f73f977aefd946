"""Private keys held in process memory (custody kv): JWK in and out, and JWS signing.

Only the kv custody uses this; with transit the private key never leaves Vault. Each
function is strict about what it accepts, since a private JWK read from storage is data
someone else may have written: the key type must fit the algorithm, every member must be
well-formed base64url, and the public members must be the ones the private key implies.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

from tokend.keys.keyring import ALGORITHMS
from tokend_client.jose import (
    b64url_decode,
    b64url_encode,
    b64url_uint,
    create_signature,
    public_jwk,
)

PrivateKey = ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey

_RSA_MEMBERS = ("n", "e", "d", "p", "q", "dp", "dq", "qi")


class KeyDataError(ValueError):
    """A stored private key that cannot be used; the message never quotes key material."""


def generate(algorithm: str, rsa_bits: int = 2048) -> PrivateKey:
    """A fresh private key for a JWS algorithm (RSA keys of `rsa_bits`)."""
    if algorithm == "ES256":
        return ec.generate_private_key(ec.SECP256R1())
    if algorithm in ("RS256", "PS256"):
        return rsa.generate_private_key(public_exponent=65537, key_size=rsa_bits)
    if algorithm == "EdDSA":
        return ed25519.Ed25519PrivateKey.generate()
    raise ValueError(f"algorithm must be one of {sorted(ALGORITHMS)}, not {algorithm!r}")


def private_jwk(key: PrivateKey) -> dict[str, str]:
    """The private JWK (RFC 7517/7518/8037) of `key`: key material only, no kid or alg."""
    public = public_jwk(key.public_key(), kid="-", alg="-")
    members = {k: v for k, v in public.items() if k not in ("kid", "alg", "use")}
    if isinstance(key, ec.EllipticCurvePrivateKey):
        size = (key.curve.key_size + 7) // 8  # RFC 7518 §6.2.2.1: d is full-length
        members["d"] = b64url_encode(key.private_numbers().private_value.to_bytes(size, "big"))
    elif isinstance(key, rsa.RSAPrivateKey):
        nums = key.private_numbers()
        for name, value in (("d", nums.d), ("p", nums.p), ("q", nums.q), ("dp", nums.dmp1),
                            ("dq", nums.dmq1), ("qi", nums.iqmp)):
            members[name] = b64url_uint(value)
    else:
        members["d"] = b64url_encode(key.private_bytes_raw())  # RFC 8037 §2
    return members


def load_private_jwk(jwk: object, algorithm: str) -> PrivateKey:
    """The private key a stored JWK holds, for `algorithm`; KeyDataError if it does not fit."""
    if not isinstance(jwk, Mapping):
        raise KeyDataError("the key is not a JSON object")
    if algorithm == "ES256":
        key: PrivateKey = _ec_key(jwk)
    elif algorithm in ("RS256", "PS256"):
        key = _rsa_key(jwk)
    elif algorithm == "EdDSA":
        key = _ed25519_key(jwk)
    else:
        raise KeyDataError(f"unsupported algorithm {algorithm!r}")
    # The stored public members must be the ones the private key implies: a mismatch
    # would publish a key that verifies nothing this one signs.
    if private_jwk(key) != {k: jwk.get(k) for k in private_jwk(key)}:
        raise KeyDataError("the public members do not belong to the private key")
    return key


#: sign(algorithm, key, signing_input): the raw JWS signature (RFC 7515 §5.1) of a signing
#: input, made by tokend_client.jose's one signer (kv custody runs it on the event loop;
#: an alias, not a wrapper, so the hot path pays no extra call).
sign = create_signature


# -- JWK members -------------------------------------------------------------------------


def _ec_key(jwk: Mapping[str, Any]) -> ec.EllipticCurvePrivateKey:
    if jwk.get("kty") != "EC" or jwk.get("crv") != "P-256":
        raise KeyDataError("ES256 needs a JWK with kty EC and crv P-256")
    d = _member(jwk, "d", exact=32)
    try:
        return ec.derive_private_key(d, ec.SECP256R1())
    except ValueError as exc:
        raise KeyDataError("d is not a P-256 private key") from exc


def _rsa_key(jwk: Mapping[str, Any]) -> rsa.RSAPrivateKey:
    if jwk.get("kty") != "RSA":
        raise KeyDataError("RS256 and PS256 need a JWK with kty RSA")
    n, e, d, p, q, dp, dq, qi = (_member(jwk, name) for name in _RSA_MEMBERS)
    if n.bit_length() < 2048:
        raise KeyDataError(f"the RSA key has {n.bit_length()} bits; at least 2048 are needed")
    try:
        return rsa.RSAPrivateNumbers(p, q, d, dp, dq, qi, rsa.RSAPublicNumbers(e, n)).private_key()
    except ValueError as exc:
        raise KeyDataError("the RSA members do not make a valid key") from exc


def _ed25519_key(jwk: Mapping[str, Any]) -> ed25519.Ed25519PrivateKey:
    if jwk.get("kty") != "OKP" or jwk.get("crv") != "Ed25519":
        raise KeyDataError("EdDSA needs a JWK with kty OKP and crv Ed25519")
    raw = _b64(jwk, "d")
    if len(raw) != 32:
        raise KeyDataError("d of an Ed25519 key must be 32 octets")
    return ed25519.Ed25519PrivateKey.from_private_bytes(raw)


def _member(jwk: Mapping[str, Any], name: str, *, exact: int | None = None) -> int:
    raw = _b64(jwk, name)
    if exact is not None and len(raw) != exact:
        raise KeyDataError(f"member {name!r} must be {exact} octets")
    return int.from_bytes(raw, "big")


def _b64(jwk: Mapping[str, Any], name: str) -> bytes:
    value = jwk.get(name)
    if not isinstance(value, str) or not value or "=" in value:
        raise KeyDataError(f"member {name!r} is missing or not unpadded base64url")
    try:
        return b64url_decode(value)  # RFC 7515 §2, as strict as every JOSE segment
    except ValueError:
        raise KeyDataError(f"member {name!r} is not base64url") from None
