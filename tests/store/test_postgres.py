"""PostgresStore: the conformance suite plus what only PostgreSQL has.

Migrations, the feed-order contract under concurrent writers, LISTEN/NOTIFY latency
between two replicas, the listener reconnecting, a database outage, and two real tokend
replicas sharing revocations. Every database is a throwaway cluster on loopback
(tests/support/postgres.py); the tests that stop the server get a cluster of their own.
"""

from __future__ import annotations

import asyncio
import random
import sqlite3
import statistics
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import grpc
import psycopg
import pytest
from psycopg.conninfo import make_conninfo

from tests.support.bao import BaoDevServer, free_port
from tests.support.postgres import TEST_USER, PostgresCluster
from tests.support.tokend import RunningTokend, make_settings
from tokend.cli import main as tokend_main
from tokend.store import NewRevocation, Revocation, RotateStatus, StoreError, open_store
from tokend.store.postgres import MIGRATIONS, PostgresStore, _insert_revocations
from tokend.tokens.denylist import Denylist, DenylistFollower
from tokend_client.v1 import tokend_pb2 as pb

from .conformance import NOW, StoreConformance, StoreFactory, answers, family, h, opening, token

# The followers below poll this rarely, so only NOTIFY (or a reconnect) can explain a
# revocation that arrives within a second.
SLOW_POLL = 30.0


@pytest.fixture
async def store_factory(postgres_database: str) -> AsyncIterator[StoreFactory]:
    async with opening(lambda: PostgresStore(postgres_database, max_size=4)) as factory:
        yield factory


class TestPostgresConformance(StoreConformance):
    pass


def live(value: str) -> NewRevocation:
    return NewRevocation("jti", value, time.time() + 3600, "test")


async def wait_until(predicate: Callable[[], bool], timeout: float) -> float:
    """Poll ``predicate()`` every millisecond until true; returns the seconds it took."""
    start = time.monotonic()
    while not predicate():
        if time.monotonic() - start > timeout:
            raise AssertionError(f"condition not met within {timeout} s")
        await asyncio.sleep(0.001)
    return time.monotonic() - start


async def eventually(check: Callable[[], Awaitable[bool]], timeout: float) -> float:
    """Await ``check()`` until true; returns the seconds it took."""
    start = time.monotonic()
    while not await check():
        if time.monotonic() - start > timeout:
            raise AssertionError(f"condition not met within {timeout} s")
        await asyncio.sleep(0.1)
    return time.monotonic() - start


async def fetch_all(url: str, query: str) -> list[tuple[object, ...]]:
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        return await (await conn.execute(query)).fetchall()


class Following:
    """A `DenylistFollower` on ``store`` running as a task, polling only every SLOW_POLL."""

    def __init__(self, store: PostgresStore) -> None:
        self.denylist = Denylist()
        self.follower = DenylistFollower(store, self.denylist, interval=SLOW_POLL)
        self._task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> Following:
        await self.follower.catch_up()
        self._task = asyncio.create_task(self.follower.run())
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._task is not None
        self._task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await self._task

    def has(self, jti: str) -> bool:
        return self.denylist.is_revoked(jti, "nobody", 0, time.time())


# -- migrations ------------------------------------------------------------------------


async def schema_versions(url: str) -> list[int]:
    rows = await fetch_all(url, "SELECT version FROM schema_version ORDER BY version")
    return [int(v) for (v,) in rows]  # type: ignore[call-overload]


async def test_migrations_are_versioned_and_idempotent(
    store_factory: StoreFactory, postgres_database: str
) -> None:
    await (await store_factory()).close()
    await store_factory()  # reopening applies nothing twice
    assert await schema_versions(postgres_database) == list(range(1, len(MIGRATIONS) + 1))


async def test_replicas_starting_together_migrate_once(postgres_database: str) -> None:
    stores = [PostgresStore(postgres_database) for _ in range(4)]
    try:
        await asyncio.gather(*(store.open() for store in stores))
        assert all([await answers(store) for store in stores])
    finally:
        for store in stores:
            await store.close()
    assert await schema_versions(postgres_database) == list(range(1, len(MIGRATIONS) + 1))


@pytest.mark.parametrize("migrate", [True, False])
async def test_refuses_a_newer_schema(postgres_database: str, migrate: bool) -> None:
    store = PostgresStore(postgres_database)
    await store.open()
    await store.close()
    async with await psycopg.AsyncConnection.connect(postgres_database, autocommit=True) as c:
        await c.execute("INSERT INTO schema_version VALUES (%s, 0)", (len(MIGRATIONS) + 1,))
    newer = PostgresStore(postgres_database, migrate=migrate)
    with pytest.raises(StoreError, match="newer than this tokend supports"):
        await newer.open()
    assert await answers(newer) is False


