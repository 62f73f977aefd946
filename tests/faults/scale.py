"""Scale figures for the in-memory denylist, shared by `scripts/measure-revocations`
(1,000,000 live revocations, run by hand) and `tests/faults/test_scale.py` (a small
number in CI).

Fill a store with N live jti revocations (direct batched SQL: this measures reading,
not the Revoke path), then measure what N costs a tokend process: the start-up load
(`DenylistFollower.catch_up`), memory per entry, Verify throughput with and without the
entries, and how long pruning them holds the event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import random
import sqlite3
import time
import tracemalloc
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import psycopg

from tests.clients.python.client_test_support import generate_key, make_token
from tokend.store import Store
from tokend.store.postgres import PostgresStore
from tokend.store.sqlite import SqliteStore
from tokend.tokens.denylist import Denylist, DenylistFollower
from tokend_client import LocalVerifier
from tokend_client.jose import b64url_encode

ISSUER = "https://tokend.test"
AUDIENCE = "orders"
# Entries expire over the next hour, as revocations of one-hour tokens would.
SPREAD = 3600


def jtis(n: int, seed: int = 1) -> list[str]:
    """``n`` distinct jtis shaped like tokend's own (128 random bits, base64url)."""
    rng = random.Random(seed)
    return [b64url_encode(rng.randbytes(16)) for _ in range(n)]


def _rows(values: list[str], now: float) -> list[tuple[str, str, float, float, str, float]]:
    return [
        ("jti", jti, 0.0, now + 60 + i % SPREAD + 0.25, "scale", now)
        for i, jti in enumerate(values)
    ]


async def fill_sqlite(path: Path, values: list[str], now: float) -> SqliteStore:
    """A SQLite store holding one live revocation per value; returned open."""
    store = SqliteStore(path)
    await store.open()  # creates the schema
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        conn.execute("BEGIN IMMEDIATE")
        conn.executemany(
            "INSERT INTO revocations (kind, value, not_before, expires_at, reason, created_at)"
            " VALUES (?, ?, ?, ?, ?, ?)",
            _rows(values, now),
        )
        conn.execute("COMMIT")
    finally:
        conn.close()
    return store


async def fill_postgres(url: str, values: list[str], now: float) -> PostgresStore:
    """A PostgreSQL store holding one live revocation per value (COPY); returned open."""
    store = PostgresStore(url)
    await store.open()  # migrates
    async with await psycopg.AsyncConnection.connect(url) as conn:
        async with conn.cursor() as cur, cur.copy(
            "COPY revocations (kind, value, not_before, expires_at, reason, created_at)"
            " FROM STDIN"
        ) as copy:
            for row in _rows(values, now):
                await copy.write_row(row)
        await conn.commit()
    return store


@dataclass(frozen=True)
class LoadFigures:
    entries: int
    seconds: float  # DenylistFollower.catch_up into an empty denylist (best of two)
    cpu_seconds: float  # this process's CPU time for it (robust on a busy machine)
    bytes_per_entry: float  # retained by the denylist (tracemalloc)
    rss_bytes_per_entry: float  # resident set growth over the load (rough: includes
    # freed memory the allocator kept)


async def measure_load(store: Store, expected: int) -> tuple[LoadFigures, Denylist]:
    """Time a catch-up into an empty denylist (twice, the faster counts; RSS growth from
    the first), then repeat it under tracemalloc for the memory figure."""
    gc.collect()
    rss_before = _rss()
    denylist, seconds, cpu = await _timed_load(store, expected)
    rss_after = _rss()
    _, again, cpu_again = await _timed_load(store, expected)
    if again < seconds:
        seconds, cpu = again, cpu_again
    traced = Denylist()
    gc.collect()
    tracemalloc.start()
    try:
        base = tracemalloc.get_traced_memory()[0]
        await DenylistFollower(store, traced).catch_up()
        gc.collect()
        retained = tracemalloc.get_traced_memory()[0] - base
    finally:
        tracemalloc.stop()
    del traced
    figures = LoadFigures(expected, seconds, cpu, retained / expected,
                          (rss_after - rss_before) / expected)
    return figures, denylist


async def _timed_load(store: Store, expected: int) -> tuple[Denylist, float, float]:
    """A full catch-up into a new denylist: (it, wall seconds, CPU seconds)."""
    denylist = Denylist()
    start, cpu = time.perf_counter(), time.process_time()
    applied = await DenylistFollower(store, denylist).catch_up()
    seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
    if applied != expected or len(denylist) != expected:
        raise AssertionError(f"loaded {applied} rows, {len(denylist)} entries, not {expected}")
    return denylist, seconds, cpu


