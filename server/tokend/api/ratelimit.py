"""Per-caller token buckets for the RPCs that write: Issue, Refresh and Revoke."""

from __future__ import annotations

import time
from collections import OrderedDict
from dataclasses import dataclass

from tokend.config import RateLimitConfig

# Callers matched by a glob can be many; forget the least recently seen beyond this.
MAX_TRACKED_CALLERS = 10_000


@dataclass
class _Bucket:
    tokens: float
    updated: float


class RateLimiter:
    def __init__(self, default: RateLimitConfig) -> None:
        self._default = default
        self._buckets: OrderedDict[str, _Bucket] = OrderedDict()

    def allow(self, caller: str, limit: RateLimitConfig | None = None,
              now: float | None = None) -> bool:
        """Takes one token from the caller's bucket; False when it is empty."""
        limit = limit or self._default
        now = time.monotonic() if now is None else now
        bucket = self._buckets.pop(caller, None) or _Bucket(float(limit.burst), now)
        bucket.tokens = min(limit.burst, bucket.tokens + (now - bucket.updated) * limit.per_second)
        bucket.updated = now
        self._buckets[caller] = bucket
        if len(self._buckets) > MAX_TRACKED_CALLERS:
            self._buckets.popitem(last=False)
        if bucket.tokens < 1:
            return False
        bucket.tokens -= 1
        return True