def test_without_migrate_open_needs_tokend_migrate(
    postgres_database: str, capsys: pytest.CaptureFixture[str]
) -> None:
    async def open_and_close() -> None:
        store = PostgresStore(postgres_database, migrate=False)
        await store.open()
        await store.close()

    with pytest.raises(StoreError, match="run `tokend migrate` first"):
        asyncio.run(open_and_close())
    assert tokend_main(["migrate", "--store-url", postgres_database]) == 0
    assert "up to date" in capsys.readouterr().out
    asyncio.run(open_and_close())
    assert tokend_main(["migrate", "--store-url", postgres_database]) == 0  # idempotent


def test_tokend_migrate_sqlite_from_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "tokend.db"
    monkeypatch.setenv("TOKEND_STORE_URL", f"sqlite:///{path}")
    assert tokend_main(["migrate"]) == 0
    with sqlite3.connect(path) as conn:
        assert conn.execute("SELECT MAX(version) FROM schema_version").fetchone() == (
            len(MIGRATIONS),)
    conn.close()


def test_tokend_migrate_failure_hides_the_password(
    postgres_cluster: PostgresCluster, capsys: pytest.CaptureFixture[str]
) -> None:
    # The database is named like the password, so libpq's own message would show it.
    url = f"postgresql://{TEST_USER}:hunter2@127.0.0.1:{postgres_cluster.port}/hunter2"
    assert tokend_main(["migrate", "--store-url", url]) == 1
    err = capsys.readouterr().err
    assert 'database "***" does not exist' in err
    assert "hunter2" not in err


# The runtime grants docs/operations.md gives, for a role that does not own the schema.
RUNTIME_GRANTS = """
GRANT USAGE ON SCHEMA public TO {role};
GRANT SELECT, INSERT, UPDATE, DELETE ON revocations, refresh_families, refresh_tokens,
  exchanges TO {role};
GRANT SELECT ON schema_version TO {role};
GRANT USAGE, SELECT ON SEQUENCE revocation_seq TO {role};
"""


async def test_a_runtime_role_with_the_documented_grants_suffices(
    store_factory: StoreFactory, postgres_database: str
) -> None:
    await (await store_factory()).close()  # migrated by the owner (the test superuser)
    role = "rt_" + postgres_database.rsplit("/", 1)[1]  # roles are cluster-wide
    async with await psycopg.AsyncConnection.connect(postgres_database, autocommit=True) as c:
        await c.execute(f"CREATE ROLE {role} LOGIN")
        for statement in RUNTIME_GRANTS.format(role=role).split(";"):
            if statement.strip():
                await c.execute(statement)
    url = make_conninfo(postgres_database, user=role)
    for migrate in (True, False):  # a current schema needs no CREATE privilege either way
        store = PostgresStore(url, migrate=migrate)
        await store.open()
        try:
            fam, t1, t2 = f"f-{migrate}", f"t1-{migrate}", f"t2-{migrate}"
            await store.create_family(family(fam), token(t1, fam))
            rotated = await store.rotate_refresh(h(t1), token(t2, fam), NOW + 1)
            assert rotated.status is RotateStatus.OK
            assert await store.revoke_subject("alice", "test", NOW + 2, NOW + 3600)
            assert await store.revocations_since(0, NOW)
            assert await store.last_seq() > 0
            await store.purge(NOW + 86400 * 365)
            await store.wait_for_change(0.01)
        finally:
            await store.close()


# -- URLs and secrets ------------------------------------------------------------------


@pytest.mark.parametrize("scheme", ["postgresql", "postgres", "postgresql+psycopg"])
def test_open_store_builds_a_postgres_store(scheme: str) -> None:
    store = open_store(f"{scheme}://tokend:s3cret@db.example/tokend")
    assert isinstance(store, PostgresStore)
    assert "s3cret" not in repr(store)


def test_malformed_url_is_refused_without_echo() -> None:
    with pytest.raises(ValueError, match="malformed") as info:
        PostgresStore("postgresql://tokend:s3cret%zz@db/tokend")
    assert "s3cret" not in str(info.value)
    assert info.value.__cause__ is None and info.value.__suppress_context__


