"""Durable state: revocations (a change feed) and refresh-token families.

``open_store(url)`` picks the backend from the configured URL; callers then
``await store.open()`` before use.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from .base import (
    REVOCATION_KINDS,
    ChangeFeed,
    ConflictError,
    ExchangeLink,
    InvalidValue,
    NewRevocation,
    RefreshFamily,
    RefreshRetry,
    RefreshToken,
    Revocation,
    RevocationKind,
    RotateResult,
    RotateStatus,
    Store,
    StoreError,
    wait_for_change,
)

if TYPE_CHECKING:
    from opentelemetry.trace import Tracer

__all__ = [
    "REVOCATION_KINDS",
    "ChangeFeed",
    "ConflictError",
    "ExchangeLink",
    "InvalidValue",
    "NewRevocation",
    "RefreshFamily",
    "RefreshRetry",
    "RefreshToken",
    "Revocation",
    "RevocationKind",
    "RotateResult",
    "RotateStatus",
    "Store",
    "StoreError",
    "open_store",
    "sqlite_path_from_url",
    "wait_for_change",
]

ACCEPTED_SCHEMES = "sqlite:///relative/path.db, sqlite:////absolute/path.db, postgresql://…"
_SQLITE_PREFIX = "sqlite:///"
_POSTGRES_SCHEMES = ("postgresql", "postgres")


def open_store(url: str, *, migrate: bool = True, tracer: Tracer | None = None) -> Store:
    """Build the store named by ``url`` (not yet opened).

    ``migrate``: whether ``open()`` may apply schema migrations to a PostgreSQL database
    (with ``False`` it refuses a schema that is not current; see ``tokend migrate``).
    ``tracer``: a span per store transaction inside traced RPCs (tokend.tracing).
    SQLite always migrates: one node owns its file. Error messages never repeat the URL:
    a PostgreSQL URL may carry a password.
    """
    scheme = url.split(":", 1)[0].lower() if ":" in url else ""
    if scheme == "sqlite":
        from .sqlite import SqliteStore

        return SqliteStore(sqlite_path_from_url(url), tracer=tracer)
    if scheme in _POSTGRES_SCHEMES or scheme.startswith("postgresql+"):
        from .postgres import PostgresStore

        # "postgresql+driver://" (SQLAlchemy style) names a driver libpq does not know.
        return PostgresStore("postgresql" + url[len(scheme) :], migrate=migrate,
                             tracer=tracer)
    shown = f"scheme {scheme!r}" if scheme else "a URL without a scheme"
    raise ValueError(f"unsupported store URL ({shown}); accepted: {ACCEPTED_SCHEMES}")


def sqlite_path_from_url(url: str) -> Path:
    """``sqlite:///rel/x.db`` -> ``rel/x.db`` (from the working directory); four slashes
    -> ``/abs/x.db``. In-memory databases are refused: revocations must survive restarts."""
    if not url.lower().startswith(_SQLITE_PREFIX):
        raise ValueError(
            "a SQLite store URL has no host: use sqlite:///relative/path.db"
            " or sqlite:////absolute/path.db"
        )
    path = url[len(_SQLITE_PREFIX) :]
    if "?" in path or "#" in path:
        raise ValueError("a SQLite store URL takes no query or fragment")
    if not path or path.strip("/") == "" or path.endswith("/"):
        raise ValueError("the SQLite store URL names no file")
    if path == ":memory:" or path.startswith("file:"):
        raise ValueError(
            "an in-memory SQLite store would lose revocations on restart; give a file path"
        )
    return Path(path)
