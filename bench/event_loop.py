"""`scripts/bench --only event-loop`: what uvloop saves against the standard asyncio loop.

Two `tokend serve` processes run side by side on the same Transit key, one with
`event_loop: asyncio`, one with `event_loop: uvloop` (the default; tokend.event_loop).
The load generator drives health, Verify (cycling over a pool that outruns the
verified-token cache) and Issue on both in rounds that rotate which goes first
(bench.rounds); each figure is the median over the rounds and the ratios are ÷ asyncio:
server CPU per call below 1 is CPU uvloop saves.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench import report, rounds

KEY = "bench-event-loop"
LOOPS = ("asyncio", "uvloop")
PHASES = ("health", "verify", "issue")

Load = Callable[..., dict[str, Any]]


def alternate(load: Load, servers: dict[str, Any], count: int, seconds: float,
              tokens: Path) -> dict[str, Any]:
    """`count` rounds of each phase on both servers, rotating which goes first."""
    options: dict[str, dict[str, Any]] = {
        "health": {"warmup": 0.3}, "issue": {"warmup": 0.3},
        "verify": {"tokens": tokens, "cycle": True, "warmup": 0.3}}
    groups = {phase: {loop: functools.partial(load, servers[loop], phase, seconds,
                                              **options[phase]) for loop in LOOPS}
              for phase in PHASES}
    samples = rounds.alternate(count, groups)
    return {phase: rounds.summary(by_loop, base="asyncio") for phase, by_loop in samples.items()}


def table(results: dict[str, Any]) -> str:
    lines = ["| RPC | event loop | calls/s (min-max) | ÷ asyncio | server CPU µs/call (min-max) "
             "| ÷ asyncio | per round ÷ asyncio (min-max) | p50 / p99 µs | errors |",
             "|---|---|---|---|---|---|---|---|---|"]
    for phase in PHASES:
        for loop in LOOPS:
            row = results[phase][loop]
            spread = row.get("spread", {})
            by_round = row.get("cpu_per_call_ratio_to_asyncio_by_round") or {}
            lines.append(
                f"| {phase.capitalize()} | {loop} | {row['rps']} ({_range(spread.get('rps'))}) "
                f"| {row.get('rps_ratio_to_asyncio', '-')} "
                f"| {row['server_cpu_us_per_call']} "
                f"({_range(spread.get('server_cpu_us_per_call'))}) "
                f"| {row.get('cpu_per_call_ratio_to_asyncio', '-')} "
                f"| {_by_round(by_round)} "
                f"| {row.get('p50_us')} / {row.get('p99_us')} | {row.get('errors', 0)} |")
    return "\n".join(lines)


def _range(values: list[float] | None) -> str:
    return f"{values[0]:g}-{values[1]:g}" if values else "-"


def _by_round(row: dict[str, Any]) -> str:
    return f"{row['median']} ({row['min']}-{row['max']})" if row else "-"


def write(results: dict[str, Any], out: Path) -> dict[str, Path]:
    """results/event-loop-<date>.{json,md}; latest.* left alone."""
    paths = report.dated_results(results, out, "event-loop")
    figures = results["event_loop"]
    pool = figures.get("pool") or {}
    cache_note = ("more than twice the verified-token cache, so every Verify is a miss"
                  if pool.get("outruns_cache") else
                  "fewer than twice the verified-token cache: some Verify calls hit it")
    *lines, machine = report.dated_heading(results, "event-loop", "event loop, asyncio vs uvloop")
    lines += [
        f"{machine}. Two tokend processes "
        "(Transit ES256, 1 worker each, same key): `event_loop: asyncio` and "
        "`event_loop: uvloop` (the default). "
        f"{figures['rounds']} rounds, rotating which loop goes first, of {figures['seconds']} s "
        f"per RPC and loop; medians with the min-max over the rounds. Verify cycles over "
        f"{pool.get('tokens', '?')} issued tokens ({cache_note}). Server CPU per call is read "
        "from /proc; below 1 ÷ asyncio is CPU uvloop saves.", "",
        table(figures), ""]
    paths["md"].write_text("\n".join(lines))
    return paths
