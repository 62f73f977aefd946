"""Which asyncio event loop runs a tokend process: uvloop (libuv) by default, the
standard library's as the fallback an operator can choose (`event_loop: asyncio`)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any, Literal, TypeVar

T = TypeVar("T")
EventLoop = Literal["uvloop", "asyncio"]


def loop_factory(kind: EventLoop) -> Callable[[], asyncio.AbstractEventLoop]:
    if kind == "uvloop":
        import uvloop  # a hard dependency; imported here so `asyncio` never needs it

        return uvloop.new_event_loop
    return asyncio.new_event_loop


def run(main: Coroutine[Any, Any, T], kind: EventLoop) -> T:
    """`asyncio.run` on the chosen loop (Python 3.11's `asyncio.run` takes no factory)."""
    with asyncio.Runner(loop_factory=loop_factory(kind)) as runner:
        return runner.run(main)
