"""The store seam: the records tokend keeps and the interface every backend implements.

Two kinds of state live here (see docs: DESIGN.md, "State"):

* **Revocations** (RFC 7009) form an append-only change feed ordered by ``seq``. Every
  process follows the feed into its in-memory denylist, so Verify never touches the store.
  An entry only matters while the tokens it names could still pass verification, hence
  ``expires_at`` on every entry and ``Store.purge``. Revoking a refresh family also
  revokes the access tokens issued from it (RFC 7009, section 2.1), and revoking what is
  already revoked is not an error (section 2.2).
* **Refresh-token families**: opaque refresh tokens stored only as SHA-256 hashes and
  rotated on every use; presenting a spent token again revokes the whole family
  (refresh token rotation with reuse detection, RFC 9700 section 4.14.2).
* **Exchange links** (RFC 8693): each token minted by Exchange is recorded against the
  jti of the token it was exchanged from, with its subject and expiry. Every
  transaction that inserts a ``jti`` revocation also revokes, in the same transaction,
  the tokens exchanged from it (transitively), and a ``subject`` revocation revokes
  every exchanged token of that subject: the feed then carries plain ``jti`` rows, so
  every verifier that follows it refuses the children with no new rule.

Backends (SQLite now, PostgreSQL next) must pass ``tests/store/conformance.py``.
"""

from __future__ import annotations

import asyncio
import enum
import hmac
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, Literal, Protocol, get_args, runtime_checkable

from tokend import tracing

if TYPE_CHECKING:
    from opentelemetry.trace import Tracer

RevocationKind = Literal["jti", "subject", "family"]
REVOCATION_KINDS: frozenset[str] = frozenset(get_args(RevocationKind))


class StoreError(RuntimeError):
    """The backend failed (I/O, lock timeout, closed store...); callers answer UNAVAILABLE."""


class ConflictError(StoreError):
    """A row with the same key already exists (family id or refresh-token hash)."""


class InvalidValue(ValueError):
    """The value can never be stored (a NUL, text the database refuses): the request is
    wrong, the store is fine. Not a StoreError, which reads as an outage."""


@dataclass(frozen=True, slots=True)
class NewRevocation:
    """A revocation to record; the store assigns ``seq`` and ``created_at``."""

    kind: RevocationKind
    value: str
    expires_at: float
    reason: str
    not_before: float = 0.0

    def __post_init__(self) -> None:
        # Reject here rather than in each backend, so every store refuses the same input.
        if self.kind not in REVOCATION_KINDS:
            raise InvalidValue(f"unknown revocation kind {self.kind!r}")
        if not self.value:
            raise InvalidValue("a revocation needs a non-empty value")
        # PostgreSQL text cannot hold NUL; SQLite could, so both refuse it here.
        if "\x00" in self.value or "\x00" in self.reason:
            raise InvalidValue("a revocation value or reason cannot hold a NUL character")


@dataclass(frozen=True, slots=True)
class Revocation:
    seq: int  # monotonically increasing change-feed sequence (per store)
    kind: RevocationKind
    value: str  # the jti, the subject, or the family id
    # For "subject": tokens of this subject with iat <= not_before are revoked; 0 otherwise.
    not_before: float
    # After this the entry is useless (the tokens it names have expired) and may be purged.
    expires_at: float
    reason: str
    created_at: float


@dataclass(frozen=True, slots=True)
class RefreshFamily:
    family_id: str
    subject: str
    client_id: str
    audience: tuple[str, ...]
    scopes: tuple[str, ...]
    claims: dict[str, Any]  # custom claims, JSON-serialisable
    access_ttl: float  # seconds, for access tokens minted on refresh
    created_at: float
    expires_at: float  # absolute family lifetime: rotation never extends it
    revoked_at: float | None = None


