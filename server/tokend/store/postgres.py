"""PostgreSQL store: the shared state behind several tokend replicas.

Same semantics as the SQLite store (``tests/store/conformance.py`` runs against both);
what differs is how they are kept with many writers:

* **Feed order.** A sequence value is taken when a row is inserted but becomes visible
  when its transaction commits, so values can become visible out of order (A takes 5,
  B takes 6 and commits first; a follower that already read 6 would never read 5).
  Every transaction that inserts revocations therefore takes the transaction-level
  advisory lock `FEED_LOCK` *before* its first ``nextval`` and holds it until it has
  committed: sequence order is commit order and ``revocations_since`` never skips.
  ``last_seq`` takes the same lock in shared mode, so it never names a row that is
  still on its way. The sequence is ``CACHE 1``: a per-session cache would hand out
  values out of order across sessions, which no lock could repair.
* **Row locks.** ``rotate_refresh`` locks the family row, then the token row
  (``SELECT … FOR UPDATE``); ``revoke_family`` and ``revoke_subject`` lock the family
  rows. Row locks are always taken before `FEED_LOCK`, never after, so no two writers
  can wait on each other in a cycle. ``revoke_subject`` and ``create_family`` first
  take a per-subject advisory lock (`SUBJECT_LOCK_CLASS`), before any other: a family
  created while its subject is being revoked is then either seen by the revocation or
  sees its cutoff.
* **Change feed.** Each revocation transaction also sends ``NOTIFY tokend_revocations``
  (payload: the highest ``seq`` it wrote), delivered by PostgreSQL only on commit.
  ``wait_for_change`` keeps one dedicated ``LISTEN`` connection and returns early on a
  notification; after a reconnect it wakes the follower once, which then catches up
  from its last ``seq`` (a notification sent while nobody listened is lost, rows never).
* **Bounded waits.** Waiting for a pooled connection, connecting, each statement, lock
  waits and each whole call have time limits, so an unreachable database turns into a
  prompt `StoreError` (the caller answers UNAVAILABLE), and the pool reconnects once the
  database is back, without recreating the store.

The URL may carry a password: it is never put into an error message or a log line.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, Any, TypeVar

import psycopg
import structlog
from psycopg import AsyncConnection
from psycopg.conninfo import conninfo_to_dict, make_conninfo
from psycopg_pool import AsyncConnectionPool, PoolTimeout

from .base import (
    REUSE_REASON,
    SUBJECT_CUTOFF_REASON,
    Cascade,
    ConflictError,
    ExchangeLink,
    InvalidValue,
    NewRevocation,
    OpsStore,
    RefreshFamily,
    RefreshRetry,
    RefreshToken,
    Revocation,
    RotateResult,
    RotateStatus,
    StoreError,
    StoreOps,
    refuse_newer_schema,
    retry_params,
    rotation_status,
    token_from_row,
    token_params,
)

if TYPE_CHECKING:
    from opentelemetry.trace import Tracer

# Shared with SQLite so both stores encode refresh tokens and reasons identically.

log = structlog.get_logger(__name__)

# psycopg_pool logs three INFO lines per checkout: at tokend's default level that would be
# a log line flood per request. Its warnings (failed reconnects) still come through.
_pool_log = logging.getLogger("psycopg.pool")
if _pool_log.level == logging.NOTSET:
    _pool_log.setLevel(logging.WARNING)

T = TypeVar("T")
Conn = AsyncConnection[tuple[Any, ...]]

CHANNEL = "tokend_revocations"
# Advisory lock keys are per database: "tokend" in ASCII followed by a small number.
FEED_LOCK = 0x746F6B656E64_0001
MIGRATION_LOCK = 0x746F6B656E64_0002
# Two-key advisory locks (a key space apart from the one-key locks above): this class
# ("toke") and hashtext(subject) serialise create_family with revoke_subject per subject.
SUBJECT_LOCK_CLASS = 0x746F6B65

# Append only: a released migration is never edited, a change is a new entry.
# Version N is MIGRATIONS[N - 1]; each runs in one transaction with its schema_version row.
MIGRATIONS: tuple[tuple[str, ...], ...] = (
    (
        """CREATE TABLE revocations (
            seq         bigint GENERATED ALWAYS AS IDENTITY
                        (SEQUENCE NAME revocation_seq CACHE 1 NO CYCLE) PRIMARY KEY,
            kind        text NOT NULL CHECK (kind IN ('jti', 'subject', 'family')),
            value       text NOT NULL,
            not_before  double precision NOT NULL DEFAULT 0,
            expires_at  double precision NOT NULL,
            reason      text NOT NULL DEFAULT '',
            created_at  double precision NOT NULL
        )""",
        "CREATE INDEX revocations_expires_at ON revocations (expires_at)",
        """CREATE TABLE refresh_families (
            family_id   text PRIMARY KEY,
            subject     text NOT NULL,
            client_id   text NOT NULL,
            audience    text[] NOT NULL,
            scopes      text[] NOT NULL,
            claims      jsonb NOT NULL,
            access_ttl  double precision NOT NULL,
            created_at  double precision NOT NULL,
            expires_at  double precision NOT NULL,
            revoked_at  double precision
        )""",
        "CREATE INDEX refresh_families_subject ON refresh_families (subject)",
        "CREATE INDEX refresh_families_expires_at ON refresh_families (expires_at)",
        """CREATE TABLE refresh_tokens (
            token_hash        bytea PRIMARY KEY,
            family_id         text NOT NULL
                              REFERENCES refresh_families (family_id) ON DELETE CASCADE,
            issued_at         double precision NOT NULL,
            expires_at        double precision NOT NULL,
            access_jti        text NOT NULL,
            access_expires_at double precision NOT NULL,
            spent_at          double precision
        )""",
        "CREATE INDEX refresh_tokens_family_id ON refresh_tokens (family_id)",
        "CREATE INDEX refresh_tokens_access_expires_at ON refresh_tokens (access_expires_at)",
    ),
    (
        # The sealed answer of a Refresh spent under an idempotency key (retryable).
        "ALTER TABLE refresh_tokens ADD COLUMN retry_key bytea,"
        " ADD COLUMN retry_sealed bytea, ADD COLUMN retry_until double precision",
        # A subject's Revoke(subject) cutoff, read by every family creation and rotation.
        "CREATE INDEX revocations_subject ON revocations (value) WHERE kind = 'subject'",
    ),
    (
        # Tokens minted by Exchange (RFC 8693), against the token they came from: a
        # revocation of the parent (or of the subject) revokes them (store/base.py).
        """CREATE TABLE exchanges (
            child_jti   text PRIMARY KEY,
            parent_jti  text NOT NULL,
            subject     text NOT NULL,
            expires_at  double precision NOT NULL
        )""",
        "CREATE INDEX exchanges_parent ON exchanges (parent_jti)",
        "CREATE INDEX exchanges_subject ON exchanges (subject)",
        "CREATE INDEX exchanges_expires_at ON exchanges (expires_at)",
        "CREATE INDEX revocations_jti ON revocations (value) WHERE kind = 'jti'",
    ),
)

# libpq parameters tokend sets unless the URL sets them itself. Keepalives and the TCP
# user timeout notice a database host that vanished without closing its connections.
_CONNECTION_DEFAULTS = {
    "connect_timeout": "5",
    "keepalives": "1",
    "keepalives_idle": "30",
    "keepalives_interval": "10",
    "keepalives_count": "3",
    "tcp_user_timeout": "30000",
}
# Server-side limits per session; the URL's own `options` come after, so they win.
_SESSION_OPTIONS = (
    "-c statement_timeout=10s -c lock_timeout=5s -c idle_in_transaction_session_timeout=60s"
)
# How long the listener waits in silence before it probes its connection.
_LISTEN_PROBE_INTERVAL = 30.0

# Queries are assembled from these constant column lists only; values are always bound.
_FAMILY_COLUMNS = (
    "family_id", "subject", "client_id", "audience", "scopes", "claims",
    "access_ttl", "created_at", "expires_at", "revoked_at",
)  # fmt: skip
_TOKEN_COLUMNS = (
    "token_hash", "family_id", "issued_at", "expires_at",
    "access_jti", "access_expires_at", "spent_at", "retry_key", "retry_sealed", "retry_until",
)  # fmt: skip
_FAMILY_COLS = ", ".join(_FAMILY_COLUMNS)
_TOKEN_COLS = ", ".join(_TOKEN_COLUMNS)
_INSERT_REVOCATION = (
    "INSERT INTO revocations (kind, value, not_before, expires_at, reason, created_at)"
    " VALUES (%s, %s, %s, %s, %s, %s) RETURNING seq"
)
_SELECT_SINCE = (
    "SELECT seq, kind, value, not_before, expires_at, reason, created_at FROM revocations"
    " WHERE seq > %s AND expires_at > %s ORDER BY seq LIMIT %s"
)
_INSERT_FAMILY = (
    f"INSERT INTO refresh_families ({_FAMILY_COLS})"  # noqa: S608
    " VALUES (%s, %s, %s, %s::text[], %s::text[], %s::jsonb, %s, %s, %s, %s)"
)
_INSERT_TOKEN = (
    f"INSERT INTO refresh_tokens ({_TOKEN_COLS})"  # noqa: S608
    " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s)"
)
_SELECT_SUBJECT_CUTOFF = (
    "SELECT MAX(not_before) FROM revocations WHERE kind = 'subject' AND value = %s"
)
_LOCK_SUBJECT = "SELECT pg_advisory_xact_lock(%s, hashtext(%s))"
_SELECT_REFRESH = (
    f"SELECT {', '.join('f.' + c for c in _FAMILY_COLUMNS)},"  # noqa: S608
    f" {', '.join('t.' + c for c in _TOKEN_COLUMNS)}"
    " FROM refresh_tokens t JOIN refresh_families f ON f.family_id = t.family_id"
    " WHERE t.token_hash = %s"
)
# The family of a token, locked; the subquery reads the token without locking it.
_LOCK_FAMILY_OF_TOKEN = (
    f"SELECT {_FAMILY_COLS} FROM refresh_families"  # noqa: S608
    " WHERE family_id = (SELECT family_id FROM refresh_tokens WHERE token_hash = %s)"
    " FOR UPDATE"
)
_LOCK_TOKEN = f"SELECT {_TOKEN_COLS} FROM refresh_tokens WHERE token_hash = %s FOR UPDATE"  # noqa: S608
_LOCK_FAMILY = f"SELECT {_FAMILY_COLS} FROM refresh_families WHERE family_id = %s FOR UPDATE"  # noqa: S608
# Locked in one fixed order, so two subject revocations cannot deadlock.
_LOCK_LIVE_FAMILIES_OF_SUBJECT = (
    f"SELECT {_FAMILY_COLS} FROM refresh_families"  # noqa: S608
    " WHERE subject = %s AND revoked_at IS NULL AND expires_at > %s"
    " ORDER BY created_at, family_id FOR UPDATE"
)
_N_FAMILY_COLS = len(_FAMILY_COLUMNS)


class PostgresStore(OpsStore):
    """`Store` (and `ChangeFeed`) on a PostgreSQL database. `open()` before use.

    ``migrate``: `open()` applies missing migrations (serialised across replicas by an
    advisory lock). With ``False`` it only checks that the schema is exactly the one
    this tokend knows, for deployments that run ``tokend migrate`` as a separate step.
    ``timeout`` bounds the wait for a pooled connection, so calls fail with
    `StoreError` after about that long while the database is unreachable.
    """

    _db_system = "postgresql"

    def __init__(
        self,
        url: str,
        *,
        min_size: int = 1,
        max_size: int = 10,
        migrate: bool = True,
        timeout: float = 5.0,
        clock: Callable[[], float] = time.time,
        tracer: Tracer | None = None,
    ) -> None:
        if not 0 <= min_size <= max_size or max_size < 1:
            raise ValueError("need 0 <= min_size <= max_size and max_size >= 1")
        if timeout <= 0:
            raise ValueError("timeout must be positive")
        self._conninfo, self._secret = _conninfo(url, "tokend")
        self._listen_conninfo, _ = _conninfo(url, "tokend-listener")
        self._min_size = min_size
        self._max_size = max_size
        self._migrate = migrate
        self._timeout = timeout
        # Each call as a whole: the pool wait plus the statements, with room to spare.
        self._call_timeout = timeout + 15.0
        self._clock = clock
        self._tracer = tracer  # a span per transaction within a traced RPC (OpsStore._run)
        self._pool: AsyncConnectionPool[Conn] | None = None
        self._listener: asyncio.Task[None] | None = None
        self._changed = asyncio.Event()
        self._listening = False

    def __repr__(self) -> str:
        return "PostgresStore()"  # never the URL: it may hold a password

    @property
    def listening(self) -> bool:
        """True while the LISTEN connection of `wait_for_change` is up."""
        return self._listening

    # -- lifecycle -------------------------------------------------------------------

    async def open(self) -> None:
        """Migrate (or check) the schema, then fill the pool; a no-op when open."""
        if self._pool is not None:
            return
        # The schema step runs on a connection of its own, so a database that cannot be
        # reached fails here with libpq's reason rather than a bare pool timeout.
        try:
            async with asyncio.timeout(self._call_timeout):
                conn = await AsyncConnection.connect(self._conninfo, autocommit=True)
                async with conn:
                    await (_migrate(conn, self._clock()) if self._migrate else _check(conn))
        except (psycopg.Error, TimeoutError) as exc:
            raise self._error(exc) from exc
        pool: AsyncConnectionPool[Conn] = AsyncConnectionPool(
            self._conninfo,
            kwargs={"autocommit": True},
            min_size=self._min_size,
            max_size=self._max_size,
            open=False,
            # One empty round trip per checkout: a connection broken by a database
            # restart is replaced instead of failing the caller's first query.
            check=AsyncConnectionPool.check_connection,
            name="tokend-store",
            timeout=self._timeout,
            # Give up a reconnection loop early: the next call starts a fresh one, so
            # recovery after an outage is not stuck behind a long backoff delay.
            reconnect_timeout=max(2 * self._timeout, 10.0),
        )
        try:
            await pool.open(wait=True, timeout=self._timeout)
        except PoolTimeout as exc:
            await pool.close()
            raise StoreError(f"postgresql: no connection within {self._timeout:g} s") from exc
        self._pool = pool

    async def close(self) -> None:
        """Stop the listener and close every connection; idempotent, reopenable."""
        listener, self._listener = self._listener, None
        if listener is not None:
            listener.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await listener
        self._listening = False
        pool, self._pool = self._pool, None
        if pool is not None:
            await pool.close()

    async def _call(self, fn: Callable[..., Awaitable[T]], *args: Any) -> T:
        """Run ``fn(conn, *args)`` on a pooled connection; map driver errors to StoreError."""
        pool = self._pool
        if pool is None:
            raise StoreError("the PostgreSQL store is not open")
        try:
            async with asyncio.timeout(self._call_timeout), pool.connection() as conn:
                return await fn(conn, *args)
        except psycopg.errors.IntegrityError as exc:
            raise ConflictError(self._describe(exc)) from exc
        except psycopg.DataError as exc:
            # SQLSTATE class 22 (and psycopg's own "text cannot contain NUL"): the value
            # is wrong, the database is up. An outage alert here would be false.
            log.info("store.value_refused", error=type(exc).__name__)  # not the value
            raise InvalidValue("the store cannot hold a value of this request (a NUL "
                               "character or text PostgreSQL refuses)") from exc
        except (psycopg.Error, TimeoutError) as exc:
            raise self._error(exc) from exc

    def _error(self, exc: BaseException) -> StoreError:
        return StoreError(self._describe(exc))

    def _describe(self, exc: BaseException) -> str:
        """One line about ``exc`` for an error or a log; the password is masked."""
        if isinstance(exc, PoolTimeout):
            text = f"no connection within {self._timeout:g} s (is the database reachable?)"
        elif isinstance(exc, TimeoutError):
            text = f"no answer within {self._call_timeout:g} s"
        else:
            lines = str(exc).strip().splitlines()
            text = lines[0] if lines else type(exc).__name__
        if self._secret:
            text = text.replace(self._secret, "***")
        return f"postgresql: {text[:300]}"


    # -- change feed -----------------------------------------------------------------

    async def wait_for_change(self, timeout: float) -> None:
        """Sleep up to ``timeout``; return early when a revocation was committed anywhere.

        The LISTEN connection starts on the first call and reconnects after errors;
        each (re)connect wakes the caller once so it catches up on what it missed.
        """
        if self._pool is None:
            raise StoreError("the PostgreSQL store is not open")
        if self._listener is None or self._listener.done():
            self._listener = asyncio.create_task(self._listen(), name="tokend-store-listen")
        # asyncio.timeout, not wait_for: on 3.11 wait_for swallows a cancellation that
        # arrives as the event is set, and the follower would then never stop.
        try:
            async with asyncio.timeout(timeout):
                await self._changed.wait()
        except TimeoutError:
            return
        self._changed.clear()  # before the caller polls: a later NOTIFY wakes it again

    async def _listen(self) -> None:
        """Keep a LISTEN connection until cancelled; errors are logged, then retried."""
        failures = 0
        while True:
            try:
                await self._listen_once()
            except Exception as exc:
                failures = 1 if self._listening else failures + 1
                self._listening = False
                # The first failure of an outage, then every tenth: no log flood.
                if failures == 1 or failures % 10 == 0:
                    log.warning(
                        "store.listen_failed", error=self._describe(exc), failures=failures
                    )
            await asyncio.sleep(min(0.2 * 2 ** (failures - 1), 5.0))

    async def _listen_once(self) -> None:
        """Listen until the connection fails (raises); never returns normally."""
        async with asyncio.timeout(self._call_timeout):
            conn = await AsyncConnection.connect(self._listen_conninfo, autocommit=True)
        async with conn:
            await conn.execute(f"LISTEN {CHANNEL}")
            self._listening = True
            log.info("store.listening", channel=CHANNEL)
            self._changed.set()  # whatever was committed while nobody listened
            while True:
                async for _ in conn.notifies(timeout=_LISTEN_PROBE_INTERVAL):
                    self._changed.set()
                # Silence may also mean a dead peer: a round trip proves the link.
                async with asyncio.timeout(self._call_timeout):
                    await conn.execute("SELECT 1")


# -- connection parameters -------------------------------------------------------------


def _conninfo(url: str, application_name: str) -> tuple[str, str | None]:
    """libpq conninfo from ``url`` plus tokend's defaults; also returns the password.

    A malformed URL is refused without libpq's message, which may quote part of it.
    """
    try:
        params: dict[str, Any] = conninfo_to_dict(url)
    except psycopg.Error:
        raise ValueError(
            "the PostgreSQL store URL is malformed (details withheld: it may hold a password)"
        ) from None
    for key, value in {**_CONNECTION_DEFAULTS, "application_name": application_name}.items():
        params.setdefault(key, value)
    params["options"] = f"{_SESSION_OPTIONS} {params.get('options', '')}".strip()
    password = params.get("password")
    return make_conninfo("", **params), str(password) if password else None


# -- schema ----------------------------------------------------------------------------


async def _migrate(conn: Conn, now: float) -> None:
    """Apply missing migrations in one transaction, one replica at a time.

    On a current schema this creates nothing, so a runtime role without the CREATE
    privilege can open the store with ``migrate=True`` too.
    """
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock(%s)", (MIGRATION_LOCK,))
        current = await _current_version(conn)
        if current is None:
            await conn.execute(
                "CREATE TABLE schema_version ("
                " version integer PRIMARY KEY, applied_at double precision NOT NULL)"
            )
            current = 0
        refuse_newer_schema(current, len(MIGRATIONS))
        for version in range(current + 1, len(MIGRATIONS) + 1):
            for statement in MIGRATIONS[version - 1]:
                await conn.execute(statement)
            await conn.execute("INSERT INTO schema_version VALUES (%s, %s)", (version, now))
        if current < len(MIGRATIONS):
            log.info("store.migrated", schema_from=current, schema_to=len(MIGRATIONS))


async def _check(conn: Conn) -> None:
    """Refuse to run on a schema other than this tokend's (``migrate=False``)."""
    current = await _current_version(conn) or 0
    refuse_newer_schema(current, len(MIGRATIONS))
    if current < len(MIGRATIONS):
        raise StoreError(
            f"the database has schema version {current}, this tokend needs "
            f"{len(MIGRATIONS)}; run `tokend migrate` first"
        )


