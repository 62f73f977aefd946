"""Token and key builders for the tokend_client tests.

Written independently of tokend_client.jose (only `cryptography` and the standard
library), so the tests do not validate the code with itself.
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from typing import Any

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

PrivateKey = (
    ec.EllipticCurvePrivateKey
    | rsa.RSAPrivateKey
    | ed25519.Ed25519PrivateKey
    | ed448.Ed448PrivateKey
)

_HASHES: dict[str, hashes.HashAlgorithm] = {
    "256": hashes.SHA256(),
    "384": hashes.SHA384(),
    "512": hashes.SHA512(),
}
_EC_CURVES: dict[str, tuple[ec.EllipticCurve, str, int]] = {
    "ES256": (ec.SECP256R1(), "P-256", 32),
    "ES384": (ec.SECP384R1(), "P-384", 48),
    "ES512": (ec.SECP521R1(), "P-521", 66),
}
# Group orders (from `openssl ecparam -param_enc explicit -text`).
EC_ORDERS: dict[str, int] = {
    "ES256": 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551,
    "ES384": int(
        "FFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFC7634D81F4372DDF"
        "581A0DB248B0A77AECEC196ACCC52973",
        16,
    ),
    "ES512": int(
        "01FFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFF"
        "FA51868783BF2F966B7FCC0148F709A5D03BB5C9B8899C47AEBB6FB71E91386409",
        16,
    ),
}


def b64(data: bytes) -> str:
    """Unpadded base64url."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64_uint(value: int) -> str:
    return b64(value.to_bytes(max(1, (value.bit_length() + 7) // 8), "big"))


def json_bytes(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":")).encode("utf-8")


@dataclass(frozen=True)
class SigningKey:
    """A private key with the kid and alg its public JWK advertises."""

    kid: str
    alg: str
    private: PrivateKey

    def sign(self, signing_input: bytes) -> bytes:
        """A JWS signature (RFC 7518 encoding: r||s for ECDSA)."""
        return sign_as(self.private, self.alg, signing_input)

    def public_jwk(self, **overrides: Any) -> dict[str, Any]:
        jwk = {**public_jwk_members(self.private.public_key()), "kid": self.kid, "alg": self.alg}
        jwk["use"] = "sig"
        jwk.update(overrides)
        return {k: v for k, v in jwk.items() if v is not None}

    def jwks(self, **overrides: Any) -> dict[str, Any]:
        return {"keys": [self.public_jwk(**overrides)]}


def generate_key(alg: str, *, kid: str, rsa_bits: int = 2048) -> SigningKey:
    """A fresh key for ``alg`` ("Ed448" gives an Ed448 key with alg EdDSA)."""
    private: PrivateKey
    if alg in _EC_CURVES:
        private = ec.generate_private_key(_EC_CURVES[alg][0])
    elif alg[:2] in ("RS", "PS"):
        private = rsa.generate_private_key(public_exponent=65537, key_size=rsa_bits)
    elif alg == "Ed448":
        private, alg = ed448.Ed448PrivateKey.generate(), "EdDSA"
    elif alg == "EdDSA":
        private = ed25519.Ed25519PrivateKey.generate()
    else:
        raise ValueError(alg)
    return SigningKey(kid=kid, alg=alg, private=private)


def sign_as(private: PrivateKey, alg: str, data: bytes) -> bytes:
    """Sign ``data`` with ``private`` the way JWS ``alg`` does."""
    if isinstance(private, ec.EllipticCurvePrivateKey):
        size = (private.curve.key_size + 7) // 8
        der = private.sign(data, ec.ECDSA(_HASHES[alg[2:]]))
        r, s = decode_dss_signature(der)
        return r.to_bytes(size, "big") + s.to_bytes(size, "big")
    if isinstance(private, rsa.RSAPrivateKey):
        digest = _HASHES[alg[2:]]
        if alg.startswith("PS"):
            pss = padding.PSS(mgf=padding.MGF1(digest), salt_length=digest.digest_size)
            return private.sign(data, pss, digest)
        return private.sign(data, padding.PKCS1v15(), digest)
    return private.sign(data)


def public_jwk_members(public: Any) -> dict[str, str]:
    if isinstance(public, ec.EllipticCurvePublicKey):
        size = (public.curve.key_size + 7) // 8
        crv = {"secp256r1": "P-256", "secp384r1": "P-384", "secp521r1": "P-521"}
        nums = public.public_numbers()
        return {
            "kty": "EC",
            "crv": crv[public.curve.name],
            "x": b64(nums.x.to_bytes(size, "big")),
            "y": b64(nums.y.to_bytes(size, "big")),
        }
    if isinstance(public, rsa.RSAPublicKey):
        nums = public.public_numbers()
        return {"kty": "RSA", "n": b64_uint(nums.n), "e": b64_uint(nums.e)}
    crv = "Ed25519" if isinstance(public, ed25519.Ed25519PublicKey) else "Ed448"
    return {"kty": "OKP", "crv": crv, "x": b64(public.public_bytes_raw())}


def compact(header_json: bytes, payload_json: bytes, key: SigningKey) -> str:
    """Sign raw header and payload bytes (lets tests put any JSON text in them)."""
    signing_input = f"{b64(header_json)}.{b64(payload_json)}"
    return f"{signing_input}.{b64(key.sign(signing_input.encode('ascii')))}"


def make_token(
    key: SigningKey,
    claims: dict[str, Any],
    *,
    header: dict[str, Any] | None = None,
    drop: tuple[str, ...] = (),
) -> str:
    """A signed token; ``header`` entries override the defaults, ``drop`` removes names."""
    full_header: dict[str, Any] = {"alg": key.alg, "kid": key.kid, "typ": "at+jwt"}
    full_header.update(header or {})
    for name in drop:
        full_header.pop(name, None)
    return compact(json_bytes(full_header), json_bytes(claims), key)


def split(token: str) -> list[str]:
    return token.split(".")