def _rss() -> int:
    """Resident set size of this process in bytes (Linux)."""
    pages = int(Path("/proc/self/statm").read_text().split()[1])
    return pages * 4096


class VerifyBench:
    """LocalVerifier plus a denylist lookup: what the server does per Verify."""

    def __init__(self, count: int = 200) -> None:
        key = generate_key("ES256", kid="scale-1")
        self.verifier = LocalVerifier(key.jwks(), issuer=ISSUER, max_lifetime=3600)
        now = int(time.time())
        self.tokens = [
            make_token(key, {"iss": ISSUER, "sub": f"user-{i}", "aud": AUDIENCE,
                             "iat": now, "nbf": now, "exp": now + 900,
                             "jti": b64url_encode(random.randbytes(16))})
            for i in range(count)
        ]

    def rate(self, denylist: Denylist, seconds: float) -> float:
        """Verify calls per second over about ``seconds`` (every token is valid)."""
        verify, is_revoked = self.verifier.verify, denylist.is_revoked
        done = 0
        deadline = time.perf_counter() + seconds
        start = time.perf_counter()
        while time.perf_counter() < deadline:
            for token in self.tokens:
                claims = verify(token, audience=AUDIENCE)
                if is_revoked(claims["jti"], claims["sub"], claims["iat"], time.time()):
                    raise AssertionError("a fresh token was found revoked")
            done += len(self.tokens)
        return done / (time.perf_counter() - start)


def lookup_ns(denylist: Denylist, probes: list[str], rounds: int = 5) -> float:
    """Nanoseconds per `Denylist.is_revoked` (best of ``rounds``)."""
    now = time.time()
    best = float("inf")
    for _ in range(rounds):
        start = time.perf_counter_ns()
        for jti in probes:
            denylist.is_revoked(jti, "someone", now - 10, now)
        best = min(best, (time.perf_counter_ns() - start) / len(probes))
    return best


@dataclass(frozen=True)
class PruneFigures:
    seconds: float  # the whole prune
    # Gaps between two turns of another task on the event loop, in wall time (on a busy
    # machine they include waiting for a core).
    median_stall: float
    longest_stall: float
    turns: int  # how often the other task got the loop while pruning ran


