"""app.serve_forever: once started, a `tokend serve` process moves what start-up built
out of the cyclic collector's reach (gc.freeze), so full collections stay short."""

from __future__ import annotations

import time
from pathlib import Path

from tests.support.bao import BaoDevServer
from tests.test_workers import Workers, start_workers, stop


def test_every_process_freezes_its_startup_objects(bao: BaoDevServer, tmp_path: Path) -> None:
    running = start_workers(bao, tmp_path, count=2)
    try:
        deadline = time.monotonic() + 5  # logged just after tokend.started
        while len(frozen := _frozen_counts(running)) < 2 and time.monotonic() < deadline:
            time.sleep(0.1)
    finally:
        stop(running.process)
    assert len(frozen) == 2
    # Modules, protobuf descriptors and the app itself: tens of thousands of objects.
    assert all(count > 10_000 for count in frozen), frozen


def _frozen_counts(running: Workers) -> list[int]:
    return [int(r["objects"]) for r in running.records()  # type: ignore[call-overload]
            if r.get("event") == "gc.frozen"]
