"""The denylist at a small scale in CI; `scripts/measure-revocations` runs the same code
with 1,000,000 entries (figures in docs/operations.md, "Failure behaviour")."""

from __future__ import annotations

import time
from pathlib import Path

from tokend.tokens.denylist import PRUNE_SLICE, DenylistFollower

from . import scale

ENTRIES = 50_000
# The figure the 1M run aims at; 50k entries are a little dearer per entry than 1M
# (a dict's fixed share), so holding it here holds it there.
MAX_BYTES_PER_ENTRY = 150
# One prune slice is about 2 ms of work; allow a noisy shared CI machine plenty.
MAX_MEDIAN_STALL = 0.02


async def test_memory_per_entry_and_pruning_at_50k(tmp_path: Path) -> None:
    now = time.time()
    store = await scale.fill_sqlite(tmp_path / "scale.db", scale.jtis(ENTRIES), now)
    try:
        figures, denylist = await scale.measure_load(store, ENTRIES)
        follower = DenylistFollower(store, denylist)
    finally:
        await store.close()
    print(f"\n[denylist, {ENTRIES} entries] load {figures.seconds:.2f} s, "
          f"{figures.bytes_per_entry:.0f} B/entry (tracemalloc), "
          f"{figures.rss_bytes_per_entry:.0f} B/entry (RSS growth)")
    assert figures.bytes_per_entry < MAX_BYTES_PER_ENTRY

    probe = scale.jtis(1, seed=99)[0]
    assert not denylist.is_revoked(probe, "x", 0, now)
    assert denylist.is_revoked(scale.jtis(1)[0], "x", 0, now)

    pruned = await scale.measure_prune(follower.prune, now + 2 * scale.SPREAD)
    print(f"[denylist, {ENTRIES} entries] prune all: {pruned.seconds * 1000:.0f} ms in "
          f"{pruned.turns} slices, event-loop stall median {pruned.median_stall * 1000:.1f} "
          f"ms, longest {pruned.longest_stall * 1000:.1f} ms")
    assert len(denylist) == 0
    # Other tasks got the loop between slices, and a slice is short.
    assert pruned.turns >= ENTRIES // PRUNE_SLICE - 1
    assert pruned.median_stall < MAX_MEDIAN_STALL
