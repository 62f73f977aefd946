"""The key-custody seam: what the token minter and the JWKS endpoint need from a keyring.

A keyring knows which key version signs now, signs with exactly the version it is
asked for, and publishes the public half of every version it holds. Implementations
(Vault Transit today, Vault KV later) keep an immutable `KeySet` and swap it whole on
`load()`, so readers never see a half-built key set and need no lock.
"""

from __future__ import annotations

import base64
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, Protocol, runtime_checkable

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

PublicKey = ec.EllipticCurvePublicKey | rsa.RSAPublicKey | ed25519.Ed25519PublicKey

#: JWS algorithms a keyring may sign with (RFC 7518 §3.1 names, RFC 8037 §3.1 for EdDSA).
ALGORITHMS = frozenset({"ES256", "RS256", "PS256", "EdDSA"})


@dataclass(frozen=True)
class SigningKey:
    """One key version: the one that signs now, or an older one still published."""

    kid: str
    alg: str
    version: int


@runtime_checkable
class Keyring(Protocol):
    """Key custody as the rest of tokend sees it.

    Contract (checked by tests/keys/test_keyring_conformance.py):
    - `load()` (re)reads the key versions from custody and rebuilds the JWKS; it raises
      `tokend.keys.vault.VaultError` naming the path it could not use.
    - `active()` and `jwks()` answer from memory; before the first successful `load()`
      they raise RuntimeError.
    - `sign(key, data)` returns raw JWS signature bytes (RFC 7515 §5.1 step 5) made by
      exactly `key.version`; a key this keyring does not publish raises ValueError.
    - `jwks()` returns a fresh RFC 7517 JWK Set dict holding public members only.
    """

    def load(self) -> None: ...

    def active(self) -> SigningKey: ...

    def sign(self, key: SigningKey, signing_input: bytes) -> bytes: ...

    def jwks(self) -> dict[str, Any]: ...


@dataclass(frozen=True)
class PublishedKey:
    """A key version with its public key and JWK, as held in a KeySet."""

    key: SigningKey
    public_key: PublicKey
    jwk: Mapping[str, str]


@dataclass(frozen=True)
class KeySet:
    """Immutable snapshot of a keyring; replace it whole, never mutate it."""

    active: SigningKey
    published: Mapping[int, PublishedKey]

    @classmethod
    def build(cls, active_version: int, keys: Iterable[PublishedKey]) -> KeySet:
        by_version = {p.key.version: p for p in keys}
        if active_version not in by_version:
            raise ValueError(f"active version {active_version} is not among the published keys")
        return cls(by_version[active_version].key, MappingProxyType(by_version))

    def jwks(self) -> dict[str, Any]:
        # Newest first: verifiers that scan linearly find the active key sooner.
        ordered = sorted(self.published.values(), key=lambda p: p.key.version, reverse=True)
        return {"keys": [dict(p.jwk) for p in ordered]}

    def lookup(self, key: SigningKey) -> PublishedKey:
        """The published entry for `key`, refusing keys this set does not hold."""
        found = self.published.get(key.version)
        if found is None or found.key != key:
            raise ValueError(f"key {key.kid!r} (version {key.version}) is not published")
        return found


def b64url(data: bytes) -> str:
    """Unpadded base64url, as JOSE uses everywhere (RFC 7515 §2)."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


_EC_CURVES = {"secp256r1": "P-256", "secp384r1": "P-384", "secp521r1": "P-521"}


def public_jwk(public_key: PublicKey, *, kid: str, alg: str) -> dict[str, str]:
    """The public JWK (RFC 7517 §4) for a key, with kid, alg and use="sig"."""
    members: dict[str, str]
    if isinstance(public_key, ec.EllipticCurvePublicKey):
        crv = _EC_CURVES.get(public_key.curve.name)
        if crv is None:
            raise ValueError(f"unsupported EC curve {public_key.curve.name}")
        nums = public_key.public_numbers()
        # RFC 7518 §6.2.1.2: x and y are full-length, including leading zero octets.
        size = (public_key.curve.key_size + 7) // 8
        members = {
            "kty": "EC",
            "crv": crv,
            "x": b64url(nums.x.to_bytes(size, "big")),
            "y": b64url(nums.y.to_bytes(size, "big")),
        }
    elif isinstance(public_key, rsa.RSAPublicKey):
        nums = public_key.public_numbers()
        # RFC 7518 §6.3.1.1: n and e are minimal big-endian octet strings.
        members = {"kty": "RSA", "n": b64url(_uint(nums.n)), "e": b64url(_uint(nums.e))}
    elif isinstance(public_key, ed25519.Ed25519PublicKey):
        raw = public_key.public_bytes_raw()
        members = {"kty": "OKP", "crv": "Ed25519", "x": b64url(raw)}  # RFC 8037 §2
    else:
        raise TypeError(f"unsupported public key type {type(public_key).__name__}")
    return {**members, "kid": kid, "alg": alg, "use": "sig"}


def _uint(value: int) -> bytes:
    return value.to_bytes(max(1, (value.bit_length() + 7) // 8), "big")


def verify_signature(alg: str, public_key: PublicKey, signature: bytes, data: bytes) -> None:
    """Check a raw JWS signature; raises cryptography's InvalidSignature when it is wrong.

    Used for self-checks (a custody whose signatures do not verify must not issue).
    """
    if alg == "ES256" and isinstance(public_key, ec.EllipticCurvePublicKey):
        if len(signature) != 64:  # RFC 7518 §3.4: r||s, 32 octets each for P-256
            raise InvalidSignature()
        der = encode_dss_signature(
            int.from_bytes(signature[:32], "big"), int.from_bytes(signature[32:], "big")
        )
        public_key.verify(der, data, ec.ECDSA(hashes.SHA256()))
    elif alg == "RS256" and isinstance(public_key, rsa.RSAPublicKey):
        public_key.verify(signature, data, padding.PKCS1v15(), hashes.SHA256())  # RFC 7518 §3.3
    elif alg == "PS256" and isinstance(public_key, rsa.RSAPublicKey):
        # RFC 7518 §3.5: MGF1 with SHA-256 and a salt as long as the hash (32 octets).
        pss = padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=32)
        public_key.verify(signature, data, pss, hashes.SHA256())
    elif alg == "EdDSA" and isinstance(public_key, ed25519.Ed25519PublicKey):
        public_key.verify(signature, data)  # RFC 8037 §3.1: pure Ed25519 over the input
    else:
        raise ValueError(f"algorithm {alg} does not fit a {type(public_key).__name__}")