@dataclass(frozen=True, slots=True)
class RefreshToken:
    token_hash: bytes  # sha-256 of the opaque token; the token itself is never stored
    family_id: str
    issued_at: float
    expires_at: float
    # The access token issued together with it: revoking the family must also revoke it.
    access_jti: str
    # Becomes the expiry of that jti's revocation, so pass the last moment the token can
    # still pass verification: its exp plus the verifiers' leeway, not the bare exp.
    access_expires_at: float
    spent_at: float | None = None
    # Set when the token is spent by a Refresh that carried an idempotency key: the
    # answer, sealed, so the same caller retrying the same request can be answered again
    # until `retry_until` (tokens.refresh_retry_window). Never the answer in clear:
    # see tokend.tokens.retry.
    retry: RefreshRetry | None = None


@dataclass(frozen=True, slots=True)
class RefreshRetry:
    """What spending a refresh token under an idempotency key leaves on the spent row."""

    key_hash: bytes  # names the caller, the key and the request; not the key itself
    sealed: bytes  # the answer, sealed under a key derived from the spent token
    until: float


class RotateStatus(enum.Enum):
    OK = "ok"
    NOT_FOUND = "not_found"
    EXPIRED = "expired"
    REVOKED = "revoked"
    REUSED = "reused"
    # The spent token came back under the idempotency key it was spent with, within the
    # retry window: the caller lost the answer; `RotateResult.retry` has it, sealed.
    RETRY = "retry"


@dataclass(frozen=True, slots=True)
class RotateResult:
    status: RotateStatus
    family: RefreshFamily | None  # None only for NOT_FOUND
    # What a REUSED detection revoked, or a REVOKED family found cut off by its subject.
    revocations: tuple[Revocation, ...] = ()
    retry: RefreshRetry | None = None  # for RETRY: what the first spend recorded


# The reason recorded on the revocations a reused refresh token causes.
REUSE_REASON = "refresh token reuse detected"
# ...and on those of a family found at or before its subject's Revoke(subject) cutoff.
SUBJECT_CUTOFF_REASON = "subject revoked"


def rotation_status(family: RefreshFamily, old: RefreshToken, new: RefreshToken,
                    now: float, *, subject_cutoff: float | None = None,
                    retry_key: bytes | None = None) -> RotateStatus:
    """What spending `old` for `new` comes to, decided inside the backend's transaction
    with both rows locked; on REUSED the backend revokes the family.

    ``subject_cutoff``: the live Revoke(subject) cutoff of the family's subject, if any;
    a family started at or before it is dead (its Issue began before the revocation).
    ``retry_key``: the key hash of this request's idempotency key (None without one).
    """
    if family.revoked_at is not None or family_cut_off(family, subject_cutoff):
        return RotateStatus.REVOKED
    if now >= family.expires_at or now >= old.expires_at:
        return RotateStatus.EXPIRED
    if old.spent_at is not None:
        if is_retry(old, retry_key, now):
            return RotateStatus.RETRY
        # A spent token came back: either it was stolen or its holder was; we cannot
        # tell which, so the whole family dies (RFC 9700, section 4.14.2).
        return RotateStatus.REUSED
    if new.family_id != family.family_id:
        raise ValueError("the new refresh token must belong to the old token's family")
    return RotateStatus.OK


def family_cut_off(family: RefreshFamily, subject_cutoff: float | None) -> bool:
    """A family is as old as its first access token (`created_at` is that token's iat):
    a Revoke(subject) cutoff at or after it kills the family, like the token."""
    return subject_cutoff is not None and family.created_at <= subject_cutoff


def is_retry(old: RefreshToken, retry_key: bytes | None, now: float) -> bool:
    retry = old.retry
    return (retry is not None and retry_key is not None and now < retry.until
            and hmac.compare_digest(retry.key_hash, retry_key))


def token_from_row(row: Sequence[Any]) -> RefreshToken:
    token_hash, *rest, key_hash, sealed, until = row
    retry = None
    if key_hash is not None and sealed is not None and until is not None:
        retry = RefreshRetry(bytes(key_hash), bytes(sealed), until)
    return RefreshToken(bytes(token_hash), *rest, retry)


