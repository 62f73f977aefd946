"""The in-memory revocation state that Verify consults, and the feed follower filling it.

Verify never touches the store: it asks `Denylist`, which `DenylistFollower` keeps in
step with the store's change feed. An entry only lives as long as the tokens it names
(RFC 7009 revokes a token for its remaining lifetime), so memory stays bounded by the
number of revocations made within one maximum token lifetime.
"""

from __future__ import annotations

import asyncio
import heapq
import math
import time
from collections.abc import Callable, Iterable, Sequence

import structlog

from tokend import metrics
from tokend.store.base import Revocation, Store, wait_for_change

log = structlog.get_logger(__name__)

# Filed keys `DenylistFollower.prune` looks at before it yields (about 2 ms of work).
PRUNE_SLICE = 5_000


class Denylist:
    """Live revocations, lean enough for millions: about 125 bytes per revoked jti.

    A jti is kept as its UTF-8 bytes (64 bytes allocated for tokend's 22-character
    jtis, where the str takes 80). Expiries are whole seconds, rounded up (an entry may
    outlive its tokens by under a second: fail closed), and one int object per distinct
    second is shared by every entry expiring then, where a float each took 24 bytes.
    Keys are also filed in buckets by expiry second under a heap, so `prune` only visits
    what has expired, in slices of bounded work.

    Not thread-safe; owned by the event loop (Verify and the follower both run there).
    """

    __slots__ = ("_buckets", "_heap", "_jtis", "_seconds", "_subjects", "seq", "synced_at")

    def __init__(self) -> None:
        self._jtis: dict[bytes, int] = {}  # jti (UTF-8) -> expiry second
        self._subjects: dict[str, tuple[float, int]] = {}  # subject -> (not_before, expiry)
        self._seconds: dict[int, int] = {}  # expiry second -> its shared int object
        # expiry second -> keys filed there: a jti key, or (subject,) for a subject
        self._buckets: dict[int, list[bytes | tuple[str]]] = {}
        self._heap: list[int] = []  # the seconds in _buckets, earliest first
        self.seq = 0  # highest feed sequence applied
        # time.monotonic() when the store's feed was last read to its end; None: never.
        self.synced_at: float | None = None

    def apply(self, revocations: Iterable[Revocation]) -> None:
        """Merge feed rows; applying a row twice (or out of order) changes nothing."""
        # The jti path is inlined: a start-up catch-up applies millions of rows.
        jtis, seconds, buckets = self._jtis, self._seconds, self._buckets
        seq = self.seq
        for rev in revocations:
            kind = rev.kind
            if kind == "jti":
                key = _jti_key(rev.value)
                second = math.ceil(rev.expires_at)
                second = seconds.setdefault(second, second)
                old = jtis.get(key)
                if old is None or second > old:
                    jtis[key] = second
                    bucket = buckets.get(second)
                    if bucket is None:
                        buckets[second] = bucket = []
                        heapq.heappush(self._heap, second)
                    bucket.append(key)
            elif kind == "subject":
                self._add_subject(rev.value, rev.not_before, rev.expires_at)
            # "family" rows are informational: the family's access tokens arrive as jti rows.
            if rev.seq > seq:
                seq = rev.seq
        self.seq = seq

    def _add_subject(self, subject: str, not_before: float, expires_at: float) -> None:
        # Merging to (max, max) can only deny more. The extra coverage (older tokens past
        # an earlier entry's expiry) names tokens that have expired by then anyway, since
        # every entry's expiry is its not_before plus the maximum token lifetime.
        second = self._second(expires_at)
        old = self._subjects.get(subject)
        if old is not None:
            not_before = max(not_before, old[0])
            if (not_before, max(second, old[1])) == old:
                return
        if old is None or second > old[1]:
            self._file(second, (subject,))
        else:
            second = old[1]
        self._subjects[subject] = (not_before, second)

    def _second(self, expires_at: float) -> int:
        second = math.ceil(expires_at)
        return self._seconds.setdefault(second, second)

    def _file(self, second: int, key: bytes | tuple[str]) -> None:
        bucket = self._buckets.get(second)
        if bucket is None:
            self._buckets[second] = bucket = []
            heapq.heappush(self._heap, second)
        bucket.append(key)

    def is_revoked(self, jti: str, subject: str, iat: float, now: float) -> bool:
        expires_at = self._jtis.get(_jti_key(jti))
        if expires_at is not None and expires_at > now:
            return True
        entry = self._subjects.get(subject)
        # Ties are denied: iat has one-second resolution, so a token stamped with the
        # revocation's second may have been minted before it (Revoke(subject) answers
        # only after that second, so no token issued after its answer carries it).
        return entry is not None and entry[1] > now and iat <= entry[0]

    def subject_cutoff(self, subject: str, now: float) -> float | None:
        """The subject's live Revoke(subject) cutoff: what it issued up to then is dead."""
        entry = self._subjects.get(subject)
        return entry[0] if entry is not None and entry[1] > now else None

    @property
    def next_expiry(self) -> float:
        """The earliest second at which some entry may expire; inf when empty."""
        return self._heap[0] if self._heap else math.inf

    def prune(self, now: float, budget: int | None = None) -> int:
        """Drop entries whose tokens have expired; returns how many went.

        Visits only buckets that have expired. With ``budget``, stops after looking at
        that many filed keys (call again while `next_expiry` <= now), so a caller on the
        event loop can yield between slices.
        """
        removed = 0
        left = math.inf if budget is None else budget
        heap, buckets = self._heap, self._buckets
        while heap and heap[0] <= now and left > 0:
            second = heap[0]
            bucket = buckets[second]
            while bucket and left > 0:
                left -= 1
                removed += self._drop(bucket.pop(), now)
            if not bucket:
                heapq.heappop(heap)
                del buckets[second]
                self._seconds.pop(second, None)
        return removed

    def _drop(self, key: bytes | tuple[str], now: float) -> int:
        """Remove ``key``'s entry if it has expired (a later row may have extended it)."""
        if isinstance(key, tuple):
            entry = self._subjects.get(key[0])
            if entry is not None and entry[1] <= now:
                del self._subjects[key[0]]
                return 1
            return 0
        expires_at = self._jtis.get(key)
        if expires_at is not None and expires_at <= now:
            del self._jtis[key]
            return 1
        return 0

    def mark_synced(self, at: float) -> None:
        """Record that the store's feed was read to its end at ``at`` (monotonic)."""
        if self.synced_at is None or at > self.synced_at:
            self.synced_at = at

    def staleness(self, now: float | None = None) -> float:
        """Seconds since the feed was last read to its end (inf before the first read):
        revocations committed by other processes since then may be missing here."""
        if self.synced_at is None:
            return math.inf
        return max(0.0, (time.monotonic() if now is None else now) - self.synced_at)

    def __len__(self) -> int:
        return len(self._jtis) + len(self._subjects)


