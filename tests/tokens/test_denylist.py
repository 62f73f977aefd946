"""Denylist (what Verify consults) and the follower that feeds it from the store."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from tokend.store import NewRevocation, Revocation, StoreError
from tokend.store.sqlite import SqliteStore
from tokend.tokens.denylist import Denylist, DenylistFollower

NOW = 1_700_000_000.0


def rev(
    seq: int,
    kind: str,
    value: str,
    expires_at: float = NOW + 100,
    not_before: float = 0.0,
) -> Revocation:
    return Revocation(seq, kind, value, not_before, expires_at, "test", NOW)  # type: ignore[arg-type]


# -- Denylist ---------------------------------------------------------------------------


def test_jti_revoked_while_live() -> None:
    d = Denylist()
    d.apply([rev(1, "jti", "j1", expires_at=NOW + 10)])
    assert d.is_revoked("j1", "alice", NOW - 50, NOW)
    assert not d.is_revoked("j2", "alice", NOW - 50, NOW)
    assert not d.is_revoked("j1", "alice", NOW - 50, NOW + 10)  # expired with its token


def test_subject_not_before_boundary() -> None:
    d = Denylist()
    d.apply([rev(1, "subject", "alice", expires_at=NOW + 100, not_before=NOW)])
    assert d.is_revoked("any", "alice", NOW - 30, NOW + 1)
    assert d.is_revoked("any", "alice", NOW, NOW + 1)  # iat == not_before: revoked
    assert not d.is_revoked("any", "alice", NOW + 1, NOW + 1)  # minted after
    assert not d.is_revoked("any", "bob", NOW - 30, NOW + 1)
    assert not d.is_revoked("any", "alice", NOW - 30, NOW + 100)  # entry expired


def test_jti_of_another_subject_is_not_a_subject_match() -> None:
    d = Denylist()
    d.apply([rev(1, "jti", "alice")])  # a jti that happens to equal a subject
    assert not d.is_revoked("j1", "alice", NOW, NOW)


def test_family_rows_only_advance_seq() -> None:
    d = Denylist()
    d.apply([rev(7, "family", "fam-1")])
    assert len(d) == 0
    assert d.seq == 7
    assert not d.is_revoked("fam-1", "fam-1", NOW, NOW)


def test_apply_is_idempotent_and_tracks_highest_seq() -> None:
    d = Denylist()
    rows = [rev(3, "jti", "j3"), rev(1, "jti", "j1"), rev(2, "subject", "s", not_before=NOW)]
    d.apply(rows)
    assert (len(d), d.seq) == (3, 3)
    d.apply(rows)
    d.apply(reversed(rows))
    assert (len(d), d.seq) == (3, 3)
    d.apply([rev(2, "jti", "j1")])  # an old row never lowers seq
    assert d.seq == 3


def test_longest_expiry_wins() -> None:
    d = Denylist()
    d.apply([rev(1, "jti", "j", expires_at=NOW + 50), rev(2, "jti", "j", expires_at=NOW + 10)])
    assert d.is_revoked("j", "s", NOW, NOW + 20)


def test_subject_entries_merge() -> None:
    d = Denylist()
    d.apply([rev(1, "subject", "s", expires_at=NOW + 100, not_before=NOW)])
    d.apply([rev(2, "subject", "s", expires_at=NOW + 200, not_before=NOW + 50)])
    assert len(d) == 1
    assert d.is_revoked("x", "s", NOW + 50, NOW + 150)
    assert not d.is_revoked("x", "s", NOW + 51, NOW + 150)
    d.apply([rev(1, "subject", "s", expires_at=NOW + 100, not_before=NOW)])  # replay
    assert d.is_revoked("x", "s", NOW + 50, NOW + 150)


def test_prune() -> None:
    d = Denylist()
    d.apply(
        [
            rev(1, "jti", "old", expires_at=NOW),
            rev(2, "jti", "new", expires_at=NOW + 10),
            rev(3, "subject", "s-old", expires_at=NOW - 1, not_before=NOW - 100),
            rev(4, "subject", "s-new", expires_at=NOW + 1, not_before=NOW - 100),
        ]
    )
    assert d.prune(NOW) == 2
    assert len(d) == 2
    assert d.is_revoked("new", "x", NOW, NOW)
    assert d.is_revoked("y", "s-new", NOW - 200, NOW)
    assert d.seq == 4  # pruning forgets entries, not the feed position
    assert d.prune(NOW + 10) == 2
    assert len(d) == 0


# -- DenylistFollower -------------------------------------------------------------------


@pytest.fixture
async def stores(tmp_path: Path) -> AsyncIterator[tuple[SqliteStore, SqliteStore]]:
    path = tmp_path / "tokend.db"
    a, b = SqliteStore(path), SqliteStore(path)
    await a.open()
    await b.open()
    yield a, b
    await a.close()
    await b.close()


async def wait_until(predicate: Callable[[], bool], timeout: float = 1.5) -> float:
    """Poll ``predicate()`` until true; returns the seconds it took."""
    start = time.monotonic()
    while not predicate():
        if time.monotonic() - start > timeout:
            raise AssertionError(f"condition not met within {timeout} s")
        await asyncio.sleep(0.01)
    return time.monotonic() - start


def live(value: str, kind: str = "jti") -> NewRevocation:
    return NewRevocation(kind, value, time.time() + 3600, "test")  # type: ignore[arg-type]


async def test_catch_up_pages_through_everything(
    stores: tuple[SqliteStore, SqliteStore],
) -> None:
    store, _ = stores
    await store.add_revocations([live(f"j{i}") for i in range(23)])
    await store.add_revocations([NewRevocation("jti", "dead", time.time() - 1, "test")])
    d = Denylist()
    follower = DenylistFollower(store, d, page_size=5)
    assert await follower.catch_up() == 23
    assert len(d) == 23
    assert d.seq == 23
    assert await follower.catch_up() == 0


async def test_follower_sees_another_instance_within_a_second(
    stores: tuple[SqliteStore, SqliteStore],
) -> None:
    follower_store, writer = stores
    d = Denylist()
    follower = DenylistFollower(follower_store, d, interval=0.1)
    await follower.catch_up()
    task = asyncio.create_task(follower.run())
    try:
        await writer.add_revocations([live("j-remote")])
        await writer.revoke_subject("mallory", "test", time.time(), time.time() + 3600)
        waited = await wait_until(
            lambda: (
                d.is_revoked("j-remote", "x", 0, time.time())
                and d.is_revoked("other", "mallory", time.time() - 1, time.time())
            ),
            timeout=1.0,
        )
        assert waited < 1.0
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task


class FlakyStore:
    """Delegates to a real store but fails the first ``failures`` feed reads."""

    def __init__(self, inner: SqliteStore, failures: int) -> None:
        self.inner = inner
        self.failures = failures
        self.calls = 0

    async def revocations_since(
        self, seq: int, now: float, limit: int = 10_000
    ) -> list[Revocation]:
        self.calls += 1
        if self.calls <= self.failures:
            raise StoreError("database is locked")
        return await self.inner.revocations_since(seq, now, limit)


async def test_follower_survives_store_errors(
    stores: tuple[SqliteStore, SqliteStore],
) -> None:
    store, _ = stores
    await store.add_revocations([live("j1")])
    flaky = FlakyStore(store, failures=3)
    d = Denylist()
    follower = DenylistFollower(flaky, d, interval=0.01, max_backoff=0.05)  # type: ignore[arg-type]
    task = asyncio.create_task(follower.run())
    try:
        await wait_until(lambda: d.is_revoked("j1", "x", 0, time.time()), timeout=2.0)
        assert flaky.calls > 3
        assert not task.done()
        await store.add_revocations([live("j2")])
        await wait_until(lambda: d.is_revoked("j2", "x", 0, time.time()), timeout=1.0)
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task


async def test_follower_prunes(stores: tuple[SqliteStore, SqliteStore]) -> None:
    store, _ = stores
    clock = [time.time()]
    await store.add_revocations([NewRevocation("jti", "short", clock[0] + 5, "test")])
    d = Denylist()
    follower = DenylistFollower(store, d, interval=0.01, prune_interval=1.0, clock=lambda: clock[0])
    await follower.catch_up()
    assert len(d) == 1
    task = asyncio.create_task(follower.run())
    try:
        await asyncio.sleep(0.05)  # let run() schedule its first prune
        clock[0] += 10
        await wait_until(lambda: len(d) == 0)
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task


def test_follower_rejects_bad_settings() -> None:
    with pytest.raises(ValueError):
        DenylistFollower(object(), Denylist(), interval=0)  # type: ignore[arg-type]