def token_params(t: RefreshToken) -> tuple[Any, ...]:
    """A refresh token as query parameters, in the refresh_tokens column order."""
    if not isinstance(t.token_hash, bytes):
        raise TypeError("token_hash must be bytes (the SHA-256 digest, never the token)")
    return (t.token_hash, t.family_id, t.issued_at, t.expires_at, t.access_jti,
            t.access_expires_at, t.spent_at, *retry_params(t.retry))


def retry_params(retry: RefreshRetry | None) -> tuple[Any, Any, Any]:
    if retry is None:
        return (None, None, None)
    return (retry.key_hash, retry.sealed, retry.until)


def refuse_newer_schema(current: int, known: int) -> None:
    """Never run on a schema a newer tokend migrated to: its meaning is unknown here."""
    if current > known:
        raise StoreError(
            f"the database has schema version {current}, newer than this tokend "
            f"supports ({known}); upgrade tokend"
        )


@dataclass(frozen=True)
class StoreOps:
    """One backend's operations, each taking the backend's connection first, and its
    encoders of records into query parameters. `OpsStore` turns them into Store methods."""

    add_revocations: Callable[..., Any]
    revocations_since: Callable[..., Any]
    last_seq: Callable[..., Any]
    create_family: Callable[..., Any]
    get_refresh: Callable[..., Any]
    rotate: Callable[..., Any]
    revoke_family: Callable[..., Any]
    revoke_subject: Callable[..., Any]
    purge: Callable[..., Any]
    record_exchange: Callable[..., Any]
    family_params: Callable[[RefreshFamily], Any]
    token_params: Callable[[RefreshToken], Any]


class OpsStore:
    """The argument checks and the dispatch every store shares. A backend sets `_ops`
    and `_clock`, and implements `_call(fn, *args)`, which runs `fn` with a connection
    (in a worker thread for SQLite, on a pooled connection for PostgreSQL)."""

    _ops: StoreOps
    _clock: Callable[[], float]
    #: "sqlite" or "postgresql" (OTel db.system.name).
    _db_system: ClassVar[str] = ""
    #: Set by the backend from its `tracer` argument; None (tracing off): no spans.
    _tracer: Tracer | None = None

    async def _call(self, fn: Callable[..., Any], *args: Any) -> Any:
        raise NotImplementedError

    async def _run(self, operation: str, fn: Callable[..., Any], *args: Any) -> Any:
        """`_call`, inside a span per transaction when tracing is on and a traced RPC
        is running (background polls start no trace of their own)."""
        tracer = self._tracer
        span = None if tracer is None else tracing.client_span(
            tracer, operation, {"db.system.name": self._db_system,
                                "db.operation.name": operation}, only_in_trace=True)
        if span is None:
            return await self._call(fn, *args)
        with tracing.use(span):
            try:
                return await self._call(fn, *args)
            except BaseException as exc:
                tracing.failed(span, exc)  # the type only: a message may quote a value
                raise

    async def add_revocations(self, items: Sequence[NewRevocation]) -> list[Revocation]:
        if not items:
            return []
        return await self._run("add_revocations", self._ops.add_revocations, list(items),
                               self._clock())

    async def revocations_since(
        self, seq: int, now: float, limit: int = 10_000
    ) -> list[Revocation]:
        if limit <= 0:
            raise ValueError("limit must be positive")
        return await self._run("revocations_since", self._ops.revocations_since, seq, now,
                               limit)

    async def last_seq(self) -> int:
        return await self._run("last_seq", self._ops.last_seq)

    async def create_family(self, family: RefreshFamily, first: RefreshToken) -> None:
        if first.family_id != family.family_id:
            raise ValueError("the first refresh token belongs to another family")
        ops = self._ops
        await self._run("create_family", ops.create_family, ops.family_params(family),
                        ops.token_params(first), family.subject, family.created_at,
                        self._clock())

    async def get_refresh(self, token_hash: bytes) -> tuple[RefreshFamily, RefreshToken] | None:
        return await self._run("get_refresh", self._ops.get_refresh, token_hash)

    async def rotate_refresh(self, old_hash: bytes, new: RefreshToken, now: float, *,
                             retry_key: bytes | None = None,
                             retry: RefreshRetry | None = None) -> RotateResult:
        if retry is not None and retry.key_hash != retry_key:
            raise ValueError("the retry record must carry this request's retry key")
        params = self._ops.token_params(new)
        return await self._run("rotate_refresh", self._ops.rotate, old_hash, new, params, now,
                               self._clock(), retry_key, retry)

    async def revoke_family(self, family_id: str, reason: str, now: float) -> list[Revocation]:
        return await self._run("revoke_family", self._ops.revoke_family, family_id, reason,
                               now, self._clock())

    async def revoke_subject(
        self, subject: str, reason: str, now: float, expires_at: float
    ) -> list[Revocation]:
        if not subject:
            raise ValueError("subject must be non-empty")
        return await self._run(
            "revoke_subject", self._ops.revoke_subject, subject, reason, now, expires_at,
            self._clock())

    async def purge(self, now: float) -> int:
        return await self._run("purge", self._ops.purge, now)

    async def record_exchange(self, link: ExchangeLink) -> bool:
        if not (link.parent_jti and link.child_jti and link.subject):
            raise InvalidValue("an exchange link needs a parent jti, a child jti and a subject")
        if "\x00" in link.parent_jti + link.child_jti + link.subject:
            raise InvalidValue("an exchange link cannot hold a NUL character")
        return await self._call(self._ops.record_exchange, link, self._clock())


