"""Keyring over Vault Transit: private keys never leave Vault; tokend asks it to sign.

Transit parameters per JWS algorithm (checked against OpenBao 2.7.2):
- ES256: key type ecdsa-p256, hash_algorithm=sha2-256, marshaling_algorithm=jws
  (the default asn1 is DER, which JWS does not use); answer is unpadded base64url r||s.
- RS256: rsa-2048/3072/4096, hash_algorithm=sha2-256, signature_algorithm=pkcs1v15
  (transit's RSA default is PSS).
- PS256: same RSA keys, signature_algorithm=pss, salt_length=hash; transit's default
  salt_length "auto" makes the salt as long as possible, which JWS forbids.
- EdDSA: ed25519; transit signs the raw input (pure Ed25519) and ignores hash_algorithm;
  read_key gives the public key as raw base64, not PEM.
RSA and Ed25519 signatures come back as padded standard base64.
"""

from __future__ import annotations

import base64
import binascii
import re
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

import hvac
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

from tokend.keys.keyring import (
    ALGORITHMS,
    KeySet,
    PublicKey,
    PublishedKey,
    SigningKey,
    public_jwk,
    verify_signature,
)
from tokend.keys.vault import VaultError, call_vault

_RSA_TYPES = frozenset({"rsa-2048", "rsa-3072", "rsa-4096"})
_PROBE = b"tokend start-up probe: may this token sign?"


@dataclass(frozen=True)
class _Scheme:
    """How one JWS algorithm maps onto transit."""

    key_types: frozenset[str]  # transit key types that can make this signature
    sign_params: Mapping[str, str]  # extra arguments to transit/sign
    urlsafe: bool  # whether transit returns base64url (jws marshaling) or std base64


_SCHEMES: Mapping[str, _Scheme] = MappingProxyType(
    {
        "ES256": _Scheme(
            frozenset({"ecdsa-p256"}),
            # RFC 7518 §3.4: JWS wants r||s, which transit calls "jws" marshaling.
            MappingProxyType({"hash_algorithm": "sha2-256", "marshaling_algorithm": "jws"}),
            urlsafe=True,
        ),
        "RS256": _Scheme(
            _RSA_TYPES,
            MappingProxyType({"hash_algorithm": "sha2-256", "signature_algorithm": "pkcs1v15"}),
            urlsafe=False,
        ),
        "PS256": _Scheme(
            _RSA_TYPES,
            # RFC 7518 §3.5: the PSS salt is as long as the hash output (32 octets).
            MappingProxyType(
                {"hash_algorithm": "sha2-256", "signature_algorithm": "pss", "salt_length": "hash"}
            ),
            urlsafe=False,
        ),
        # RFC 8037 §3.1: EdDSA signs the JWS signing input itself, no pre-hash.
        "EdDSA": _Scheme(frozenset({"ed25519"}), MappingProxyType({}), urlsafe=False),
    }
)

_SIGNATURE = re.compile(r"vault:v(?P<version>[0-9]+):(?P<body>[A-Za-z0-9+/_-]+={0,2})")


