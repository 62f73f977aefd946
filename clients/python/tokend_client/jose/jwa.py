"""The JWS algorithms (RFC 7518 §3, RFC 8037 §3.1): one signing and one verifying side
of each, written on ``cryptography``, which signs and verifies but speaks DER for ECDSA
where JWS carries fixed-width ``r || s`` (RFC 7518 §3.4); both conversions live here.

Verifiers are built once per key (:func:`make_verifier`) so the hot path only calls
them; they return False for a bad signature and never raise for one. Which keys may be
used at all (RSA size, ROCA, small-order points) is key policy: :mod:`.jwk`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeAlias

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

__all__ = [
    "SUPPORTED_ALGORITHMS",
    "SigningPrivateKey",
    "VerifyingKey",
    "create_signature",
    "ecdsa_der_to_raw",
    "ecdsa_raw_to_der",
    "make_verifier",
    "signature_length",
    "verify_signature",
]

#: The public keys JWS signatures are verified with (the ``cryptography`` objects).
VerifyingKey: TypeAlias = (
    ec.EllipticCurvePublicKey | rsa.RSAPublicKey | ed25519.Ed25519PublicKey | ed448.Ed448PublicKey
)
#: The private keys :func:`create_signature` signs with.
SigningPrivateKey: TypeAlias = (
    ec.EllipticCurvePrivateKey
    | rsa.RSAPrivateKey
    | ed25519.Ed25519PrivateKey
    | ed448.Ed448PrivateKey
)


@dataclass(frozen=True)
class Curve:
    """A NIST curve as JOSE names and uses it (RFC 7518 §3.4, §6.2.1.1)."""

    name: str
    alg: str
    size: int  # bytes per coordinate and per signature half
    p: int  # field prime: coordinates must be below it
    n: int  # group order: signature halves must be in [1, n-1]
    curve: ec.EllipticCurve
    hash: hashes.HashAlgorithm

    @property
    def ecdsa(self) -> ec.ECDSA:
        return ec.ECDSA(self.hash)


CURVES: dict[str, Curve] = {
    c.name: c
    for c in (
        Curve(
            "P-256",
            "ES256",
            32,
            0xFFFFFFFF00000001000000000000000000000000FFFFFFFFFFFFFFFFFFFFFFFF,
            0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551,
            ec.SECP256R1(),
            hashes.SHA256(),
        ),
        Curve(
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
        Curve(
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
CURVE_BY_ALG: dict[str, Curve] = {c.alg: c for c in CURVES.values()}
CURVE_BY_OPENSSL_NAME: dict[str, Curve] = {c.curve.name: c for c in CURVES.values()}

# RFC 7518 §3.3 (RSASSA-PKCS1-v1_5) and §3.5 (RSASSA-PSS): alg -> (hash, is PSS).
RSA_ALGS: dict[str, tuple[hashes.HashAlgorithm, bool]] = {
    "RS256": (hashes.SHA256(), False),
    "RS384": (hashes.SHA384(), False),
    "RS512": (hashes.SHA512(), False),
    "PS256": (hashes.SHA256(), True),
    "PS384": (hashes.SHA384(), True),
    "PS512": (hashes.SHA512(), True),
}

# RFC 8037 §2: OKP curve -> (public key bytes, signature bytes, loader).
OKP_CURVES: dict[str, tuple[int, int, Callable[[bytes], VerifyingKey]]] = {
    "Ed25519": (32, 64, ed25519.Ed25519PublicKey.from_public_bytes),
    "Ed448": (57, 114, ed448.Ed448PublicKey.from_public_bytes),
}

SUPPORTED_ALGORITHMS: frozenset[str] = frozenset({*CURVE_BY_ALG, *RSA_ALGS, "EdDSA"})

# RFC 7518 §3.3 / §3.5: the padding each RSA algorithm signs and verifies with; PSS
# with MGF1 of the same hash and a salt as long as the hash output.
_RSA_PADDING: dict[str, padding.AsymmetricPadding] = {
    alg: padding.PSS(mgf=padding.MGF1(hash_alg), salt_length=hash_alg.digest_size)
    if is_pss
    else padding.PKCS1v15()
    for alg, (hash_alg, is_pss) in RSA_ALGS.items()
}
# Built once: custody kv signs every Issue with one, on the event loop.
_ECDSA = {alg: curve.ecdsa for alg, curve in CURVE_BY_ALG.items()}

# ---------------------------------------------------------------------------
# Verifying: built once per key (the hot path only calls them)
# ---------------------------------------------------------------------------

Verify = Callable[[bytes, bytes], bool]


def make_verifier(alg: str, key: object) -> Verify:
    """Check that ``key`` may be used with ``alg`` and return its verify function
    (signing input, signature) -> bool; ValueError when it may not."""
    if alg in CURVE_BY_ALG:
        curve = CURVE_BY_ALG[alg]
        if not isinstance(key, ec.EllipticCurvePublicKey) or key.curve.name != curve.curve.name:
            raise ValueError(f"{alg} needs a {curve.name} key")  # RFC 7518 §3.4
        return _ecdsa_verifier(key, curve)
    if alg in RSA_ALGS:
        if not isinstance(key, rsa.RSAPublicKey):
            raise ValueError(f"{alg} needs an RSA key")
        return _rsa_verifier(key, alg)
    if alg == "EdDSA":
        if not isinstance(key, ed25519.Ed25519PublicKey | ed448.Ed448PublicKey):
            raise ValueError("EdDSA needs an Ed25519 or Ed448 key")  # RFC 8037 §3.1
        return _eddsa_verifier(key)
    raise ValueError("unsupported or disallowed algorithm")


def verify_signature(alg: str, key: VerifyingKey, signature: bytes, signing_input: bytes) -> None:
    """Check one raw JWS signature; raise ``cryptography``'s InvalidSignature when it is
    wrong and ValueError when ``key`` does not fit ``alg``. For one-off checks (a signer's
    self-test); verifiers of many tokens build :func:`make_verifier` once per key."""
    if not make_verifier(alg, key)(signing_input, signature):
        raise InvalidSignature()


def signature_length(key: VerifyingKey) -> int:
    """How many octets a JWS signature by ``key``'s private half has, whatever the alg."""
    if isinstance(key, rsa.RSAPublicKey):
        return (key.key_size + 7) // 8  # RFC 8017 §8.1.1 / §8.2.1: k octets
    if isinstance(key, ec.EllipticCurvePublicKey):
        return 2 * CURVE_BY_OPENSSL_NAME[key.curve.name].size  # RFC 7518 §3.4: r || s
    # RFC 8032 §5.1.6 / §5.2.6: Ed25519 and Ed448 signatures have a fixed length.
    return 64 if isinstance(key, ed25519.Ed25519PublicKey) else 114