@dataclass(frozen=True, slots=True)
class ExchangeLink:
    """A token about to be minted by Exchange (RFC 8693), named by its jti, and the
    token it is exchanged from."""

    parent_jti: str
    parent_iat: float  # for the subject's Revoke(subject) cutoff
    subject: str
    child_jti: str
    # The last moment the child can pass verification (exp plus leeway): the expiry of
    # the link and of the jti revocation a cascade writes for it.
    child_expires_at: float


class Cascade:
    """The jti revocations of every token exchanged from ``items``, transitively.

    A backend, inside the transaction that inserts ``items`` and after taking the lock
    that serialises it with `Store.record_exchange`, asks `pending` for parents and
    subjects to look up, and feeds the live links it finds to `found`, until `pending`
    is empty; `items` is then what to insert. A child takes its parent's reason.
    """

    BATCH = 500  # parents (or subjects) looked up per query

    def __init__(self, items: Sequence[NewRevocation]) -> None:
        self.items = list(items)
        self._seen = {i.value for i in items if i.kind == "jti"}
        self._reason = {i.value: i.reason for i in items}
        self._jtis = [i.value for i in items if i.kind == "jti"]
        self._subjects = [i.value for i in items if i.kind == "subject"]

    def pending(self) -> tuple[list[str], list[str]]:
        """(parent jtis, subjects) to look up next; both empty when done."""
        jtis, self._jtis = self._jtis[:self.BATCH], self._jtis[self.BATCH:]
        subjects, self._subjects = self._subjects[:self.BATCH], self._subjects[self.BATCH:]
        return jtis, subjects

    def found(self, links: Sequence[tuple[str, str, str, float]]) -> None:
        """Rows of (child_jti, parent_jti, subject, child_expires_at)."""
        for child, parent, subject, expires_at in links:
            if child in self._seen:
                continue
            self._seen.add(child)
            reason = self._reason.get(parent) or self._reason.get(subject, "")
            self._reason[child] = reason
            self.items.append(NewRevocation("jti", child, float(expires_at), reason))
            self._jtis.append(child)