async def _current_version(conn: Conn) -> int | None:
    """The schema version; None when there is no schema_version table at all."""
    row = await _fetch_one(conn, "SELECT to_regclass('schema_version') IS NOT NULL", ())
    if not row or not row[0]:
        return None
    row = await _fetch_one(conn, "SELECT COALESCE(MAX(version), 0) FROM schema_version", ())
    return int(row[0]) if row else 0


# -- row mapping -----------------------------------------------------------------------


def _family(row: Sequence[Any]) -> RefreshFamily:
    (family_id, subject, client_id, audience, scopes, claims, ttl, created, expires, revoked) = row
    return RefreshFamily(
        family_id=family_id,
        subject=subject,
        client_id=client_id,
        audience=tuple(audience),
        scopes=tuple(scopes),
        claims=claims,
        access_ttl=ttl,
        created_at=created,
        expires_at=expires,
        revoked_at=revoked,
    )


def _family_params(f: RefreshFamily) -> tuple[Any, ...]:
    # Claims are encoded here, on the caller's side, so a non-JSON claim fails before I/O.
    claims = json.dumps(f.claims, separators=(",", ":"), sort_keys=True, allow_nan=False)
    return (
        f.family_id,
        f.subject,
        f.client_id,
        list(f.audience),
        list(f.scopes),
        claims,
        f.access_ttl,
        f.created_at,
        f.expires_at,
        f.revoked_at,
    )