def _ecdsa_verifier(key: ec.EllipticCurvePublicKey, curve: Curve) -> Verify:
    algorithm = curve.ecdsa
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


def _rsa_verifier(key: rsa.RSAPublicKey, alg: str) -> Verify:
    hash_alg, pad = RSA_ALGS[alg][0], _RSA_PADDING[alg]
    modulus_bytes, key_verify = signature_length(key), key.verify

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


def _eddsa_verifier(key: ed25519.Ed25519PublicKey | ed448.Ed448PublicKey) -> Verify:
    signature_bytes, key_verify = signature_length(key), key.verify

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


# ---------------------------------------------------------------------------
# Signing
# ---------------------------------------------------------------------------


def create_signature(alg: str, key: SigningPrivateKey, signing_input: bytes) -> bytes:
    """The raw JWS signature (RFC 7515 §5.1 step 5) of ``signing_input`` by ``key`` with
    ``alg``; ValueError when the key does not fit the algorithm."""
    curve = CURVE_BY_ALG.get(alg)
    if curve is not None and isinstance(key, ec.EllipticCurvePrivateKey):
        if key.curve.name == curve.curve.name:
            return ecdsa_der_to_raw(key.sign(signing_input, _ECDSA[alg]), curve.size)
    elif alg in RSA_ALGS and isinstance(key, rsa.RSAPrivateKey):
        return key.sign(signing_input, _RSA_PADDING[alg], RSA_ALGS[alg][0])
    elif alg == "EdDSA" and isinstance(key, ed25519.Ed25519PrivateKey | ed448.Ed448PrivateKey):
        return key.sign(signing_input)  # RFC 8037 §3.1: pure EdDSA over the input
    raise ValueError(f"algorithm {alg} does not fit a {type(key).__name__}")


# ---------------------------------------------------------------------------
# ECDSA signature encodings: JWS r || s (RFC 7518 §3.4) <-> DER (RFC 3279 §2.2.3)
# ---------------------------------------------------------------------------


def ecdsa_der_to_raw(der: bytes, size: int) -> bytes:
    """The JWS form ``r || s`` (each ``size`` octets) of a DER ECDSA-Sig-Value."""
    r, s = decode_dss_signature(der)
    return r.to_bytes(size, "big") + s.to_bytes(size, "big")


def ecdsa_raw_to_der(signature: bytes) -> bytes:
    """The DER ECDSA-Sig-Value of a JWS ``r || s`` signature (halves of equal length)."""
    half = len(signature) // 2
    return _der_signature(signature[:half], signature[half:])


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
