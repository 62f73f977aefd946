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
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Executor
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

import hvac
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

from tokend.keys.keyring import (
    KeySet,
    PhasedKeyring,
    PublishedKey,
    SigningKey,
)
from tokend.keys.lifecycle import Lifecycle, parse_time
from tokend.vault.client import VaultError, call_vault
from tokend.vault.transport import VaultTransport
from tokend_client.jose import VerifyingKey, public_jwk, signature_length

_RSA_TYPES = frozenset({"rsa-2048", "rsa-3072", "rsa-4096"})


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


class TransitKeyring(PhasedKeyring):
    """`Keyring` whose private keys stay in a Vault Transit key named `key_name`.

    Each version's phase comes from its `creation_time` in transit (Vault's clock).
    `client` (hvac) makes every call but the batch sign; that goes through `transport`
    from the event loop when there is one (`VaultSession.transport`, the same settings
    and token).
    """

    custody = "transit"

    def __init__(
        self,
        client: hvac.Client,
        *,
        key_name: str = "tokend",
        mount: str = "transit",
        algorithm: str = "ES256",
        rsa_bits: int = 2048,
        create_if_missing: bool = False,
        lifecycle: Lifecycle | None = None,
        clock: Callable[[], float] | None = None,
        transport: VaultTransport | None = None,
    ) -> None:
        super().__init__(client, key_name, mount=mount, algorithm=algorithm,
                         rsa_bits=rsa_bits, create_if_missing=create_if_missing,
                         lifecycle=lifecycle, clock=clock)
        self.transport = transport
        self._scheme = _SCHEMES[algorithm]
        # RSA algorithms take their key size from rsa_bits; the others have one type.
        rsa_type = f"rsa-{rsa_bits}"
        in_scheme = rsa_type in self._scheme.key_types
        self._create_type = rsa_type if in_scheme else min(self._scheme.key_types)
        self.keys_path = f"{self._mount}/keys/{key_name}"
        self.sign_path = f"{self._mount}/sign/{key_name}"
        self.rotate_path = f"{self._mount}/keys/{key_name}/rotate"

    # -- Keyring -------------------------------------------------------------------

    @property
    def location(self) -> str:
        return self.keys_path

    def load(self) -> None:
        with self._load_lock:
            data = self._read_or_create()
            self._check_type(data)
            self._keyset = self._build(data)  # atomic swap of an immutable snapshot

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

    def sign_many(
        self, key: SigningKey, signing_inputs: Sequence[bytes]
    ) -> list[bytes | VaultError]:
        """All inputs in one transit/sign call (`batch_input`), pinned to `key.version`.

        Transit answers each input on its own: one it refused gets a VaultError in its
        place, so only that input's caller fails. Every signature is checked like
        `sign`'s (version pin, encoding, length).
        """
        entry = self._current().lookup(key)
        params = {**self._batch_body(key, signing_inputs), "mount_point": self._mount}
        answer = call_vault(
            self._client,
            "sign",
            self.sign_path,
            lambda: self._client.secrets.transit.sign_data(self._name, **params),
        )
        return self._batch_results(answer, len(signing_inputs), entry)

    async def sign_batch(
        self, key: SigningKey, signing_inputs: Sequence[bytes], *,
        executor: Executor | None = None,
    ) -> list[bytes | VaultError]:
        """`sign_many` from the event loop: one POST through `transport`, no worker thread.

        Without a usable transport (none given, or a proxy it cannot take), the default:
        `sign_many` through hvac in `executor`.
        """
        transport = self.transport
        if transport is None or not transport.usable:
            return await super().sign_batch(key, signing_inputs, executor=executor)
        entry = self._current().lookup(key)
        body = self._batch_body(key, signing_inputs)
        answer = await transport.post(self.sign_path, body, "sign")
        return self._batch_results(answer, len(signing_inputs), entry)

    def _batch_body(self, key: SigningKey, signing_inputs: Sequence[bytes]) -> dict[str, Any]:
        return {
            "batch_input": [{"input": base64.b64encode(data).decode("ascii")}
                            for data in signing_inputs],
            "key_version": key.version,  # the pin holds for every input of the batch
            **self._scheme.sign_params,
        }

    def _batch_results(self, answer: Any, count: int, entry: PublishedKey
                       ) -> list[bytes | VaultError]:
        data = answer.get("data") if isinstance(answer, dict) else None
        results = data.get("batch_results") if isinstance(data, dict) else None
        if not isinstance(results, list) or len(results) != count:
            raise VaultError(
                f"{self.sign_path} answered a batch of {count} without one result per input",
                path=self.sign_path,
                reason="bad_answer",
            )
        return [self._batch_result(item, entry) for item in results]

    def _batch_result(self, item: Any, entry: PublishedKey) -> bytes | VaultError:
        if isinstance(item, dict) and item.get("error"):
            return VaultError(
                f"{self.sign_path} refused one input of a batch: {item['error']}",
                path=self.sign_path,
                reason="rejected",
            )
        try:
            return self._signature({"data": item}, entry)
        except VaultError as exc:
            return exc

    # -- lifecycle -------------------------------------------------------------------

    def init(self) -> SigningKey:
        try:
            self._read()
        except VaultError as exc:
            if exc.reason != "not_found":
                raise self._explain(exc) from exc
        else:
            raise VaultError(
                f"transit key {self._name!r} already exists at {self.keys_path}: rotate it "
                "(tokend keys rotate) instead",
                path=self.keys_path,
                reason="exists",
            )
        self._create()
        self.load()
        return self.active()

    def rotate(self) -> SigningKey:
        # Transit cannot rotate conditionally; rotate_if_due re-reads just before this.
        call_vault(
            self._client,
            "rotate",
            self.rotate_path,
            lambda: self._client.secrets.transit.rotate_key(self._name, mount_point=self._mount),
        )
        self.load()
        newest = self._current().schedule.newest.version
        return self._current().versions[newest].key

    def _probe_failed(self, key: SigningKey) -> VaultError:
        return VaultError(
            f"{self.sign_path} made a signature that does not verify as {self._alg} under "
            f"{key.kid}; this Vault does not honour {dict(self._scheme.sign_params)}",
            path=self.sign_path,
            reason="bad_answer",
        )

    # -- internals -----------------------------------------------------------------

    def _create(self) -> None:
        # Creating an existing key is a no-op in transit, so racing replicas are fine.
        call_vault(
            self._client,
            "create",
            self.keys_path,
            lambda: self._client.secrets.transit.create_key(
                self._name, key_type=self._create_type, mount_point=self._mount
            ),
        )

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
        published: list[PublishedKey] = []
        created: dict[int, float] = {}
        for version, info in data["keys"].items():
            entry = self._published(version, info)
            published.append(entry)
            created[entry.key.version] = self._created(entry.key.version, info)
        latest = data.get("latest_version")
        if latest not in created:
            raise self._bad_answer(f"key versions without the latest one ({latest!r})")
        return self._keyset_of(published, created)

    def _created(self, version: int, info: Mapping[str, Any]) -> float:
        """The version's creation time: the rotation phases start from it."""
        try:
            return parse_time(info.get("creation_time"))
        except ValueError as exc:
            raise self._bad_answer(f"no usable creation_time for version {version}") from exc

    def _published(self, version: str, info: Any) -> PublishedKey:
        # Version 0 would make transit sign with "latest", defeating the pin.
        if not version.isdigit() or int(version) < 1 or not isinstance(info, dict):
            raise self._bad_answer(f"an unreadable key version {version!r}")
        public_key = self._public_key(version, info.get("public_key"))
        key = SigningKey(kid=self.kid(int(version)), alg=self._alg, version=int(version))
        jwk = MappingProxyType(public_jwk(public_key, kid=key.kid, alg=self._alg))
        return PublishedKey(key=key, public_key=public_key, jwk=jwk)

    def _public_key(self, version: str, text: Any) -> VerifyingKey:
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
        if len(signature) != signature_length(entry.public_key):
            raise VaultError(
                f"{self.sign_path} returned a {len(signature)}-byte signature, not the "
                f"{signature_length(entry.public_key)} bytes {self._alg} makes",
                path=self.sign_path,
                reason="bad_answer",
            )
        return signature

