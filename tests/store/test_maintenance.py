"""The purge loop deletes what has expired and survives a failing store."""

from __future__ import annotations

import asyncio
import contextlib
import time
from pathlib import Path

from tokend.store import NewRevocation, StoreError
from tokend.store.maintenance import purge_forever
from tokend.store.sqlite import SqliteStore


async def test_purge_loop_removes_expired_rows(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "t.db")
    await store.open()
    now = time.time()
    await store.add_revocations([NewRevocation("jti", "old", now - 1, "t"),
                                 NewRevocation("jti", "live", now + 3600, "t")])
    task = asyncio.create_task(purge_forever(store, 0.05))
    try:
        for _ in range(100):
            await asyncio.sleep(0.05)
            live = await store.revocations_since(0, now - 10)
            if [r.value for r in live] == ["live"]:
                break
        assert [r.value for r in await store.revocations_since(0, now - 10)] == ["live"]
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await store.close()


async def test_purge_loop_survives_store_errors() -> None:
    calls = []

    class Failing:
        async def purge(self, now: float) -> int:
            calls.append(now)
            raise StoreError("down")

    task = asyncio.create_task(purge_forever(Failing(), 0.01))  # type: ignore[arg-type]
    await asyncio.sleep(0.1)
    assert not task.done() and len(calls) >= 2
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