# -- revocations (on a pooled connection) ----------------------------------------------


async def _insert_revocations(
    conn: Conn, items: Sequence[NewRevocation], created_at: float
) -> list[Revocation]:
    """Insert under `FEED_LOCK` and NOTIFY; the caller holds the transaction.

    The lock comes before the first ``nextval`` and is released only by the commit (or
    rollback), so no other writer takes a sequence value while this one is in flight.
    """
    await conn.execute("SELECT pg_advisory_xact_lock(%s)", (FEED_LOCK,))
    # After the lock, which _record_exchange takes too: every committed link is seen.
    items = await _cascade(conn, items, created_at)
    params = [(i.kind, i.value, i.not_before, i.expires_at, i.reason, created_at) for i in items]
    seqs: list[int] = []
    async with conn.cursor() as cur:
        await cur.executemany(_INSERT_REVOCATION, params, returning=True)
        while True:  # one result set per inserted row, in order
            row = await cur.fetchone()
            assert row is not None
            seqs.append(int(row[0]))
            if not cur.nextset():
                break
    # Delivered to listeners only if and when this transaction commits.
    await conn.execute("SELECT pg_notify(%s, %s)", (CHANNEL, str(seqs[-1])))
    return [
        Revocation(seq, i.kind, i.value, i.not_before, i.expires_at, i.reason, created_at)
        for seq, i in zip(seqs, items, strict=True)
    ]


