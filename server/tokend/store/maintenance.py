"""Deletes what has expired: revocations past their tokens' lifetime, spent and expired
refresh tokens, dead families. Every replica may run it; the deletes are idempotent."""

from __future__ import annotations

import asyncio
import time

import structlog

from tokend.store.base import Store, StoreError

log = structlog.get_logger("tokend.store")


async def purge_forever(store: Store, interval: float) -> None:
    """Runs until cancelled; a failed purge is retried at the next interval."""
    while True:
        await asyncio.sleep(interval)
        try:
            removed = await store.purge(time.time())
        except StoreError as exc:
            log.warning("store.purge_failed", error=str(exc))
            continue
        if removed:
            log.info("store.purged", rows=removed)