async def test_unreachable_database_fails_promptly_without_the_password() -> None:
    store = PostgresStore(f"postgresql://tokend:s3cret@127.0.0.1:{free_port()}/x", timeout=1)
    start = time.monotonic()
    with pytest.raises(StoreError) as info:
        await store.open()
    assert time.monotonic() - start < 5
    assert "s3cret" not in str(info.value)
    assert "Connection refused" in str(info.value) or "connect" in str(info.value)


# -- the feed-order contract -------------------------------------------------------------


async def test_without_the_feed_lock_a_sequence_commits_out_of_order(
    store_factory: StoreFactory, postgres_database: str
) -> None:
    """Why the store serialises revocation inserts: plain sequences would lose rows."""
    store = await store_factory()
    insert = (
        "INSERT INTO revocations (kind, value, expires_at, created_at)"
        " VALUES ('jti', %s, %s, 0)"
    )
    expiry = time.time() + 3600
    async with await psycopg.AsyncConnection.connect(postgres_database) as early:
        await early.execute(insert, ("early", expiry))  # takes the lower seq, then waits
        async with await psycopg.AsyncConnection.connect(postgres_database) as late:
            await late.execute(insert, ("late", expiry))
            await late.commit()
        (seen,) = await store.revocations_since(0, 0)
        await early.commit()
    assert seen.value == "late"
    assert await store.revocations_since(seen.seq, 0) == []  # "early" is behind the cursor
    assert [r.value for r in await store.revocations_since(0, 0)] == ["early", "late"]


async def test_writers_queue_behind_a_revocation_transaction_in_flight(
    store_factory: StoreFactory, postgres_database: str
) -> None:
    store = await store_factory()
    async with await psycopg.AsyncConnection.connect(postgres_database) as conn:
        # Another replica's transaction: lock and sequence value taken, not yet committed.
        (first,) = await _insert_revocations(conn, [live("first")], time.time())
        second = asyncio.create_task(store.add_revocations([live("second")]))
        last = asyncio.create_task(store.last_seq())
        await asyncio.sleep(0.3)
        assert not second.done() and not last.done()  # both wait for the commit
        assert await store.revocations_since(0, 0) == []
        await conn.commit()
    (row,) = await second
    assert row.seq > first.seq
    assert await last >= first.seq
    assert [r.value for r in await store.revocations_since(0, 0)] == ["first", "second"]


async def test_a_follower_never_skips_under_concurrent_writers(
    store_factory: StoreFactory,
) -> None:
    writers = [await store_factory(), await store_factory()]
    reader = await store_factory()
    written: list[int] = []
    rng = random.Random(7)

    async def write(store: PostgresStore, tag: str) -> None:
        for i in range(15):
            batch = [live(f"{tag}-{i}-{k}") for k in range(rng.randint(1, 3))]
            written.extend(r.seq for r in await store.add_revocations(batch))

    async def follow(done: asyncio.Event) -> list[Revocation]:
        seen: list[Revocation] = []
        while True:
            finished = done.is_set()  # read before the page: a last page after the end
            page = await reader.revocations_since(seen[-1].seq if seen else 0, 0)
            seen += page
            if finished and not page:
                return seen

    done = asyncio.Event()
    follower = asyncio.create_task(follow(done))
    await asyncio.gather(*(write(w, f"w{n}-{t}") for n, w in enumerate(writers) for t in range(3)))
    done.set()
    seen = await follower
    assert [r.seq for r in seen] == sorted(written)  # every row, once, in order


# -- change feed (LISTEN/NOTIFY) ---------------------------------------------------------


async def test_notify_reaches_another_replica_well_under_a_second(
    store_factory: StoreFactory, capsys: pytest.CaptureFixture[str]
) -> None:
    writer, replica = await store_factory(), await store_factory()
    assert isinstance(replica, PostgresStore)
    latencies: list[float] = []
    async with Following(replica) as following:
        await wait_until(lambda: replica.listening, 5)
        for i in range(50):
            start = time.monotonic()
            await writer.add_revocations([live(f"j{i}")])
            await wait_until(lambda i=i: following.has(f"j{i}"), 2)  # type: ignore[misc]
            latencies.append(time.monotonic() - start)
    p50 = statistics.median(latencies)
    p99 = statistics.quantiles(latencies, n=100, method="inclusive")[98]
    with capsys.disabled():
        print(
            f"\n[postgres] revoke on one replica -> denied on another (50 revocations, "
            f"commit included): p50 {p50 * 1000:.1f} ms, p99 {p99 * 1000:.1f} ms, "
            f"max {max(latencies) * 1000:.1f} ms"
        )
    assert p99 < 1.0