_SELECT_LINKS = (
    "SELECT child_jti, parent_jti, subject, expires_at FROM exchanges"
    " WHERE (parent_jti = ANY(%s) OR subject = ANY(%s)) AND expires_at > %s"
)


async def _cascade(conn: Conn, items: Sequence[NewRevocation], now: float
                   ) -> list[NewRevocation]:
    cascade = Cascade(items)
    while True:
        jtis, subjects = cascade.pending()
        if not jtis and not subjects:
            return cascade.items
        rows = await (await conn.execute(_SELECT_LINKS, (jtis, subjects, now))).fetchall()
        cascade.found(rows)


async def _record_exchange(conn: Conn, link: ExchangeLink, now: float) -> bool:
    async with conn.transaction():
        # FEED_LOCK, which every revocation insert holds until it commits: a revocation
        # of the parent that commits first is seen below; one that commits later finds
        # the link (its cascade runs under the same lock). No row lock is taken here, so
        # the lock order stays acyclic.
        await conn.execute("SELECT pg_advisory_xact_lock(%s)", (FEED_LOCK,))
        revoked = await _fetch_one(
            conn, "SELECT 1 FROM revocations WHERE kind = 'jti' AND value = %s"
            " AND expires_at > %s", (link.parent_jti, now))
        cutoff = await _subject_cutoff(conn, link.subject)
        if revoked is not None or (cutoff is not None and link.parent_iat <= cutoff):
            return False
        await conn.execute(
            "INSERT INTO exchanges (child_jti, parent_jti, subject, expires_at)"
            " VALUES (%s, %s, %s, %s)",
            (link.child_jti, link.parent_jti, link.subject, link.child_expires_at))
        return True


