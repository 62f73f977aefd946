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
        # Logged just after tokend.started (about 0.1 s here); the bound is for a
        # starved CI machine, where one run once took longer than 5 s.
        deadline = time.monotonic() + 30
        while len(_frozen(running)) < 2 and time.monotonic() < deadline:
            time.sleep(0.1)
    finally:
        stop(running.process)
    frozen = _frozen(running)  # read again once the workers have stopped and flushed
    assert len(frozen) == 2, running.log.read_text()[-6000:]
    # Modules, protobuf descriptors and the app itself: tens of thousands of objects.
    assert all(int(r["objects"]) > 10_000 for r in frozen), frozen  # type: ignore[call-overload]
    assert all("seconds" in r for r in frozen), frozen  # how long the collection took


def _frozen(running: Workers) -> list[dict[str, object]]:
    return [r for r in running.records() if r.get("event") == "gc.frozen"]