async def measure_prune(prune: Callable[[float], object], now: float) -> PruneFigures:
    """Run ``prune(now)`` (a coroutine function or a plain one) on the event loop while a
    ticker task measures how long the loop is held at a time."""
    stalls: list[float] = []
    stop = asyncio.Event()

    async def ticker() -> None:
        last = time.perf_counter()
        while not stop.is_set():
            await asyncio.sleep(0)
            tick = time.perf_counter()
            stalls.append(tick - last)
            last = tick

    task = asyncio.create_task(ticker())
    await asyncio.sleep(0)
    start = time.perf_counter()
    result = prune(now)
    if asyncio.iscoroutine(result):
        await result
    total = time.perf_counter() - start
    stop.set()
    await task
    stalls.sort()
    median = stalls[len(stalls) // 2] if stalls else total
    return PruneFigures(total, median, max(stalls, default=total), len(stalls))


# -- the report (scripts/measure-revocations) --------------------------------------------


async def measure_backend(backend: str, entries: int, directory: Path) -> dict[str, float]:
    """Every figure for one backend, in one fresh process (RSS growth is per process)."""
    with contextlib.ExitStack() as stack:
        url = ""
        if backend == "postgres":  # a throwaway cluster, gone afterwards
            from tests.support.postgres import PostgresCluster

            url = stack.enter_context(PostgresCluster()).url
        return await _measure(backend, entries, directory, url)


async def _measure(backend: str, entries: int, directory: Path, url: str) -> dict[str, float]:
    values = jtis(entries)
    now = time.time()
    start = time.perf_counter()
    if backend == "sqlite":
        store: Store = await fill_sqlite(directory / "scale.db", values, now)
    else:
        store = await fill_postgres(url, values, now)
    fill = time.perf_counter() - start
    # Only a sample stays: a million-item list would slow every full garbage collection
    # during the load, which a real tokend process does not carry.
    present = values[:10_000]
    del values
    try:
        figures, denylist = await measure_load(store, entries)
    finally:
        await store.close()
    absent = jtis(10_000, seed=2)
    empty = Denylist()
    bench = VerifyBench()
    rates: dict[str, list[float]] = {"empty": [], "full": []}
    for _ in range(5):  # interleaved, best of five: machines are shared and noisy
        rates["empty"].append(bench.rate(empty, 1.0))
        rates["full"].append(bench.rate(denylist, 1.0))
    pruned = await measure_prune(DenylistFollower(store, denylist).prune, now + 2 * SPREAD)
    return {
        "entries": entries, "fill_s": fill, "load_s": figures.seconds,
        "load_cpu_s": figures.cpu_seconds,
        "bytes_per_entry": figures.bytes_per_entry,
        "rss_bytes_per_entry": figures.rss_bytes_per_entry,
        "lookup_ns_empty": lookup_ns(empty, absent),
        "lookup_ns_absent": lookup_ns(denylist, absent),
        "lookup_ns_present": lookup_ns(denylist, present),
        "verify_per_s_empty": max(rates["empty"]), "verify_per_s_full": max(rates["full"]),
        "verify_ratio": max(rates["full"]) / max(rates["empty"]),
        "prune_all_s": pruned.seconds, "prune_median_ms": pruned.median_stall * 1000,
        "prune_stall_ms": pruned.longest_stall * 1000,
    }


_ROWS = (
    ("fill the store (batched SQL / COPY)", "fill_s", "{:.1f} s"),
    ("start-up load (catch_up), goal < 5 s", "load_s", "{:.2f} s"),
    ("  of which CPU time in tokend", "load_cpu_s", "{:.2f} s"),
    ("memory per entry, tracemalloc (goal < 150 B)", "bytes_per_entry", "{:.0f} B"),
    ("memory per entry, RSS growth", "rss_bytes_per_entry", "{:.0f} B"),
    ("is_revoked, empty denylist", "lookup_ns_empty", "{:.0f} ns"),
    ("is_revoked, full, jti absent", "lookup_ns_absent", "{:.0f} ns"),
    ("is_revoked, full, jti present", "lookup_ns_present", "{:.0f} ns"),
    ("Verify (LocalVerifier + denylist), empty", "verify_per_s_empty", "{:,.0f} /s"),
    ("Verify (LocalVerifier + denylist), full", "verify_per_s_full", "{:,.0f} /s"),
    ("Verify rate full / empty", "verify_ratio", "{:.2f}"),
    ("prune every entry (sliced), total", "prune_all_s", "{:.2f} s"),
    ("prune: event-loop stall, median", "prune_median_ms", "{:.1f} ms"),
    ("prune: event-loop stall, longest", "prune_stall_ms", "{:.1f} ms"),
)


def report(results: dict[str, dict[str, float]]) -> str:
    """A plain-text table, one column per backend."""
    names = list(results)
    width = max(len(label) for label, _, _ in _ROWS) + 2
    lines = [" " * width + "".join(f"{name:>16}" for name in names)]
    for label, key, fmt in _ROWS:
        cells = "".join(f"{fmt.format(results[name][key]):>16}" for name in names)
        lines.append(f"{label:<{width}}{cells}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """``--backend X --json``: one backend, JSON out (a child); else every backend, each
    in a child process, then the table."""
    import argparse
    import json
    import subprocess
    import sys
    import tempfile

    parser = argparse.ArgumentParser(description="denylist figures with N live revocations")
    parser.add_argument("--entries", type=int, default=1_000_000)
    parser.add_argument("--backend", action="append", choices=["sqlite", "postgres"])
    parser.add_argument("--json", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    backends = args.backend or ["sqlite", "postgres"]
    if args.json:
        with tempfile.TemporaryDirectory(prefix="tokend-scale-") as directory:
            figures = asyncio.run(measure_backend(backends[0], args.entries, Path(directory)))
        print(json.dumps(figures))
        return 0
    results = {}
    for backend in backends:
        print(f"measuring {backend} with {args.entries:,} live revocations…", file=sys.stderr)
        child = subprocess.run(
            [sys.executable, "-m", "tests.faults.scale", "--json", "--backend", backend,
             "--entries", str(args.entries)],
            check=True, stdout=subprocess.PIPE, text=True,
        )
        results[backend] = json.loads(child.stdout.strip().splitlines()[-1])
    print(report(results))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
