"""SQLite store: the embedded, single-node default.

Durability: WAL with ``synchronous=FULL``, so a commit is on stable storage before the
call returns (a Revoke answered OK survives power loss). All blocking work runs in one
dedicated worker thread per store, which also owns the connection, so the event loop
never waits on disk or locks. Writes use ``BEGIN IMMEDIATE``: the write lock is taken
up front, so two processes on one file queue on ``busy_timeout`` instead of failing
when a read transaction tries to upgrade.
"""

from __future__ import annotations

import asyncio
import json
import os
import sqlite3
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from .base import (
    REUSE_REASON,
    SUBJECT_CUTOFF_REASON,
    Cascade,
    ConflictError,
    ExchangeLink,
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

T = TypeVar("T")

# Append only: a released migration is never edited, a change is a new entry.
# Version N is MIGRATIONS[N - 1]; each runs in one transaction with its schema_version row.
MIGRATIONS: tuple[tuple[str, ...], ...] = (
    (
        """CREATE TABLE revocations (
            seq         INTEGER PRIMARY KEY AUTOINCREMENT,  -- AUTOINCREMENT: never reused
            kind        TEXT NOT NULL CHECK (kind IN ('jti', 'subject', 'family')),
            value       TEXT NOT NULL,
            not_before  REAL NOT NULL DEFAULT 0,
            expires_at  REAL NOT NULL,
            reason      TEXT NOT NULL DEFAULT '',
            created_at  REAL NOT NULL
        )""",
        "CREATE INDEX revocations_expires_at ON revocations (expires_at)",
        """CREATE TABLE refresh_families (
            family_id   TEXT PRIMARY KEY NOT NULL,
            subject     TEXT NOT NULL,
            client_id   TEXT NOT NULL,
            audience    TEXT NOT NULL,  -- JSON array
            scopes      TEXT NOT NULL,  -- JSON array
            claims      TEXT NOT NULL,  -- JSON object
            access_ttl  REAL NOT NULL,
            created_at  REAL NOT NULL,
            expires_at  REAL NOT NULL,
            revoked_at  REAL
        )""",
        "CREATE INDEX refresh_families_subject ON refresh_families (subject)",
        "CREATE INDEX refresh_families_expires_at ON refresh_families (expires_at)",
        """CREATE TABLE refresh_tokens (
            token_hash        BLOB PRIMARY KEY NOT NULL,
            family_id         TEXT NOT NULL
                              REFERENCES refresh_families (family_id) ON DELETE CASCADE,
            issued_at         REAL NOT NULL,
            expires_at        REAL NOT NULL,
            access_jti        TEXT NOT NULL,
            access_expires_at REAL NOT NULL,
            spent_at          REAL
        ) WITHOUT ROWID""",
        "CREATE INDEX refresh_tokens_family_id ON refresh_tokens (family_id)",
        "CREATE INDEX refresh_tokens_access_expires_at ON refresh_tokens (access_expires_at)",
    ),
    (
        # The sealed answer of a Refresh spent under an idempotency key (retryable).
        "ALTER TABLE refresh_tokens ADD COLUMN retry_key BLOB",
        "ALTER TABLE refresh_tokens ADD COLUMN retry_sealed BLOB",
        "ALTER TABLE refresh_tokens ADD COLUMN retry_until REAL",
        # A subject's Revoke(subject) cutoff, read by every family creation and rotation.
        "CREATE INDEX revocations_subject ON revocations (value) WHERE kind = 'subject'",
    ),
    (
        # Tokens minted by Exchange (RFC 8693), against the token they came from: a
        # revocation of the parent (or of the subject) revokes them (store/base.py).
        """CREATE TABLE exchanges (
            child_jti   TEXT PRIMARY KEY NOT NULL,
            parent_jti  TEXT NOT NULL,
            subject     TEXT NOT NULL,
            expires_at  REAL NOT NULL
        ) WITHOUT ROWID""",
        "CREATE INDEX exchanges_parent ON exchanges (parent_jti)",
        "CREATE INDEX exchanges_subject ON exchanges (subject)",
        "CREATE INDEX exchanges_expires_at ON exchanges (expires_at)",
        "CREATE INDEX revocations_jti ON revocations (value) WHERE kind = 'jti'",
    ),
)


# Queries are assembled from these constant column lists only; values are always bound.
_FAMILY_COLS = (
    "f.family_id, f.subject, f.client_id, f.audience, f.scopes, f.claims,"
    " f.access_ttl, f.created_at, f.expires_at, f.revoked_at"
)
_REFRESH_COLS = (
    "t.token_hash, t.family_id, t.issued_at, t.expires_at,"
    " t.access_jti, t.access_expires_at, t.spent_at, t.retry_key, t.retry_sealed, t.retry_until"
)
_N_FAMILY_COLS = 10
_SELECT_SINCE = (
    "SELECT seq, kind, value, not_before, expires_at, reason, created_at FROM revocations"
    " WHERE seq > ? AND expires_at > ? ORDER BY seq LIMIT ?"
)
_SELECT_REFRESH = (
    f"SELECT {_FAMILY_COLS}, {_REFRESH_COLS} FROM refresh_tokens t"  # noqa: S608
    " JOIN refresh_families f ON f.family_id = t.family_id WHERE t.token_hash = ?"
)
_SELECT_FAMILY = f"SELECT {_FAMILY_COLS} FROM refresh_families f WHERE f.family_id = ?"  # noqa: S608
_SELECT_SUBJECT_CUTOFF = (
    "SELECT MAX(not_before) FROM revocations WHERE kind = 'subject' AND value = ?"
)
_SELECT_LIVE_FAMILIES_OF_SUBJECT = (
    f"SELECT {_FAMILY_COLS} FROM refresh_families f"  # noqa: S608
    " WHERE f.subject = ? AND f.revoked_at IS NULL AND f.expires_at > ? ORDER BY f.created_at"
)


class SqliteStore(OpsStore):
    """`Store` on one SQLite file. Call `open()` before use and `close()` at shutdown."""

    _db_system = "sqlite"

    def __init__(
        self,
        path: str | Path,
        *,
        busy_timeout: float = 5.0,
        clock: Callable[[], float] = time.time,
        tracer: Tracer | None = None,
    ) -> None:
        text = str(path)
        if not text or text == ":memory:" or text.startswith("file:"):
            # State must survive restarts, and SQLite URI filenames could smuggle in
            # mode=memory or other options we do not control.
            raise ValueError(f"SqliteStore needs a file path, got {text!r}")
        self._path = Path(path)
        self._busy_timeout = busy_timeout
        self._clock = clock
        self._tracer = tracer  # a span per transaction within a traced RPC (OpsStore._run)
        self._executor: ThreadPoolExecutor | None = None
        self._conn: sqlite3.Connection | None = None  # used only in the worker thread

    @property
    def path(self) -> Path:
        return self._path

    # -- lifecycle -------------------------------------------------------------------

    async def open(self) -> None:
        if self._executor is not None:
            return
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="tokend-sqlite")
        try:
            await self._submit(self._open_sync)
        except BaseException:
            self._executor.shutdown(wait=False)
            self._executor = None
            raise

    async def close(self) -> None:
        executor = self._executor
        if executor is None:
            return
        try:
            await self._call(self._close_sync)
        finally:
            self._executor = None
            executor.shutdown(wait=False)

    def _open_sync(self) -> None:
        _prepare_path(self._path)
        conn = sqlite3.connect(
            self._path, timeout=self._busy_timeout, isolation_level=None, check_same_thread=True
        )
        try:
            _configure(conn, self._busy_timeout)
            _migrate(conn, self._clock())
        except BaseException:
            conn.close()
            raise
        self._conn = conn

    def _close_sync(self, conn: sqlite3.Connection) -> None:
        self._conn = None
        conn.close()

    async def _call(self, fn: Callable[..., T], *args: Any) -> T:
        """Run ``fn(conn, *args)`` on the worker thread."""
        return await self._submit(lambda: fn(self._connection(), *args))

    async def _submit(self, fn: Callable[[], T]) -> T:
        """Run ``fn`` on the worker thread; map sqlite errors to StoreError."""
        executor = self._executor
        if executor is None:
            raise StoreError("the SQLite store is not open")
        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(executor, fn)
        except sqlite3.IntegrityError as exc:
            raise ConflictError(f"sqlite: {exc}") from exc
        except sqlite3.Error as exc:
            raise StoreError(f"sqlite: {exc}") from exc

    def _connection(self) -> sqlite3.Connection:
        if self._conn is None:
            raise StoreError("the SQLite store is not open")
        return self._conn