@runtime_checkable
class Store(Protocol):
    """Durable state behind tokend. Every write is committed before the call returns.

    Feed contract for implementers: ``revocations_since`` must never skip a row, i.e. once
    a row with sequence ``n`` is visible, no row with a sequence below ``n`` may become
    visible later (SQLite gets this from its single writer; PostgreSQL must serialise
    revocation inserts or otherwise close the commit-order gap of sequences).

    A store may also implement `ChangeFeed` (``wait_for_change``) to wake followers as
    soon as another process commits a revocation; see `wait_for_change` below.
    """

    async def open(self) -> None:
        """Create or migrate the schema (versioned, ``schema_version`` table); ready to use."""
        ...

    async def close(self) -> None: ...

    async def add_revocations(self, items: Sequence[NewRevocation]) -> list[Revocation]:
        """Insert in one transaction, committed (durable) before it returns."""
        ...

    async def revocations_since(
        self, seq: int, now: float, limit: int = 10_000
    ) -> list[Revocation]:
        """Rows with ``seq`` above the given one and ``expires_at > now``, ascending ``seq``."""
        ...

    async def last_seq(self) -> int:
        """Highest sequence ever assigned (not lowered by purge); 0 for an empty store."""
        ...

    async def create_family(self, family: RefreshFamily, first: RefreshToken) -> None:
        """A family whose ``created_at`` is at or before its subject's live Revoke(subject)
        cutoff is created revoked: serialised with `revoke_subject`, so a family from an
        Issue that raced a subject revocation is either revoked by it or born revoked."""
        ...

    async def get_refresh(self, token_hash: bytes) -> tuple[RefreshFamily, RefreshToken] | None: ...

    async def rotate_refresh(self, old_hash: bytes, new: RefreshToken, now: float, *,
                             retry_key: bytes | None = None,
                             retry: RefreshRetry | None = None) -> RotateResult:
        """One transaction. Checks in this order: NOT_FOUND, REVOKED (including a family
        at or before its subject's cutoff, which is then marked revoked), EXPIRED,
        RETRY (spent with this same ``retry_key`` within its window), REUSED, OK.
        On OK, ``retry`` (if given) is recorded on the spent row."""
        ...

    async def revoke_family(self, family_id: str, reason: str, now: float) -> list[Revocation]:
        """Idempotent; returns only the rows this call inserted."""
        ...

    async def revoke_subject(
        self, subject: str, reason: str, now: float, expires_at: float
    ) -> list[Revocation]: ...

    async def purge(self, now: float) -> int:
        """Delete expired revocations, refresh tokens and families; returns rows removed."""
        ...

    async def record_exchange(self, link: ExchangeLink) -> bool:
        """Record the link before the child is minted; False (nothing recorded) when the
        parent jti is revoked or the parent is at or before its subject's Revoke(subject)
        cutoff. Serialised with every revocation insert, so a revocation of the parent
        either is seen here or sees the link (and revokes the child)."""
        ...


@runtime_checkable
class ChangeFeed(Protocol):
    """Optional for a `Store`: tells followers early that the revocation feed moved.

    A wake-up is only a hint to poll ``revocations_since`` now: it carries no rows, may
    be spurious, and a store may lose some (followers keep polling as the fallback).
    """

    async def wait_for_change(self, timeout: float) -> None:
        """Return after at most ``timeout`` seconds, earlier when the feed may have moved.

        A change that happened since the previous call returned must wake the next call
        at once, so a follower that polls between two calls misses nothing. One follower
        per store: concurrent callers may share a single wake-up.
        """
        ...


async def wait_for_change(store: Store, timeout: float) -> None:
    """``store.wait_for_change(timeout)`` when the store has one, else a plain sleep.

    Stores without a change feed of their own (SQLite) are simply polled.
    """
    if isinstance(store, ChangeFeed):
        await store.wait_for_change(timeout)
    else:
        await asyncio.sleep(timeout)
