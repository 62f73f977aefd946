"""Per-caller token buckets for the RPCs that write (Issue, Refresh and Revoke), per
process or shared by the workers of `tokend serve --workers N`.

The shared table is hand-written: no well-kept library keeps token buckets in memory
that several processes update without a server (Redis) beside them.
"""

from __future__ import annotations

import fcntl
import hashlib
import math
import mmap
import os
import struct
import time
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

from tokend.config import RateLimitConfig

# Callers matched by a glob can be many; forget the least recently seen beyond this.
MAX_TRACKED_CALLERS = 10_000


@dataclass
class _Bucket:
    tokens: float
    updated: float


def _refill(tokens: float, updated: float, limit: RateLimitConfig, now: float) -> float:
    return min(limit.burst, tokens + max(0.0, now - updated) * limit.per_second)


def _wait(tokens: float, limit: RateLimitConfig) -> float:
    if tokens >= 1:
        return 0.0
    return (1 - tokens) / limit.per_second  # per_second > 0 (config.RateLimitConfig)


class RateLimiter:
    """Buckets in this process's memory (one tokend process)."""

    def __init__(self, default: RateLimitConfig) -> None:
        self._default = default
        self._buckets: OrderedDict[str, _Bucket] = OrderedDict()

    def allow(self, caller: str, limit: RateLimitConfig | None = None,
              now: float | None = None) -> bool:
        """Takes one token from the caller's bucket; False when it is empty."""
        limit = limit or self._default
        now = time.monotonic() if now is None else now
        bucket = self._buckets.pop(caller, None) or _Bucket(float(limit.burst), now)
        bucket.tokens = _refill(bucket.tokens, bucket.updated, limit, now)
        bucket.updated = now
        self._buckets[caller] = bucket
        if len(self._buckets) > MAX_TRACKED_CALLERS:
            self._buckets.popitem(last=False)
        if bucket.tokens < 1:
            return False
        bucket.tokens -= 1
        return True

    def retry_after(self, caller: str, limit: RateLimitConfig | None = None,
                    now: float | None = None) -> float:
        """Seconds until the caller's bucket holds a token again (0: it holds one now).
        Asked only after a refusal, for the RetryInfo the caller gets."""
        limit = limit or self._default
        now = time.monotonic() if now is None else now
        bucket = self._buckets.get(caller)
        if bucket is None:
            return 0.0
        return _wait(_refill(bucket.tokens, bucket.updated, limit, now), limit)


# One slot: the caller's key (BLAKE2b-128 of its id), tokens left, last update. The time is
# CLOCK_MONOTONIC, which every process on the machine shares.
_SLOT = struct.Struct("<16sdd")
SHARED_SLOTS = 16_384  # 512 KiB; a caller evicted from a full window starts with a full bucket
_PROBE = 16
_EMPTY = bytes(16)


class SharedRateLimiter(RateLimiter):
    """Buckets in a file every worker of `tokend serve --workers N` maps, so a caller's
    limit holds for the group, not once per worker. An exclusive flock guards each update
    (released by the kernel if a worker dies holding it)."""

    def __init__(self, default: RateLimitConfig, path: Path) -> None:
        super().__init__(default)
        self._fd = os.open(path, os.O_RDWR)
        self._map = mmap.mmap(self._fd, SHARED_SLOTS * _SLOT.size)

    @staticmethod
    def create(path: Path) -> None:
        """An empty table (all slots zero), made once by the supervising parent."""
        with path.open("wb") as out:
            out.truncate(SHARED_SLOTS * _SLOT.size)

    def allow(self, caller: str, limit: RateLimitConfig | None = None,
              now: float | None = None) -> bool:
        limit = limit or self._default
        now = time.monotonic() if now is None else now
        key = hashlib.blake2b(caller.encode(), digest_size=16).digest()
        fcntl.flock(self._fd, fcntl.LOCK_EX)
        try:
            offset, tokens, updated = self._slot(key, now, limit)
            tokens = _refill(tokens, updated, limit, now)
            allowed = tokens >= 1
            _SLOT.pack_into(self._map, offset, key, tokens - 1 if allowed else tokens, now)
        finally:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
        return allowed

    def retry_after(self, caller: str, limit: RateLimitConfig | None = None,
                    now: float | None = None) -> float:
        limit = limit or self._default
        now = time.monotonic() if now is None else now
        key = hashlib.blake2b(caller.encode(), digest_size=16).digest()
        fcntl.flock(self._fd, fcntl.LOCK_SH)
        try:
            _, tokens, updated = self._slot(key, now, limit)
        finally:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
        return _wait(_refill(tokens, updated, limit, now), limit)

    def _slot(self, key: bytes, now: float, limit: RateLimitConfig) -> tuple[int, float, float]:
        """The caller's slot, else a free one, else the least recently used in its window
        (open addressing; slots are never emptied, so a free slot ends the search)."""
        start = int.from_bytes(key[:8], "little")
        victim, oldest = 0, math.inf
        for step in range(_PROBE):
            offset = ((start + step) % SHARED_SLOTS) * _SLOT.size
            found, tokens, updated = _SLOT.unpack_from(self._map, offset)
            if found == key:
                return offset, tokens, updated
            if found == _EMPTY:
                return offset, float(limit.burst), now
            if updated < oldest:
                victim, oldest = offset, updated
        return victim, float(limit.burst), now


_shared_table: Path | None = None


def share_across_processes(path: Path) -> None:
    """From now on new limiters use the workers' shared table at `path`."""
    global _shared_table
    _shared_table = path


def new_rate_limiter(default: RateLimitConfig) -> RateLimiter:
    """The limiter for this process: shared when it is one of several workers."""
    if _shared_table is not None:
        return SharedRateLimiter(default, _shared_table)
    return RateLimiter(default)