# -- setup (worker thread) -------------------------------------------------------------


def _prepare_path(path: Path) -> None:
    """Create missing directories 0700 and the database file 0600 before SQLite does.

    SQLite creates the -wal and -shm files with the database file's mode, so they are
    private too. Existing directories and files keep the mode the operator gave them.
    """
    missing: list[Path] = []
    parent = path.absolute().parent
    while not parent.exists():
        missing.append(parent)
        parent = parent.parent
    for directory in reversed(missing):
        directory.mkdir(mode=0o700, exist_ok=True)
        os.chmod(directory, 0o700)  # the umask may have removed bits we need
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return
    try:
        os.fchmod(fd, 0o600)
    finally:
        os.close(fd)


def _configure(conn: sqlite3.Connection, busy_timeout: float) -> None:
    mode = _switch_to_wal(conn, busy_timeout)
    if str(mode).lower() != "wal":
        # e.g. a network filesystem without shared memory: refuse rather than run unsafely.
        raise StoreError(f"could not switch the SQLite database to WAL (got {mode!r})")
    conn.execute("PRAGMA synchronous = FULL")  # fsync the WAL on every commit
    conn.execute("PRAGMA foreign_keys = ON")
    conn.execute(f"PRAGMA busy_timeout = {int(busy_timeout * 1000)}")
    conn.execute("PRAGMA trusted_schema = OFF")