async def _add_revocations(
    conn: Conn, items: list[NewRevocation], created_at: float
) -> list[Revocation]:
    async with conn.transaction():
        return await _insert_revocations(conn, items, created_at)


async def _revocations_since(conn: Conn, seq: int, now: float, limit: int) -> list[Revocation]:
    rows = await (await conn.execute(_SELECT_SINCE, (seq, now, limit))).fetchall()
    return [Revocation(*row) for row in rows]


async def _last_seq(conn: Conn) -> int:
    async with conn.transaction():
        # Shared mode waits for writers in flight: every seq up to the answer is settled.
        await conn.execute("SELECT pg_advisory_xact_lock_shared(%s)", (FEED_LOCK,))
        cur = await conn.execute("SELECT last_value, is_called FROM revocation_seq")
        row = await cur.fetchone()
    # The sequence keeps its value when rows are purged: never lowered, never reused.
    return int(row[0]) if row and row[1] else 0


# -- refresh families (on a pooled connection) -----------------------------------------


async def _create_family(
    conn: Conn, family: tuple[Any, ...], first: tuple[Any, ...],
    subject: str, created_at: float, now: float,
) -> None:
    async with conn.transaction():
        # With revoke_subject's lock, one of the two sees the other: a family from an
        # Issue that raced Revoke(subject) is either revoked by it or born revoked here.
        await conn.execute(_LOCK_SUBJECT, (SUBJECT_LOCK_CLASS, subject))
        cutoff = await _subject_cutoff(conn, subject)
        if cutoff is not None and created_at <= cutoff:
            family = (*family[:-1], now)
        await conn.execute(_INSERT_FAMILY, family)
        await conn.execute(_INSERT_TOKEN, first)


