"""tokend.event_loop: `tokend serve` runs on uvloop by default and on the standard
library's loop when told, in a single process and in every worker."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
import uvloop

from tests.support.bao import BaoDevServer
from tests.test_workers import start_workers, stop
from tokend import event_loop


@pytest.mark.parametrize(("kind", "loop_type"), [("uvloop", uvloop.Loop),
                                                 ("asyncio", asyncio.BaseEventLoop)])
def test_run_uses_the_chosen_loop(kind: event_loop.EventLoop, loop_type: type) -> None:
    async def running_loop() -> asyncio.AbstractEventLoop:
        return asyncio.get_running_loop()

    loop = event_loop.run(running_loop(), kind)
    assert isinstance(loop, loop_type)
    assert kind == "uvloop" or not isinstance(loop, uvloop.Loop)


@pytest.mark.parametrize(("extra", "expected"), [({}, "uvloop"),
                                                 ({"event_loop": "asyncio"}, "asyncio")])
def test_every_worker_runs_on_the_configured_loop(bao: BaoDevServer, tmp_path: Path,
                                                  extra: dict[str, object],
                                                  expected: str) -> None:
    running = start_workers(bao, tmp_path, count=2, extra=extra)
    try:
        loops = [r.get("event_loop") for r in running.records()
                 if r.get("event") == "tokend.started"]
    finally:
        stop(running.process)
    assert loops == [expected, expected]


async def test_the_suites_in_process_servers_run_on_uvloop() -> None:
    # tests/conftest.py: pytest_asyncio_loop_factories; without it, only the tests that
    # start `tokend serve` processes would check tokend on the loop it ships with.
    assert isinstance(asyncio.get_running_loop(), uvloop.Loop)
