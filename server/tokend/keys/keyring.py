"""The key-custody seam: what the token minter and the JWKS endpoint need from a keyring.

A keyring knows which key version signs now, signs with exactly the version it is
asked for, and publishes the public half of every version that is not gone. The
custodies (Vault Transit, Vault KV) derive from `PhasedKeyring`: they keep an immutable
`KeySet` and swap it whole on `load()`, so readers never see a half-built key set and
need no lock. Which version signs is decided by the rotation phases
(`tokend.keys.lifecycle`) at the moment of asking, so a version activates on time even
between loads.
"""

from __future__ import annotations

import abc
import asyncio
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import Executor
from dataclasses import dataclass
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from cryptography.exceptions import InvalidSignature

from tokend.keys.lifecycle import Lifecycle, Phase, Schedule
from tokend.vault.client import VaultError
from tokend_client.jose import VerifyingKey, verify_signature

if TYPE_CHECKING:
    import hvac

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

    Contract (checked by tests/keys/conformance.py):
    - `load()` (re)reads the key versions from custody and rebuilds the JWKS; it raises
      `tokend.vault.client.VaultError` naming the path it could not use.
    - `active()` and `jwks()` answer from memory; before the first successful `load()`
      they raise RuntimeError.
    - `sign(key, data)` returns raw JWS signature bytes (RFC 7515 §5.1 step 5) made by
      exactly `key.version`; a key this keyring does not publish raises ValueError.
    - `jwks()` returns a fresh RFC 7517 JWK Set dict holding public members only.
    - `active()` and `jwks()` follow the rotation phases at the time of the call: a
      version in phase next is published but not active; a gone one is neither.
    - `sign_many(key, inputs)` signs each input with exactly `key.version` and returns
      one entry per input, in order: the signature, or the VaultError for an input that
      custody refused alone. A failure of the whole call raises (VaultError; ValueError
      for a key not published), as `sign` does.
    - `await sign_batch(key, inputs, executor=...)` is `sign_many` for the event loop
      (tokend.tokens.batching signs every Issue through it), with the same answers and
      errors. `ThreadedBatches` gives the default: `sign_many` in a worker thread of
      `executor`, off the loop. A custody overrides it where another way is cheaper:
      Transit POSTs the batch from the loop itself, kv signs ES256/EdDSA right on it.
    """

    def load(self) -> None: ...

    def active(self) -> SigningKey: ...

    def sign(self, key: SigningKey, signing_input: bytes) -> bytes: ...

    def sign_many(
        self, key: SigningKey, signing_inputs: Sequence[bytes]
    ) -> list[bytes | VaultError]: ...

    async def sign_batch(
        self, key: SigningKey, signing_inputs: Sequence[bytes], *,
        executor: Executor | None = None,
    ) -> list[bytes | VaultError]: ...

    def jwks(self) -> dict[str, Any]: ...


class ThreadedBatches(abc.ABC):
    """The default `Keyring.sign_batch`: the synchronous `sign_many` in a worker thread.

    Right for a custody whose signing blocks (a Vault call through hvac) or takes long
    (RSA): the event loop keeps serving meanwhile.
    """

    @abc.abstractmethod
    def sign_many(
        self, key: SigningKey, signing_inputs: Sequence[bytes]
    ) -> list[bytes | VaultError]:
        """See `Keyring`."""

    async def sign_batch(
        self, key: SigningKey, signing_inputs: Sequence[bytes], *,
        executor: Executor | None = None,
    ) -> list[bytes | VaultError]:
        """`sign_many` in `executor` (None: the loop's default executor)."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(executor, self.sign_many, key, signing_inputs)


@dataclass(frozen=True)
class PublishedKey:
    """A key version with its public key and JWK, as held in a KeySet."""

    key: SigningKey
    public_key: VerifyingKey
    jwk: Mapping[str, str]


@dataclass(frozen=True)
class KeySet:
    """Immutable snapshot of a keyring; replace it whole, never mutate it.

    It holds every version custody holds; which one signs and which are published is
    worked out from `schedule` at `clock()` time, without calling custody.
    """

    versions: Mapping[int, PublishedKey]
    schedule: Schedule
    clock: Callable[[], float] = time.time

    @classmethod
    def build(
        cls,
        keys: Iterable[PublishedKey],
        created: Mapping[int, float],
        lifecycle: Lifecycle,
        clock: Callable[[], float] = time.time,
    ) -> KeySet:
        """A snapshot of `keys`, with `created[version]` the Unix creation time of each."""
        by_version = {p.key.version: p for p in keys}
        if not by_version or set(by_version) != set(created):
            raise ValueError("every key version needs exactly one creation time")
        schedule = Schedule.plan(created, lifecycle)
        return cls(MappingProxyType(by_version), schedule, clock)

    @property
    def active(self) -> SigningKey:
        """The version that signs now."""
        return self.versions[self.schedule.active_version(self.clock())].key

    def jwks(self) -> dict[str, Any]:
        now = self.clock()
        published = [p for v, p in self.versions.items() if self.schedule.phase(v, now).published]
        # Newest first: verifiers that scan linearly find the active key sooner.
        ordered = sorted(published, key=lambda p: p.key.version, reverse=True)
        return {"keys": [dict(p.jwk) for p in ordered]}

    def lookup(self, key: SigningKey) -> PublishedKey:
        """The entry for `key`, refusing keys this set does not hold or no longer publishes."""
        found = self.versions.get(key.version)
        if found is None or found.key != key:
            raise ValueError(f"key {key.kid!r} (version {key.version}) is not published")
        if self.schedule.phase(key.version, self.clock()) is Phase.GONE:
            raise ValueError(f"key {key.kid!r} (version {key.version}) is gone: retired and "
                             "unpublished, it signs nothing any more")
        return found


#: What `check_sign_permission` signs: not a token, so it can never be mistaken for one.
PROBE = b"tokend start-up probe: may this token sign?"


class PhasedKeyring(ThreadedBatches):
    """What every key custody shares: the KeySet snapshot, phases, scheduled rotation.

    A custody implements `load` (read every version and its creation time, then swap in
    a new KeySet from `_keyset_of`), `sign`, `init` (create the key: version 1) and
    `rotate` (add a version); it overrides `sign_many` and `sign_batch` where it signs a
    batch better than one `sign` per input in a worker thread. `kid(version)` names key
    and version: `<key_name>-v<version>`.
    """

    #: The `vault.custody` setting this class implements.
    custody: str = ""

    def __init__(
        self,
        client: hvac.Client,
        key_name: str,
        *,
        mount: str,
        algorithm: str = "ES256",
        rsa_bits: int = 2048,
        create_if_missing: bool = False,
        lifecycle: Lifecycle | None = None,
        clock: Callable[[], float] | None = None,
    ) -> None:
        if not key_name or "/" in key_name:
            raise ValueError(f"invalid key name {key_name!r}")
        check_algorithm(algorithm, rsa_bits)
        self._client = client
        self._mount = mount.strip("/")
        self._alg = algorithm
        self._rsa_bits = rsa_bits
        self._create_if_missing = create_if_missing
        self._name = key_name
        self.lifecycle = lifecycle or Lifecycle()
        self._clock = clock or time.time
        self._keyset: KeySet | None = None
        self._load_lock = threading.Lock()  # one load at a time; readers never wait

    # -- what each custody implements ------------------------------------------------

    @abc.abstractmethod
    def _read(self) -> Any:
        """The key as Vault holds it; raises VaultError (reason "not_found" if missing)."""

    @abc.abstractmethod
    def _create(self) -> None:
        """Create the key (version 1); a replica that created it first is no error."""

    @abc.abstractmethod
    def _explain(self, exc: VaultError) -> VaultError:
        """`exc`, or a clearer error where tokend knows more than Vault's bare answer."""

    def _read_or_create(self) -> Any:
        """`_read`, creating the key first when it is missing and creating is allowed."""
        try:
            return self._read()
        except VaultError as exc:
            if exc.reason != "not_found" or not self._create_if_missing:
                better = self._explain(exc)
                if better is exc:
                    raise
                raise better from exc
        self._create()
        return self._read()

    @property
    @abc.abstractmethod
    def location(self) -> str:
        """The Vault path that holds the key, for messages."""

    @abc.abstractmethod
    def load(self) -> None:
        """Re-read every version and its creation time from custody."""

    @abc.abstractmethod
    def sign(self, key: SigningKey, signing_input: bytes) -> bytes:
        """Sign with exactly `key.version` (see `Keyring`)."""

    def sign_many(
        self, key: SigningKey, signing_inputs: Sequence[bytes]
    ) -> list[bytes | VaultError]:
        """One `sign` per input (see `Keyring`); custodies with a batch API override it.

        Right for a custody that signs in memory (kv): there a call costs no round trip.
        """
        results: list[bytes | VaultError] = []
        for signing_input in signing_inputs:
            try:
                results.append(self.sign(key, signing_input))
            except VaultError as exc:  # this input's own failure; its caller gets it
                results.append(exc)
        return results

    @abc.abstractmethod
    def init(self) -> SigningKey:
        """Create the key with its first version; VaultError(reason="exists") if it exists."""

    @abc.abstractmethod
    def rotate(self) -> SigningKey:
        """Add a new version (phase next) and load; returns it.

        VaultError(reason="conflict") when custody refused because another rotation
        changed the key meanwhile (custodies that can tell).
        """

    # -- shared ----------------------------------------------------------------------

    @property
    def key_name(self) -> str:
        return self._name

    def kid(self, version: int) -> str:
        return f"{self._name}-v{version}"

    def now(self) -> float:
        """The keyring's clock (Unix seconds); phases are evaluated at this time."""
        return self._clock()

    def active(self) -> SigningKey:
        return self._current().active

    def jwks(self) -> dict[str, Any]:
        return self._current().jwks()

    def schedule(self) -> Schedule:
        """The phases of the versions read by the last successful `load()`."""
        return self._current().schedule

    def rotation_due(self) -> bool:
        """Whether the rotation schedule wants a new version now (from memory)."""
        schedule = self._current().schedule
        return schedule.rotation_due(self.now(), self.lifecycle.rotation_period)

    def rotate_if_due(self) -> SigningKey | None:
        """Check-and-rotate on fresh metadata; the new version, or None.

        Replicas run this independently: re-reading just before rotating means a replica
        that finds a rotation made by another does not make a second one. Two replicas
        in the same instant can still both rotate; that is harmless (the later version
        activates a moment after the earlier) and a custody that can tell refuses it.
        """
        self.load()
        if not self.rotation_due():
            return None
        try:
            return self.rotate()
        except VaultError as exc:
            if exc.reason != "conflict":
                raise
        self.load()  # another replica won the race: take its version
        return None

    def check_sign_permission(self) -> None:
        """Sign a fixed probe with the active key and verify it locally.

        Start-up calls this so a custody that cannot sign, or signs wrongly, fails at
        once with a VaultError instead of issuing tokens nobody can verify.
        """
        key = self.active()
        signature = self.sign(key, PROBE)
        entry = self._current().lookup(key)
        try:
            verify_signature(key.alg, entry.public_key, signature, PROBE)
        except InvalidSignature:
            raise self._probe_failed(key) from None

    def _probe_failed(self, key: SigningKey) -> VaultError:
        return VaultError(
            f"{self.location}: a signature by {key.kid} does not verify as {key.alg}",
            path=self.location,
            reason="bad_answer",
        )

    def _bad_answer(self, what: str) -> VaultError:
        return VaultError(
            f"Vault returned {what} at {self.location}", path=self.location, reason="bad_answer"
        )

    def _current(self) -> KeySet:
        keyset = self._keyset
        if keyset is None:
            raise RuntimeError(f"{type(self).__name__}.load() has not succeeded yet")
        return keyset

    def _keyset_of(self, keys: Iterable[PublishedKey], created: Mapping[int, float]) -> KeySet:
        """A KeySet on this keyring's lifecycle and clock (install it with one assignment)."""
        return KeySet.build(keys, created, self.lifecycle, self._clock)


def check_algorithm(algorithm: str, rsa_bits: int) -> None:
    """ValueError unless `algorithm` is one a keyring signs with and `rsa_bits` a size it makes."""
    if algorithm not in ALGORITHMS:
        raise ValueError(f"algorithm must be one of {sorted(ALGORITHMS)}, not {algorithm!r}")
    if rsa_bits not in (2048, 3072, 4096):
        raise ValueError(f"rsa_bits must be 2048, 3072 or 4096, not {rsa_bits}")