def _jti_key(jti: str) -> bytes:
    """The dict key for ``jti``: its UTF-8 bytes, one-to-one with the str (surrogatepass:
    even a string with lone surrogates has its own key rather than an error)."""
    return jti.encode("utf-8", "surrogatepass")


class DenylistFollower:
    """Follows the store's revocation feed into a `Denylist`.

    Between two polls it waits on the store's change feed (`wait_for_change`: LISTEN/
    NOTIFY on PostgreSQL), which returns as soon as another process commits a revocation;
    ``interval`` bounds the wait, so polling remains the fallback (and the only mechanism
    on SQLite). Every wake-up reads from ``seq`` on, so nothing is missed when a
    notification is lost or the listening connection reconnects.

    ``seq`` is the follower's own position in the feed, not ``denylist.seq``: a local
    Revoke applies its rows at once, possibly before a lower sequence committed by
    another process has been read, and reading from the highest applied row would skip
    that one. ``on_applied`` is called with each page right after it is applied, in feed
    order with no gaps (the live streams fan it out).

    Call `catch_up()` once before serving, so Verify starts with every live revocation,
    then run `run()` as a task.
    """

    def __init__(
        self,
        store: Store,
        denylist: Denylist,
        *,
        interval: float = 0.5,
        page_size: int = 10_000,
        prune_interval: float = 60.0,
        max_backoff: float = 5.0,
        clock: Callable[[], float] = time.time,
        on_applied: Callable[[Sequence[Revocation]], None] | None = None,
    ) -> None:
        if interval <= 0 or page_size <= 0:
            raise ValueError("interval and page_size must be positive")
        self._store = store
        self._denylist = denylist
        self._interval = interval
        self._page_size = page_size
        self._prune_interval = prune_interval
        self._max_backoff = max(max_backoff, interval)
        self._clock = clock
        self._on_applied = on_applied
        self.seq = 0  # highest feed sequence read by this follower (rereading is harmless)

    async def catch_up(self) -> int:
        """Apply every live revocation after ``seq``; returns rows applied.

        Having read to the end, marks the denylist synced as of the moment it began.
        """
        started = time.monotonic()
        applied = 0
        while True:
            page = await self._store.revocations_since(self.seq, self._clock(), self._page_size)
            self._denylist.apply(page)
            if page:
                self.seq = max(self.seq, page[-1].seq)
                if self._on_applied is not None:
                    self._on_applied(page)
            applied += len(page)
            if len(page) < self._page_size:
                self._denylist.mark_synced(started)
                return applied

    async def run(self) -> None:
        """Follow the feed until cancelled; store errors are logged and retried, never fatal."""
        # Computed at scrape time, so an outage shows even while a read hangs.
        metrics.track(metrics.DENYLIST_STALENESS, self._denylist.staleness)
        failures = 0
        next_prune = self._clock() + self._prune_interval
        while True:
            failures = await self._poll_once(failures)
            now = self._clock()
            if now >= next_prune:
                await self.prune(now)
                next_prune = now + self._prune_interval
            await self._wait(failures)

    async def prune(self, now: float) -> int:
        """Drop expired entries in slices of `PRUNE_SLICE`, yielding to the event loop
        between them (Verify waits at most one slice); returns how many went."""
        removed = self._denylist.prune(now, PRUNE_SLICE)
        while self._denylist.next_expiry <= now:
            await asyncio.sleep(0)
            removed += self._denylist.prune(now, PRUNE_SLICE)
        metrics.DENYLIST_SIZE.set(len(self._denylist))
        return removed

    async def _wait(self, failures: int) -> None:
        """Wait for the next poll: the interval (or the backoff), cut short by the feed.

        After an outage the change feed's reconnect is such a wake-up, so the follower
        catches up as soon as the store is back rather than after a long backoff.
        """
        delay = self._delay(failures)
        try:
            await wait_for_change(self._store, delay)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            # A broken change feed only costs latency: fall back to plain polling.
            log.debug("denylist.wait_failed", error_type=type(exc).__name__)
            await asyncio.sleep(delay)

    async def _poll_once(self, failures: int) -> int:
        """One catch-up; returns the new count of consecutive failures."""
        try:
            applied = await self.catch_up()
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            metrics.STORE_UP.set(0)
            failures += 1
            # Log the first failure and then every tenth, so an outage does not flood logs.
            # The exception's type and message only: store errors carry no token material.
            if failures == 1 or failures % 10 == 0:
                log.warning(
                    "denylist.follow_failed",
                    error_type=type(exc).__name__,
                    error=str(exc)[:200],
                    failures=failures,
                    seq=self.seq,
                )
            return failures
        metrics.STORE_UP.set(1)
        metrics.DENYLIST_SIZE.set(len(self._denylist))
        if failures:
            log.info("denylist.follow_recovered", failures=failures, seq=self.seq)
        if applied:
            log.debug("denylist.applied", rows=applied, seq=self.seq)
        return 0

    def _delay(self, failures: int) -> float:
        if not failures:
            return self._interval
        return min(self._interval * 2 ** min(failures, 16), self._max_backoff)