def _switch_to_wal(conn: sqlite3.Connection, busy_timeout: float) -> object:
    """The journal mode after asking for WAL. Processes switching a new database at once
    (`tokend serve --workers`) deadlock on its lock, and SQLite then answers one of them
    "database is locked" at once, without waiting on busy_timeout: wait here instead."""
    deadline = time.monotonic() + busy_timeout
    while True:
        try:
            return conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
        time.sleep(0.01)


def _migrate(conn: sqlite3.Connection, now: float) -> None:
    with _write(conn):
        conn.execute(
            "CREATE TABLE IF NOT EXISTS schema_version ("
            " version INTEGER PRIMARY KEY NOT NULL, applied_at REAL NOT NULL)"
        )
        current = conn.execute("SELECT COALESCE(MAX(version), 0) FROM schema_version").fetchone()[0]
        refuse_newer_schema(current, len(MIGRATIONS))
        for version in range(current + 1, len(MIGRATIONS) + 1):
            for statement in MIGRATIONS[version - 1]:
                conn.execute(statement)
            conn.execute("INSERT INTO schema_version VALUES (?, ?)", (version, now))


@contextmanager
def _write(conn: sqlite3.Connection) -> Iterator[None]:
    """A write transaction that holds the write lock from its first statement."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield
    except BaseException:
        if conn.in_transaction:  # SQLite may already have rolled back (e.g. disk full)
            conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")


# -- row mapping -----------------------------------------------------------------------


def _revocation(row: Sequence[Any]) -> Revocation:
    return Revocation(*row)


def _family(row: Sequence[Any]) -> RefreshFamily:
    (family_id, subject, client_id, audience, scopes, claims, ttl, created, expires, revoked) = row
    return RefreshFamily(
        family_id=family_id,
        subject=subject,
        client_id=client_id,
        audience=tuple(json.loads(audience)),
        scopes=tuple(json.loads(scopes)),
        claims=json.loads(claims),
        access_ttl=ttl,
        created_at=created,
        expires_at=expires,
        revoked_at=revoked,
    )


def _family_params(f: RefreshFamily) -> tuple[Any, ...]:
    # Encoded on the event loop side so a non-JSON claim fails before any I/O.
    return (
        f.family_id,
        f.subject,
        f.client_id,
        _json(list(f.audience)),
        _json(list(f.scopes)),
        _json(f.claims),
        f.access_ttl,
        f.created_at,
        f.expires_at,
        f.revoked_at,
    )


def _json(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), sort_keys=True, allow_nan=False)


# -- revocations (worker thread) -------------------------------------------------------


def _insert_revocations(
    conn: sqlite3.Connection, items: Sequence[NewRevocation], created_at: float
) -> list[Revocation]:
    """Insert ``items`` and the revocations of what was exchanged from them (the caller
    holds the write transaction: SQLite's one writer serialises it with
    _record_exchange_sync)."""
    out: list[Revocation] = []
    for item in _cascade(conn, items, created_at):
        cur = conn.execute(
            "INSERT INTO revocations (kind, value, not_before, expires_at, reason, created_at)"
            " VALUES (?, ?, ?, ?, ?, ?)",
            (item.kind, item.value, item.not_before, item.expires_at, item.reason, created_at),
        )
        assert cur.lastrowid is not None
        out.append(
            Revocation(
                seq=cur.lastrowid,
                kind=item.kind,
                value=item.value,
                not_before=item.not_before,
                expires_at=item.expires_at,
                reason=item.reason,
                created_at=created_at,
            )
        )
    return out


def _cascade(conn: sqlite3.Connection, items: Sequence[NewRevocation], now: float
             ) -> list[NewRevocation]:
    cascade = Cascade(items)
    while True:
        jtis, subjects = cascade.pending()
        if not jtis and not subjects:
            return cascade.items
        links = []
        if jtis:
            marks = ",".join("?" * len(jtis))
            links += conn.execute(
                "SELECT child_jti, parent_jti, subject, expires_at FROM exchanges"  # noqa: S608
                f" WHERE parent_jti IN ({marks}) AND expires_at > ?", (*jtis, now)).fetchall()
        if subjects:
            marks = ",".join("?" * len(subjects))
            links += conn.execute(
                "SELECT child_jti, parent_jti, subject, expires_at FROM exchanges"  # noqa: S608
                f" WHERE subject IN ({marks}) AND expires_at > ?", (*subjects, now)).fetchall()
        cascade.found(links)


def _record_exchange_sync(conn: sqlite3.Connection, link: ExchangeLink, now: float) -> bool:
    with _write(conn):  # serialised with every revocation insert by SQLite's one writer
        revoked = conn.execute(
            "SELECT 1 FROM revocations WHERE kind = 'jti' AND value = ? AND expires_at > ?",
            (link.parent_jti, now)).fetchone()
        cutoff = _subject_cutoff(conn, link.subject)
        if revoked is not None or (cutoff is not None and link.parent_iat <= cutoff):
            return False
        conn.execute("INSERT INTO exchanges (child_jti, parent_jti, subject, expires_at)"
                     " VALUES (?, ?, ?, ?)",
                     (link.child_jti, link.parent_jti, link.subject, link.child_expires_at))
        return True


def _add_revocations_sync(
    conn: sqlite3.Connection, items: list[NewRevocation], created_at: float
) -> list[Revocation]:
    with _write(conn):
        return _insert_revocations(conn, items, created_at)


def _revocations_since_sync(
    conn: sqlite3.Connection, seq: int, now: float, limit: int
) -> list[Revocation]:
    rows = conn.execute(_SELECT_SINCE, (seq, now, limit)).fetchall()
    return [_revocation(row) for row in rows]


def _last_seq_sync(conn: sqlite3.Connection) -> int:
    # sqlite_sequence keeps the highest AUTOINCREMENT value even after the rows are purged.
    row = conn.execute("SELECT seq FROM sqlite_sequence WHERE name = 'revocations'").fetchone()
    return int(row[0]) if row else 0


# -- refresh families (worker thread) --------------------------------------------------


def _create_family_sync(
    conn: sqlite3.Connection, family: tuple[Any, ...], first: tuple[Any, ...],
    subject: str, created_at: float, now: float,
) -> None:
    with _write(conn):  # serialised with _revoke_subject_sync by SQLite's one writer
        cutoff = _subject_cutoff(conn, subject)
        if cutoff is not None and created_at <= cutoff:
            family = (*family[:-1], now)  # born revoked: its Issue began before the cutoff
        conn.execute(
            "INSERT INTO refresh_families (family_id, subject, client_id, audience, scopes,"
            " claims, access_ttl, created_at, expires_at, revoked_at)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            family,
        )
        _insert_token(conn, first)


def _insert_token(conn: sqlite3.Connection, params: tuple[Any, ...]) -> None:
    conn.execute(
        "INSERT INTO refresh_tokens (token_hash, family_id, issued_at, expires_at,"
        " access_jti, access_expires_at, spent_at, retry_key, retry_sealed, retry_until)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        params,
    )


def _subject_cutoff(conn: sqlite3.Connection, subject: str) -> float | None:
    """The latest Revoke(subject) cutoff still on record (purged once it expired)."""
    row = conn.execute(_SELECT_SUBJECT_CUTOFF, (subject,)).fetchone()
    return row[0] if row else None


def _select_refresh(
    conn: sqlite3.Connection, token_hash: bytes
) -> tuple[RefreshFamily, RefreshToken] | None:
    row = conn.execute(_SELECT_REFRESH, (token_hash,)).fetchone()
    if row is None:
        return None
    return _family(row[:_N_FAMILY_COLS]), token_from_row(row[_N_FAMILY_COLS:])


def _get_refresh_sync(
    conn: sqlite3.Connection, token_hash: bytes
) -> tuple[RefreshFamily, RefreshToken] | None:
    return _select_refresh(conn, token_hash)


def _rotate_sync(
    conn: sqlite3.Connection,
    old_hash: bytes,
    new: RefreshToken,
    new_params: tuple[Any, ...],
    now: float,
    created_at: float,
    retry_key: bytes | None,
    retry: RefreshRetry | None,
) -> RotateResult:
    with _write(conn):
        found = _select_refresh(conn, old_hash)
        if found is None:
            return RotateResult(RotateStatus.NOT_FOUND, None)
        family, old = found
        cutoff = _subject_cutoff(conn, family.subject)
        status = rotation_status(family, old, new, now, subject_cutoff=cutoff,
                                 retry_key=retry_key)
        if status is RotateStatus.REUSED:
            revoked = _revoke_family_tx(conn, family, REUSE_REASON, now, created_at, now)
            return RotateResult(status, replace(family, revoked_at=now), tuple(revoked))
        if status is RotateStatus.REVOKED and family.revoked_at is None:
            # Cut off by Revoke(subject) (a family its transaction could not see): revoked
            # with what it issued, so it stays dead after the subject entry expires.
            revoked = _revoke_family_tx(conn, family, SUBJECT_CUTOFF_REASON, now, created_at,
                                        now)
            return RotateResult(status, replace(family, revoked_at=now), tuple(revoked))
        if status is RotateStatus.RETRY:
            return RotateResult(status, family, retry=old.retry)
        if status is not RotateStatus.OK:
            return RotateResult(status, family)
        conn.execute(
            "UPDATE refresh_tokens SET spent_at = ?, retry_key = ?, retry_sealed = ?,"
            " retry_until = ? WHERE token_hash = ?", (now, *retry_params(retry), old_hash))
        _insert_token(conn, new_params)
        return RotateResult(RotateStatus.OK, family)


def _revoke_family_tx(
    conn: sqlite3.Connection,
    family: RefreshFamily,
    reason: str,
    now: float,
    created_at: float,
    covered_until: float,
) -> list[Revocation]:
    """Mark the family revoked; deny its access tokens still valid after ``covered_until``.

    Caller holds the write transaction. ``covered_until`` is ``now`` for a plain family
    revocation, and the subject entry's expiry when a subject revocation already covers
    the family's access tokens until then.
    """
    conn.execute(
        "UPDATE refresh_families SET revoked_at = ? WHERE family_id = ?", (now, family.family_id)
    )
    live = conn.execute(
        "SELECT access_jti, access_expires_at FROM refresh_tokens"
        " WHERE family_id = ? AND access_expires_at > ? ORDER BY issued_at",
        (family.family_id, covered_until),
    ).fetchall()
    (last_access,) = conn.execute(
        "SELECT MAX(access_expires_at) FROM refresh_tokens WHERE family_id = ?",
        (family.family_id,),
    ).fetchone()
    items = [NewRevocation("jti", jti, expires_at, reason) for jti, expires_at in live]
    # The family entry lives as long as anything the family issued could still be used.
    family_expiry = max(family.expires_at, last_access or 0.0)
    items.append(NewRevocation("family", family.family_id, family_expiry, reason))
    return _insert_revocations(conn, items, created_at)


def _revoke_family_sync(
    conn: sqlite3.Connection, family_id: str, reason: str, now: float, created_at: float
) -> list[Revocation]:
    with _write(conn):
        row = conn.execute(_SELECT_FAMILY, (family_id,)).fetchone()
        if row is None:
            return []  # unknown family: nothing to do, and not an error (RFC 7009, 2.2)
        family = _family(row)
        if family.revoked_at is not None:
            return []
        return _revoke_family_tx(conn, family, reason, now, created_at, now)


def _revoke_subject_sync(
    conn: sqlite3.Connection,
    subject: str,
    reason: str,
    now: float,
    expires_at: float,
    created_at: float,
) -> list[Revocation]:
    with _write(conn):  # serialised with _create_family_sync by SQLite's one writer
        entry = NewRevocation("subject", subject, expires_at, reason, not_before=now)
        out = _insert_revocations(conn, [entry], created_at)
        rows = conn.execute(_SELECT_LIVE_FAMILIES_OF_SUBJECT, (subject, now)).fetchall()
        for row in rows:
            out += _revoke_family_tx(conn, _family(row), reason, now, created_at, expires_at)
        return out


def _purge_sync(conn: sqlite3.Connection, now: float) -> int:
    with _write(conn):
        removed = conn.execute("DELETE FROM revocations WHERE expires_at <= ?", (now,)).rowcount
        # A token row is kept while its access token is alive (revoke_family needs the jti)
        # and while it can still be presented: spent rows are what reuse detection matches.
        removed += conn.execute(
            "DELETE FROM refresh_tokens WHERE access_expires_at <= ?1 AND (expires_at <= ?1"
            " OR family_id IN (SELECT family_id FROM refresh_families WHERE expires_at <= ?1))",
            (now,),
        ).rowcount
        # A sealed answer is of no use after its retry window: do not keep it.
        conn.execute(
            "UPDATE refresh_tokens SET retry_key = NULL, retry_sealed = NULL,"
            " retry_until = NULL WHERE retry_until <= ?", (now,))
        removed += conn.execute(
            "DELETE FROM exchanges WHERE expires_at <= ?", (now,)).rowcount
        removed += conn.execute(
            "DELETE FROM refresh_families WHERE expires_at <= ? AND NOT EXISTS"
            " (SELECT 1 FROM refresh_tokens t WHERE t.family_id = refresh_families.family_id)",
            (now,),
        ).rowcount
        return removed


SqliteStore._ops = StoreOps(
    add_revocations=_add_revocations_sync,
    revocations_since=_revocations_since_sync,
    last_seq=_last_seq_sync,
    create_family=_create_family_sync,
    get_refresh=_get_refresh_sync,
    rotate=_rotate_sync,
    revoke_family=_revoke_family_sync,
    revoke_subject=_revoke_subject_sync,
    purge=_purge_sync,
    record_exchange=_record_exchange_sync,
    family_params=_family_params,
    token_params=token_params,
)