async def _get_refresh(conn: Conn, token_hash: bytes) -> tuple[RefreshFamily, RefreshToken] | None:
    row = await (await conn.execute(_SELECT_REFRESH, (token_hash,))).fetchone()
    if row is None:
        return None
    return _family(row[:_N_FAMILY_COLS]), token_from_row(row[_N_FAMILY_COLS:])


async def _fetch_one(conn: Conn, query: str, params: tuple[Any, ...]) -> tuple[Any, ...] | None:
    return await (await conn.execute(query, params)).fetchone()


async def _subject_cutoff(conn: Conn, subject: str) -> float | None:
    """The latest Revoke(subject) cutoff still on record (purged once it expired)."""
    row = await _fetch_one(conn, _SELECT_SUBJECT_CUTOFF, (subject,))
    return float(row[0]) if row and row[0] is not None else None


async def _rotate(
    conn: Conn,
    old_hash: bytes,
    new: RefreshToken,
    new_params: tuple[Any, ...],
    now: float,
    created_at: float,
    retry_key: bytes | None,
    retry: RefreshRetry | None,
) -> RotateResult:
    async with conn.transaction():
        # Family first, then token: a concurrent use of the same token waits here and
        # then sees it spent (reuse); a concurrent family revocation is seen as REVOKED.
        family_row = await _fetch_one(conn, _LOCK_FAMILY_OF_TOKEN, (old_hash,))
        if family_row is None:
            return RotateResult(RotateStatus.NOT_FOUND, None)
        token_row = await _fetch_one(conn, _LOCK_TOKEN, (old_hash,))
        if token_row is None:  # purged between the two statements
            return RotateResult(RotateStatus.NOT_FOUND, None)
        family, old = _family(family_row), token_from_row(token_row)
        cutoff = await _subject_cutoff(conn, family.subject)
        status = rotation_status(family, old, new, now, subject_cutoff=cutoff,
                                 retry_key=retry_key)
        if status is RotateStatus.REUSED:
            revoked = await _revoke_family_tx(conn, family, REUSE_REASON, now, created_at, now)
            return RotateResult(status, replace(family, revoked_at=now), tuple(revoked))
        if status is RotateStatus.REVOKED and family.revoked_at is None:
            # Cut off by Revoke(subject) (a family its transaction could not see): revoked
            # with what it issued, so it stays dead after the subject entry expires.
            revoked = await _revoke_family_tx(
                conn, family, SUBJECT_CUTOFF_REASON, now, created_at, now)
            return RotateResult(status, replace(family, revoked_at=now), tuple(revoked))
        if status is RotateStatus.RETRY:
            return RotateResult(status, family, retry=old.retry)
        if status is not RotateStatus.OK:
            return RotateResult(status, family)
        await conn.execute(
            "UPDATE refresh_tokens SET spent_at = %s, retry_key = %s, retry_sealed = %s,"
            " retry_until = %s WHERE token_hash = %s", (now, *retry_params(retry), old_hash)
        )
        await conn.execute(_INSERT_TOKEN, new_params)
        return RotateResult(RotateStatus.OK, family)


