"""Keyring over Vault KV v2: private JWKs kept in Vault, loaded into memory, signing locally.

The operator's alternative to transit (docs/keys.md weighs the two): Issue needs no
Vault round-trip and keeps working while Vault is down, but the private key lives in
this process and in KV, where anyone allowed to read the path holds it.

One KV v2 secret per key, at `<mount>/data/tokend/keys/<key_name>`, holds every version:

    {"algorithm": "ES256",
     "versions": {"1": {"created": "2026-11-30T03:00:44.675597Z", "jwk": {<private JWK>}},
                  "2": {...}}}

`created` (RFC 3339, UTC) starts the rotation phases, as `creation_time` does in transit;
it is written by whoever creates the version (tokend's clock, not Vault's). `jwk` holds
key material only (RFC 7517/7518/8037 private members); kid and alg follow from the key
name, the version and `algorithm`. Every write is check-and-set against the KV version
last read, so two rotations racing cannot both land, and a rotation drops the versions
that are gone (their tokens have all expired).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Executor
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

import hvac
import hvac.exceptions

from tokend.keys import localkeys
from tokend.keys.keyring import (
    KeySet,
    PhasedKeyring,
    PublishedKey,
    SigningKey,
)
from tokend.keys.lifecycle import Lifecycle, Phase, format_time, parse_time
from tokend.vault.client import VaultError, call_vault, vault_detail
from tokend_client.jose import public_jwk

#: Where under the KV mount tokend keeps its keys (one secret per key name).
KV_PREFIX = "tokend/keys"
# An ES256 or Ed25519 signature is ~30-50 us of C, less than handing it to a worker
# thread and back; RSA takes 0.5 ms and more and partly runs outside the GIL: thread.
_INLINE_ALGORITHMS = frozenset({"ES256", "EdDSA"})


@dataclass(frozen=True)
class LocalKey(PublishedKey):
    """A published key whose private half is in this process."""

    private_key: localkeys.PrivateKey = field(repr=False)


@dataclass(frozen=True)
class _Stored:
    """The KV secret as last read: its KV version (for check-and-set) and its versions."""

    kv_version: int
    versions: Mapping[str, Any]


class KvKeyring(PhasedKeyring):
    """`Keyring` whose private JWKs are kept in Vault KV v2 and sign in this process."""

    custody = "kv"

    def __init__(
        self,
        client: hvac.Client,
        *,
        key_name: str = "tokend",
        mount: str = "secret",
        algorithm: str = "ES256",
        rsa_bits: int = 2048,
        create_if_missing: bool = False,
        lifecycle: Lifecycle | None = None,
        clock: Callable[[], float] | None = None,
    ) -> None:
        super().__init__(client, key_name, mount=mount, algorithm=algorithm,
                         rsa_bits=rsa_bits, create_if_missing=create_if_missing,
                         lifecycle=lifecycle, clock=clock)
        #: Whether `sign_batch` signs right on the event loop (cheap algorithms).
        self.signs_inline = algorithm in _INLINE_ALGORITHMS
        self._secret = f"{KV_PREFIX}/{key_name}"  # relative to the mount, as hvac wants it
        self.data_path = f"{self._mount}/data/{self._secret}"
        self._stored: _Stored | None = None

    # -- Keyring -------------------------------------------------------------------

    @property
    def location(self) -> str:
        return self.data_path

    def load(self) -> None:
        with self._load_lock:
            stored = self._read_or_create()
            keyset = self._build(stored)
            self._stored = stored
            self._keyset = keyset  # atomic swap: readers see the old set or the new one

    def sign(self, key: SigningKey, signing_input: bytes) -> bytes:
        entry = self._current().lookup(key)
        if not isinstance(entry, LocalKey):  # only this class builds the set
            raise TypeError("a kv key set holds LocalKey entries only")
        return localkeys.sign(key.alg, entry.private_key, signing_input)

    async def sign_batch(
        self, key: SigningKey, signing_inputs: Sequence[bytes], *,
        executor: Executor | None = None,
    ) -> list[bytes | VaultError]:
        """ES256 and EdDSA: `sign_many` right here on the event loop, no worker thread
        (see `_INLINE_ALGORITHMS`); RSA: in `executor`, as the default does."""
        if self.signs_inline:
            return self.sign_many(key, signing_inputs)
        return await super().sign_batch(key, signing_inputs, executor=executor)

    # -- lifecycle -------------------------------------------------------------------

    def init(self) -> SigningKey:
        self._write({"1": self._new_version()}, cas=0)
        self.load()
        return self.active()

    def rotate(self) -> SigningKey:
        """Add a version on top of what the last `load()` read (check-and-set).

        Refused with reason "conflict" when the secret changed since that load (another
        rotation won): load again and look before rotating again.
        """
        with self._load_lock:
            stored, keyset = self._stored, self._current()
            if stored is None:
                raise RuntimeError("KvKeyring.load() has not succeeded yet")
            now = self.now()
            # Gone versions signed nothing that is still valid: drop their private keys.
            kept = {str(v): stored.versions[str(v)] for v in keyset.versions
                    if keyset.schedule.phase(v, now) is not Phase.GONE}
            version = keyset.schedule.newest.version + 1
            self._write({**kept, str(version): self._new_version()}, cas=stored.kv_version)
        self.load()
        return self._current().versions[version].key

    # -- reading -------------------------------------------------------------------

    def _create(self) -> None:
        try:
            self._write({"1": self._new_version()}, cas=0)
        except VaultError as exc:
            if exc.reason != "exists":  # another replica created it first: use theirs
                raise

    def _read(self) -> _Stored:
        answer = call_vault(
            self._client,
            "read",
            self.data_path,
            lambda: self._client.secrets.kv.v2.read_secret_version(
                path=self._secret, mount_point=self._mount, raise_on_deleted_version=True
            ),
        )
        data = answer.get("data") if isinstance(answer, dict) else None
        document = data.get("data") if isinstance(data, dict) else None
        metadata = data.get("metadata") if isinstance(data, dict) else None
        kv_version = metadata.get("version") if isinstance(metadata, dict) else None
        if not isinstance(document, dict) or not isinstance(kv_version, int):
            raise self._bad_answer("an answer that is not a KV version 2 secret")
        if document.get("algorithm") != self._alg:
            raise VaultError(
                f"the kv key at {self.data_path} is for {document.get('algorithm')!r}, but "
                f"vault.algorithm is {self._alg}: configure that algorithm, or use another "
                "vault.key_name for the new one",
                path=self.data_path,
                reason="bad_answer",
            )
        versions = document.get("versions")
        if not isinstance(versions, dict) or not versions:
            raise self._bad_answer("a secret without key versions")
        return _Stored(kv_version, MappingProxyType(versions))

    def _build(self, stored: _Stored) -> KeySet:
        keys: list[LocalKey] = []
        created: dict[int, float] = {}
        for name, entry in stored.versions.items():
            # Canonical numbers only, so "01" and "1" cannot both name version 1.
            if not name.isdigit() or str(int(name)) != name or int(name) < 1:
                raise self._bad_answer(f"an unreadable key version {name!r}")
            version = int(name)
            if not isinstance(entry, dict):
                raise self._bad_answer(f"an unreadable key version {name!r}")
            try:
                created[version] = parse_time(entry.get("created"))
                private = localkeys.load_private_jwk(entry.get("jwk"), self._alg)
            except ValueError as exc:  # KeyDataError never quotes key material
                raise self._bad_answer(f"an unusable version {version} ({exc})") from None
            keys.append(self._local_key(version, private))
        return self._keyset_of(keys, created)

    def _local_key(self, version: int, private: localkeys.PrivateKey) -> LocalKey:
        key = SigningKey(kid=self.kid(version), alg=self._alg, version=version)
        public = private.public_key()
        jwk = MappingProxyType(public_jwk(public, kid=key.kid, alg=self._alg))
        return LocalKey(key=key, public_key=public, jwk=jwk, private_key=private)

    # -- writing -------------------------------------------------------------------

    def _new_version(self) -> dict[str, Any]:
        jwk = localkeys.private_jwk(localkeys.generate(self._alg, self._rsa_bits))
        return {"created": format_time(self.now()), "jwk": jwk}  # stamped once it exists

    def _write(self, versions: Mapping[str, Any], *, cas: int) -> None:
        """Write the secret if its KV version is still `cas` (0: only if there is none)."""
        document = {"algorithm": self._alg, "versions": dict(versions)}
        try:
            call_vault(
                self._client,
                "write",
                self.data_path,
                lambda: self._client.secrets.kv.v2.create_or_update_secret(
                    path=self._secret, secret=document, cas=cas, mount_point=self._mount
                ),
            )
        except VaultError as exc:
            raise self._refused_write(exc, cas) from exc

    def _refused_write(self, exc: VaultError, cas: int) -> VaultError:
        cause = exc.__cause__
        detail = vault_detail(cause) if isinstance(cause, hvac.exceptions.VaultError) else ""
        if "check-and-set" not in detail:
            return self._explain(exc)
        if cas == 0:
            return VaultError(
                f"a kv key already exists at {self.data_path}: rotate it (tokend keys "
                "rotate) instead",
                path=self.data_path,
                reason="exists",
            )
        return VaultError(
            f"the kv key at {self.data_path} changed since it was read (another rotation?); "
            "nothing was written: look (tokend keys list) before rotating again",
            path=self.data_path,
            reason="conflict",
        )

    # -- errors --------------------------------------------------------------------

    def _explain(self, exc: VaultError) -> VaultError:
        """Say what to do where tokend knows more than Vault's bare 404 does."""
        if exc.reason == "no_mount":
            msg = (
                f"no KV version 2 engine is mounted at {self._mount}/ (wanted "
                f"{self.data_path}; bao secrets enable -path={self._mount} kv-v2)"
            )
        elif exc.reason == "not_found":
            msg = (
                f"kv key {self._name!r} does not exist at {self.data_path}: create it "
                f"(tokend keys init --custody kv), or allow creating it (vault.create_key, "
                f"for development); and check that {self._mount}/ is a KV version 2 engine"
            )
        else:
            return exc
        return VaultError(msg, path=self.data_path, status=exc.status, reason=exc.reason)
