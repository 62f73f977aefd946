"""SqliteStore: the conformance suite plus what only SQLite has (files, pragmas, URLs)."""

from __future__ import annotations

import asyncio
import os
import signal
import sqlite3
import stat
import subprocess
import sys
import textwrap
import threading
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

import tokend
from tokend.store import RotateStatus, StoreError, open_store, sqlite_path_from_url
from tokend.store.sqlite import MIGRATIONS, SqliteStore

from .conformance import (
    NOW,
    StoreConformance,
    StoreFactory,
    answers,
    family,
    h,
    jti,
    opening,
    token,
)

SERVER_DIR = str(Path(tokend.__file__).resolve().parents[1])


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "data" / "tokend.db"


@pytest.fixture
async def store_factory(db_path: Path) -> AsyncIterator[StoreFactory]:
    async with opening(lambda: SqliteStore(db_path)) as factory:
        yield factory


class TestSqliteConformance(StoreConformance):
    pass


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


# -- files and pragmas -------------------------------------------------------------------


async def test_wal_and_pragmas(store_factory: StoreFactory, db_path: Path) -> None:
    store = await store_factory()
    assert isinstance(store, SqliteStore)
    with sqlite3.connect(db_path) as other:
        assert other.execute("PRAGMA journal_mode").fetchone() == ("wal",)
    other.close()

    def pragmas(conn: sqlite3.Connection) -> tuple[int, int, int]:
        return tuple(  # type: ignore[return-value]
            conn.execute(f"PRAGMA {name}").fetchone()[0]
            for name in ("synchronous", "foreign_keys", "busy_timeout")
        )

    assert await store._call(pragmas) == (2, 1, 5000)  # 2 = FULL


async def test_blocking_work_runs_on_the_worker_thread(store_factory: StoreFactory) -> None:
    store = await store_factory()
    assert isinstance(store, SqliteStore)
    name = await store._call(lambda _conn: threading.current_thread().name)
    assert name.startswith("tokend-sqlite")
    assert name != threading.current_thread().name


async def test_created_paths_are_private(tmp_path: Path) -> None:
    before = mode(tmp_path)
    path = tmp_path / "a" / "b" / "tokend.db"
    store = SqliteStore(path)
    await store.open()
    try:
        await store.add_revocations([jti("x")])
        assert mode(tmp_path / "a") == 0o700
        assert mode(tmp_path / "a" / "b") == 0o700
        assert mode(path) == 0o600
        assert mode(path.with_name("tokend.db-wal")) == 0o600  # SQLite copies the db's mode
        assert mode(tmp_path) == before  # an existing directory is left alone
    finally:
        await store.close()


async def test_schema_version(store_factory: StoreFactory, db_path: Path) -> None:
    await (await store_factory()).close()
    await store_factory()  # reopening applies nothing twice
    with sqlite3.connect(db_path) as conn:
        versions = [v for (v,) in conn.execute("SELECT version FROM schema_version")]
    conn.close()
    assert versions == list(range(1, len(MIGRATIONS) + 1))


async def test_refuses_a_newer_schema(db_path: Path) -> None:
    store = SqliteStore(db_path)
    await store.open()
    await store.close()
    with sqlite3.connect(db_path) as conn:
        conn.execute("INSERT INTO schema_version VALUES (?, 0)", (len(MIGRATIONS) + 1,))
    conn.close()
    newer = SqliteStore(db_path)
    with pytest.raises(StoreError, match="newer"):
        await newer.open()
    assert await answers(newer) is False


async def test_closed_store_raises_store_error(store_factory: StoreFactory) -> None:
    store = await store_factory()
    await store.close()
    await store.close()  # idempotent
    with pytest.raises(StoreError, match="not open"):
        await store.add_revocations([jti("x")])


@pytest.mark.parametrize("path", ["", ":memory:", "file::memory:?cache=shared"])
def test_refuses_in_memory(path: str) -> None:
    with pytest.raises(ValueError):
        SqliteStore(path)


# -- several instances and processes ---------------------------------------------------


async def test_two_instances_share_the_feed(store_factory: StoreFactory) -> None:
    writer, reader = await store_factory(), await store_factory()
    rows = await writer.add_revocations([jti("a"), jti("b")])
    assert await reader.revocations_since(0, NOW) == rows
    more = await reader.add_revocations([jti("c")])
    assert await writer.revocations_since(rows[-1].seq, NOW) == more


def _script(body: str) -> list[str]:
    code = "import asyncio, sys\nfrom tokend.store.sqlite import SqliteStore\n"
    return [sys.executable, "-c", code + textwrap.dedent(body)]


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": SERVER_DIR}


async def test_revocation_survives_a_killed_process(db_path: Path) -> None:
    # The child reports only after add_revocations returned, then is SIGKILLed without
    # closing anything: the committed row must be there for the next process.
    body = f"""
        from tokend.store import NewRevocation
        async def main():
            store = SqliteStore({str(db_path)!r})
            await store.open()
            rows = await store.add_revocations([NewRevocation("jti", "j1", {NOW + 3600}, "r")])
            print(rows[0].seq, flush=True)
            await asyncio.sleep(60)
        asyncio.run(main())
    """
    proc = subprocess.Popen(_script(body), stdout=subprocess.PIPE, env=_env(), text=True)
    try:
        assert proc.stdout is not None
        line = await asyncio.wait_for(asyncio.to_thread(proc.stdout.readline), 20)
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
    store = SqliteStore(db_path)
    await store.open()
    try:
        rows = await store.revocations_since(0, NOW)
        assert [(r.seq, r.value) for r in rows] == [(int(line), "j1")]
    finally:
        await store.close()