async def _revoke_family_tx(
    conn: Conn,
    family: RefreshFamily,
    reason: str,
    now: float,
    created_at: float,
    covered_until: float,
) -> list[Revocation]:
    """Mark the family revoked; deny its access tokens still valid after ``covered_until``.

    The caller holds the transaction and the family's row lock. ``covered_until`` is
    ``now`` for a plain family revocation, and the subject entry's expiry when a subject
    revocation already covers the family's access tokens until then.
    """
    await conn.execute(
        "UPDATE refresh_families SET revoked_at = %s WHERE family_id = %s",
        (now, family.family_id),
    )
    live = await (
        await conn.execute(
            "SELECT access_jti, access_expires_at FROM refresh_tokens"
            " WHERE family_id = %s AND access_expires_at > %s ORDER BY issued_at, token_hash",
            (family.family_id, covered_until),
        )
    ).fetchall()
    last = await _fetch_one(
        conn,
        "SELECT COALESCE(MAX(access_expires_at), 0) FROM refresh_tokens WHERE family_id = %s",
        (family.family_id,),
    )
    last_access = float(last[0]) if last else 0.0
    items = [NewRevocation("jti", jti, expires_at, reason) for jti, expires_at in live]
    # The family entry lives as long as anything the family issued could still be used.
    family_expiry = max(family.expires_at, last_access)
    items.append(NewRevocation("family", family.family_id, family_expiry, reason))
    return await _insert_revocations(conn, items, created_at)