def parse_transit_signature(
    value: object, *, expected_version: int, urlsafe: bool, path: str = "transit/sign"
) -> bytes:
    """Decode transit's `vault:v<N>:<base64>` signature, refusing any other version.

    Fails closed: a signature made by another version than the one pinned would name
    the wrong kid, and no verifier could check it.
    """
    found = _SIGNATURE.fullmatch(value) if isinstance(value, str) else None
    if found is None:
        raise VaultError(f"{path} returned a malformed signature", path=path, reason="bad_answer")
    version = int(found["version"])
    if version != expected_version:
        raise VaultError(
            f"{path} signed with key version {version}, not the pinned version "
            f"{expected_version}; refusing the signature",
            path=path,
            reason="bad_answer",
        )
    body = found["body"]
    try:
        if urlsafe:
            padded = body + "=" * (-len(body) % 4)
            return base64.b64decode(padded, altchars=b"-_", validate=True)
        return base64.b64decode(body, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise VaultError(
            f"{path} returned a signature that is not valid base64", path=path, reason="bad_answer"
        ) from exc


class TransitKeyring:
    """`Keyring` whose private keys stay in a Vault Transit key named `key_name`."""

    def __init__(
        self,
        client: hvac.Client,
        *,
        key_name: str = "tokend",
        mount: str = "transit",
        algorithm: str = "ES256",
        rsa_bits: int = 2048,
        create_if_missing: bool = False,
    ) -> None:
        if algorithm not in ALGORITHMS:
            raise ValueError(f"algorithm must be one of {sorted(ALGORITHMS)}, not {algorithm!r}")
        if rsa_bits not in (2048, 3072, 4096):
            raise ValueError(f"rsa_bits must be 2048, 3072 or 4096, not {rsa_bits}")
        if not key_name or "/" in key_name:
            raise ValueError(f"invalid transit key name {key_name!r}")
        self._client = client
        self._name = key_name
        self._mount = mount.strip("/")
        self._alg = algorithm
        self._scheme = _SCHEMES[algorithm]
        # RSA algorithms take their key size from rsa_bits; the others have one type.
        rsa_type = f"rsa-{rsa_bits}"
        in_scheme = rsa_type in self._scheme.key_types
        self._create_type = rsa_type if in_scheme else min(self._scheme.key_types)
        self._create_if_missing = create_if_missing
        self.keys_path = f"{self._mount}/keys/{key_name}"
        self.sign_path = f"{self._mount}/sign/{key_name}"
        self._keyset: KeySet | None = None
        self._load_lock = threading.Lock()  # one load at a time; readers never wait

    # -- Keyring -------------------------------------------------------------------

    def load(self) -> None:
        with self._load_lock:
            data = self._read_or_create()
            self._check_type(data)
            self._keyset = self._build(data)  # atomic swap of an immutable snapshot

    def active(self) -> SigningKey:
        return self._current().active

    def jwks(self) -> dict[str, Any]:
        return self._current().jwks()

    def sign(self, key: SigningKey, signing_input: bytes) -> bytes:
        entry = self._current().lookup(key)
        params = {
            "hash_input": base64.b64encode(signing_input).decode("ascii"),
            "key_version": key.version,  # the pin: never let transit pick "latest"
            "mount_point": self._mount,
            **self._scheme.sign_params,
        }
        answer = call_vault(
            self._client,
            "sign",
            self.sign_path,
            lambda: self._client.secrets.transit.sign_data(self._name, **params),
        )
        return self._signature(answer, entry)

    # -- start-up probe ------------------------------------------------------------

    def check_sign_permission(self) -> None:
        """Sign a fixed probe with the active key and verify it locally.

        Start-up calls this so a token without `update` on transit/sign/<key> fails at
        once with a VaultError naming that path, and so a Vault that ignores a sign
        parameter (e.g. an old one without salt_length) cannot issue bad tokens.
        """
        key = self.active()
        signature = self.sign(key, _PROBE)
        entry = self._current().lookup(key)
        try:
            verify_signature(self._alg, entry.public_key, signature, _PROBE)
        except InvalidSignature:
            raise VaultError(
                f"{self.sign_path} made a signature that does not verify as {self._alg} under "
                f"{key.kid}; this Vault does not honour {dict(self._scheme.sign_params)}",
                path=self.sign_path,
                reason="bad_answer",
            ) from None

    # -- internals -----------------------------------------------------------------

    def kid(self, version: int) -> str:
        return f"{self._name}-v{version}"

    def _current(self) -> KeySet:
        keyset = self._keyset
        if keyset is None:
            raise RuntimeError("TransitKeyring.load() has not succeeded yet")
        return keyset

    def _read_or_create(self) -> dict[str, Any]:
        try:
            return self._read()
        except VaultError as exc:
            if exc.reason != "not_found" or not self._create_if_missing:
                better = self._explain(exc)
                if better is exc:
                    raise
                raise better from exc
        # Creating an existing key is a no-op in transit, so racing replicas are fine.
        call_vault(
            self._client,
            "create",
            self.keys_path,
            lambda: self._client.secrets.transit.create_key(
                self._name, key_type=self._create_type, mount_point=self._mount
            ),
        )
        return self._read()

    def _explain(self, exc: VaultError) -> VaultError:
        """Say what to do where tokend knows more than Vault's bare 404 does."""
        if exc.reason == "no_mount":
            msg = (
                f"no transit engine is mounted at {self._mount}/ (wanted to read "
                f"{self.keys_path}; bao secrets enable -path={self._mount} transit)"
            )
        elif exc.reason == "not_found":
            msg = (
                f"transit key {self._name!r} does not exist at {self.keys_path}: create it "
                f"(bao write {self.keys_path} type={self._create_type}) or allow creating "
                "it (create_if_missing, for development)"
            )
        else:
            return exc
        return VaultError(msg, path=self.keys_path, status=exc.status, reason=exc.reason)

    def _read(self) -> dict[str, Any]:
        answer = call_vault(
            self._client,
            "read",
            self.keys_path,
            lambda: self._client.secrets.transit.read_key(self._name, mount_point=self._mount),
        )
        data = answer.get("data") if isinstance(answer, dict) else None
        if not isinstance(data, dict) or not isinstance(data.get("keys"), dict):
            raise self._bad_answer("an answer without key versions")
        return data

    def _check_type(self, data: Mapping[str, Any]) -> None:
        key_type = data.get("type")
        if key_type not in self._scheme.key_types:
            wanted = " or ".join(sorted(self._scheme.key_types))
            raise VaultError(
                f"transit key at {self.keys_path} is of type {key_type}, but {self._alg} "
                f"needs {wanted}: point tokend at another key or configure the algorithm "
                "that fits this key",
                path=self.keys_path,
                reason="bad_answer",
            )
        if data.get("derived"):
            # A derived key has one public key per context, so a kid could not name it.
            raise self._bad_answer("a derived key (tokend needs a non-derived signing key)")

    def _build(self, data: Mapping[str, Any]) -> KeySet:
        published = [self._published(v, info) for v, info in data["keys"].items()]
        try:
            return KeySet.build(int(data.get("latest_version", 0)), published)
        except (TypeError, ValueError) as exc:
            raise self._bad_answer(f"key versions without the latest one ({exc})") from exc

    def _published(self, version: str, info: Any) -> PublishedKey:
        # Version 0 would make transit sign with "latest", defeating the pin.
        if not version.isdigit() or int(version) < 1 or not isinstance(info, dict):
            raise self._bad_answer(f"an unreadable key version {version!r}")
        public_key = self._public_key(version, info.get("public_key"))
        key = SigningKey(kid=self.kid(int(version)), alg=self._alg, version=int(version))
        jwk = MappingProxyType(public_jwk(public_key, kid=key.kid, alg=self._alg))
        return PublishedKey(key=key, public_key=public_key, jwk=jwk)

    def _public_key(self, version: str, text: Any) -> PublicKey:
        if not isinstance(text, str) or not text:
            raise self._bad_answer(f"no public key for version {version}")
        try:
            if self._alg == "EdDSA":  # transit gives ed25519 keys as raw base64, not PEM
                return ed25519.Ed25519PublicKey.from_public_bytes(
                    base64.b64decode(text, validate=True)
                )
            loaded = serialization.load_pem_public_key(text.encode("ascii"))
        except (ValueError, binascii.Error) as exc:
            raise self._bad_answer(f"an unreadable public key for version {version}") from exc
        if self._alg == "ES256":
            if isinstance(loaded, ec.EllipticCurvePublicKey) and loaded.curve.name == "secp256r1":
                return loaded
        elif isinstance(loaded, rsa.RSAPublicKey):
            return loaded
        raise self._bad_answer(f"a public key for version {version} that is not {self._alg}")

    def _signature(self, answer: Any, entry: PublishedKey) -> bytes:
        data = answer.get("data") if isinstance(answer, dict) else None
        if not isinstance(data, dict):
            raise VaultError(
                f"{self.sign_path} returned no data", path=self.sign_path, reason="bad_answer"
            )
        signature = parse_transit_signature(
            data.get("signature"),
            expected_version=entry.key.version,
            urlsafe=self._scheme.urlsafe,
            path=self.sign_path,
        )
        if len(signature) != _signature_length(entry.public_key):
            raise VaultError(
                f"{self.sign_path} returned a {len(signature)}-byte signature, not the "
                f"{_signature_length(entry.public_key)} bytes {self._alg} makes",
                path=self.sign_path,
                reason="bad_answer",
            )
        return signature

    def _bad_answer(self, what: str) -> VaultError:
        return VaultError(
            f"Vault returned {what} at {self.keys_path}", path=self.keys_path, reason="bad_answer"
        )


def _signature_length(public_key: PublicKey) -> int:
    if isinstance(public_key, rsa.RSAPublicKey):
        return (public_key.key_size + 7) // 8
    return 64  # RFC 7518 §3.4 P-256 r||s, and RFC 8032 §5.1.6 Ed25519, are both 64 octets