async def test_processes_opening_a_new_database_at_once_all_open_it(tmp_path: Path) -> None:
    # `tokend serve --workers N` on a fresh SQLite file: every worker switches it to WAL
    # at once. SQLite answers one "database is locked" without waiting on busy_timeout
    # (before the fix, most rounds here failed that way).
    rounds = 30
    body = f"""
        async def main():
            for index in range({rounds}):
                store = SqliteStore({str(tmp_path)!r} + f"/new-{{index}}.db")
                sys.stdin.readline()  # open together
                try:
                    await store.open()
                    await store.close()
                    print("opened", flush=True)
                except Exception as exc:
                    print(type(exc).__name__, exc, flush=True)
        asyncio.run(main())
    """
    procs = [subprocess.Popen(_script(body), stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                              env=_env(), text=True) for _ in range(2)]
    try:
        answers: list[str] = []
        for _ in range(rounds):
            for proc in procs:
                assert proc.stdin is not None
                proc.stdin.write("go\n")
                proc.stdin.flush()
            for proc in procs:
                assert proc.stdout is not None
                answers.append(await asyncio.wait_for(
                    asyncio.to_thread(proc.stdout.readline), 20))
    finally:
        for proc in procs:
            proc.kill()
            proc.wait(10)
    assert answers == ["opened\n"] * (2 * rounds), [a for a in answers if a != "opened\n"]


async def test_concurrent_rotation_across_processes(
    store_factory: StoreFactory, db_path: Path
) -> None:
    store = await store_factory()
    await store.create_family(family(), token("t1"))
    body = f"""
        from tokend.store import RefreshToken
        async def main(name):
            store = SqliteStore({str(db_path)!r})
            await store.open()
            print("ready", flush=True)
            sys.stdin.readline()  # start together
            new = RefreshToken(name.encode(), "fam-1", {NOW}, {NOW + 3600}, "j-" + name, {NOW})
            result = await store.rotate_refresh({h("t1")!r}, new, {NOW + 1})
            print(result.status.name, flush=True)
            await store.close()
        asyncio.run(main(sys.argv[1]))
    """
    procs = [
        subprocess.Popen(
            [*_script(body), f"p{i}"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            env=_env(),
            text=True,
        )
        for i in range(4)
    ]
    try:
        for proc in procs:
            assert proc.stdout is not None
            assert await asyncio.to_thread(proc.stdout.readline) == "ready\n"
        for proc in procs:
            assert proc.stdin is not None
            proc.stdin.write("go\n")
            proc.stdin.flush()
        outputs = [(await asyncio.to_thread(p.communicate, None, 20))[0].strip() for p in procs]
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait(10)
    # One winner; the first loser detects reuse and revokes the family, later ones find
    # it revoked.
    assert outputs.count("OK") == 1, outputs
    assert outputs.count("REUSED") == 1, outputs
    assert outputs.count("REVOKED") == 2, outputs
    assert (await store.rotate_refresh(h("t1"), token("z"), NOW + 2)).status is (
        RotateStatus.REVOKED
    )


# -- open_store -------------------------------------------------------------------------


async def test_open_store_relative_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    store = open_store("sqlite:///.tokend-data/tokend.db")
    assert isinstance(store, SqliteStore)
    assert store.path == Path(".tokend-data/tokend.db")
    await store.open()
    try:
        assert await answers(store)
        assert (tmp_path / ".tokend-data" / "tokend.db").is_file()
    finally:
        await store.close()


def test_open_store_absolute_path(tmp_path: Path) -> None:
    store = open_store(f"sqlite:///{tmp_path}/x.db")  # tmp_path starts with "/": 4 slashes
    assert isinstance(store, SqliteStore)
    assert store.path == tmp_path / "x.db"
    assert sqlite_path_from_url("sqlite:////srv/tokend/x.db") == Path("/srv/tokend/x.db")


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("sqlite:///:memory:", "in-memory"),
        ("sqlite:///file::memory:", "in-memory"),
        ("sqlite:///", "names no file"),
        ("sqlite:////", "names no file"),
        ("sqlite:///data/", "names no file"),
        ("sqlite://", "no host"),
        ("sqlite://host/x.db", "no host"),
        ("sqlite:///x.db?mode=memory", "no query"),
    ],
)
def test_open_store_rejects_bad_sqlite_urls(url: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        open_store(url)


@pytest.mark.parametrize("url", ["mysql://root:s3cret@db/x", "tokend.db", ""])
def test_open_store_unknown_scheme(url: str) -> None:
    with pytest.raises(ValueError, match="accepted: sqlite:///") as info:
        open_store(url)
    assert "postgresql://" in str(info.value)
    assert "s3cret" not in str(info.value)