async def _revoke_family(
    conn: Conn, family_id: str, reason: str, now: float, created_at: float
) -> list[Revocation]:
    async with conn.transaction():
        row = await _fetch_one(conn, _LOCK_FAMILY, (family_id,))
        if row is None:
            return []  # unknown family: nothing to do, and not an error (RFC 7009, 2.2)
        family = _family(row)
        if family.revoked_at is not None:
            return []
        return await _revoke_family_tx(conn, family, reason, now, created_at, now)


async def _revoke_subject(
    conn: Conn, subject: str, reason: str, now: float, expires_at: float, created_at: float
) -> list[Revocation]:
    async with conn.transaction():
        # The subject lock first (see _create_family), then row locks before the feed lock
        # (taken by the first insert), as everywhere.
        await conn.execute(_LOCK_SUBJECT, (SUBJECT_LOCK_CLASS, subject))
        families = await (
            await conn.execute(_LOCK_LIVE_FAMILIES_OF_SUBJECT, (subject, now))
        ).fetchall()
        entry = NewRevocation("subject", subject, expires_at, reason, not_before=now)
        out = await _insert_revocations(conn, [entry], created_at)
        for row in families:
            out += await _revoke_family_tx(
                conn, _family(row), reason, now, created_at, expires_at
            )
        return out


async def _purge(conn: Conn, now: float) -> int:
    # Three short transactions rather than one: nothing needs them atomic, and holding
    # token and family row locks together could deadlock with a rotation.
    cur = await conn.execute("DELETE FROM revocations WHERE expires_at <= %s", (now,))
    removed = cur.rowcount
    # A token row is kept while its access token is alive (revoke_family needs the jti)
    # and while it can still be presented: spent rows are what reuse detection matches.
    cur = await conn.execute(
        "DELETE FROM refresh_tokens WHERE access_expires_at <= %(now)s AND (expires_at <= %(now)s"
        " OR family_id IN (SELECT family_id FROM refresh_families WHERE expires_at <= %(now)s))",
        {"now": now},
    )
    removed += cur.rowcount
    # A sealed answer is of no use after its retry window: do not keep it.
    await conn.execute(
        "UPDATE refresh_tokens SET retry_key = NULL, retry_sealed = NULL, retry_until = NULL"
        " WHERE retry_until <= %s", (now,))
    cur = await conn.execute("DELETE FROM exchanges WHERE expires_at <= %s", (now,))
    removed += cur.rowcount
    cur = await conn.execute(
        "DELETE FROM refresh_families f WHERE f.expires_at <= %s AND NOT EXISTS"
        " (SELECT 1 FROM refresh_tokens t WHERE t.family_id = f.family_id)",
        (now,),
    )
    return removed + cur.rowcount


PostgresStore._ops = StoreOps(
    add_revocations=_add_revocations,
    revocations_since=_revocations_since,
    last_seq=_last_seq,
    create_family=_create_family,
    get_refresh=_get_refresh,
    rotate=_rotate,
    revoke_family=_revoke_family,
    revoke_subject=_revoke_subject,
    purge=_purge,
    record_exchange=_record_exchange,
    family_params=_family_params,
    token_params=token_params,
)
