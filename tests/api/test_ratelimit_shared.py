"""The workers' shared bucket table (api/ratelimit.py): two limiters on one file, as two
worker processes have, draw from one bucket per caller."""

from __future__ import annotations

from pathlib import Path

from tokend.api import ratelimit
from tokend.api.ratelimit import SharedRateLimiter
from tokend.config import RateLimitConfig

LIMIT = RateLimitConfig(per_second=2.0, burst=3)


def limiters(tmp_path: Path) -> tuple[SharedRateLimiter, SharedRateLimiter]:
    table = tmp_path / "ratelimit"
    SharedRateLimiter.create(table)
    return SharedRateLimiter(LIMIT, table), SharedRateLimiter(LIMIT, table)


def test_two_limiters_share_one_bucket_per_caller(tmp_path: Path) -> None:
    one, other = limiters(tmp_path)
    granted = [limiter.allow("svc-a", now=100.0) for limiter in (one, other, one, other)]
    assert granted == [True, True, True, False]
    assert other.allow("svc-b", now=100.0), "another caller has its own bucket"
    # Refill at per_second, seen by both: half a second gives back one token.
    assert one.allow("svc-a", now=100.5) and not other.allow("svc-a", now=100.5)


def test_a_full_table_evicts_the_least_recently_used(tmp_path: Path) -> None:
    one, _ = limiters(tmp_path)
    # Far more callers than slots in the table: every call still gets an answer, and the
    # most recent callers keep their (spent) buckets.
    callers = [f"caller-{i}" for i in range(ratelimit.SHARED_SLOTS * 2)]
    for index, caller in enumerate(callers):
        assert one.allow(caller, RateLimitConfig(per_second=0.001, burst=1), now=float(index))
    assert not one.allow(callers[-1], RateLimitConfig(per_second=0.001, burst=1),
                         now=float(len(callers)))