async def test_follower_catches_up_after_its_listen_connection_is_killed(
    store_factory: StoreFactory, postgres_database: str
) -> None:
    writer, replica = await store_factory(), await store_factory()
    assert isinstance(replica, PostgresStore)
    async with Following(replica) as following:
        await wait_until(lambda: replica.listening, 5)
        killed = await fetch_all(
            postgres_database,
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
            " WHERE application_name = 'tokend-listener' AND datname = current_database()",
        )
        assert killed == [(True,)]
        await wait_until(lambda: not replica.listening, 5)
        # Committed while nobody listens: its NOTIFY is lost, the row is not.
        await writer.add_revocations([live("while-away")])
        await wait_until(lambda: following.has("while-away"), 5)
        assert replica.listening
        await writer.add_revocations([live("after")])
        await wait_until(lambda: following.has("after"), 1)


async def test_wait_for_change_needs_an_open_store(postgres_database: str) -> None:
    store = PostgresStore(postgres_database)
    with pytest.raises(StoreError, match="not open"):
        await store.wait_for_change(0.01)


# -- outage ----------------------------------------------------------------------------


async def test_database_outage_fails_promptly_and_recovers() -> None:
    with PostgresCluster() as cluster:
        store = PostgresStore(cluster.url, timeout=1.0)
        replica = PostgresStore(cluster.url, timeout=1.0)
        await store.open()
        await replica.open()
        try:
            async with Following(replica) as following:
                await wait_until(lambda: replica.listening, 5)
                await store.add_revocations([live("before-crash")])
                cluster.stop()  # immediate: a crash, as far as PostgreSQL can tell

                for call in (
                    lambda: store.add_revocations([live("lost")]),
                    lambda: store.revocations_since(0, 0),
                    store.last_seq,
                ):
                    start = time.monotonic()
                    with pytest.raises(StoreError):
                        await call()
                    assert time.monotonic() - start < 3.0
                assert await answers(store) is False

                cluster.start()
                recovered = await eventually(lambda: answers(store), 20)
                # Committed before the crash: still there; the failed call left nothing.
                assert [r.value for r in await store.revocations_since(0, 0)] == [
                    "before-crash"
                ]
                await store.add_revocations([live("after-restart")])
                await wait_until(lambda: following.has("after-restart"), 15)
                print(f"store usable again {recovered:.1f} s after the restart")
        finally:
            await store.close()
            await replica.close()


# -- two tokend replicas, end to end ----------------------------------------------------


def denied_on(replica: RunningTokend, token: str, timeout: float) -> float:
    """Seconds until ``replica`` answers REASON_REVOKED for ``token``."""
    start = time.monotonic()
    request = pb.VerifyRequest(token=token, audience="orders")
    while replica.stub.Verify(request, timeout=5).reason != pb.REASON_REVOKED:
        if time.monotonic() - start > timeout:
            raise AssertionError(f"not revoked on the other replica within {timeout} s")
        time.sleep(0.005)
    return time.monotonic() - start


def test_two_tokend_replicas_share_revocations(
    bao: BaoDevServer, postgres_database: str, tmp_path: Path
) -> None:
    def settings(name: str):  # type: ignore[no-untyped-def]
        return make_settings(
            bao.addr, bao.token, tmp_path / name, store_url=postgres_database,
            vault={"key_name": "pg"}, revocation_poll_interval=SLOW_POLL,
        )  # fmt: skip

    with RunningTokend(settings("a")) as a, RunningTokend(settings("b")) as b:
        issued = a.stub.Issue(pb.IssueRequest(subject="alice", audience=["orders"]), timeout=10)
        check = pb.VerifyRequest(token=issued.access_token, audience="orders")
        assert b.stub.Verify(check, timeout=5).valid
        a.stub.Revoke(pb.RevokeRequest(token=issued.access_token, reason="e2e"), timeout=10)
        assert denied_on(b, issued.access_token, 1.0) < 1.0

        # Refresh families are shared too: rotate on b, replay the spent token on a.
        first = a.stub.Issue(
            pb.IssueRequest(subject="bob", audience=["orders"], include_refresh_token=True),
            timeout=10,
        )
        second = b.stub.Refresh(pb.RefreshRequest(refresh_token=first.refresh_token), timeout=10)
        with pytest.raises(grpc.RpcError) as info:
            a.stub.Refresh(pb.RefreshRequest(refresh_token=first.refresh_token), timeout=10)
        assert info.value.code() == grpc.StatusCode.UNAUTHENTICATED
        assert denied_on(b, second.access_token, 1.0) < 1.0
