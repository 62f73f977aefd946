"""The in-memory revocation state that Verify consults, and the feed follower filling it.

Verify never touches the store: it asks `Denylist`, which `DenylistFollower` keeps in
step with the store's change feed. An entry only lives as long as the tokens it names
(RFC 7009 revokes a token for its remaining lifetime), so memory stays bounded by the
number of revocations made within one maximum token lifetime.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterable

import structlog

from tokend.store.base import Revocation, Store, wait_for_change

log = structlog.get_logger(__name__)


class Denylist:
    """Live revocations, lean: one float per jti, one pair per subject.

    Not thread-safe; owned by the event loop (Verify and the follower both run there).
    """

    __slots__ = ("_jtis", "_subjects", "seq")

    def __init__(self) -> None:
        self._jtis: dict[str, float] = {}  # jti -> expires_at
        self._subjects: dict[str, tuple[float, float]] = {}  # subject -> (not_before, expires_at)
        self.seq = 0  # highest feed sequence applied

    def apply(self, revocations: Iterable[Revocation]) -> None:
        """Merge feed rows; applying a row twice (or out of order) changes nothing."""
        for rev in revocations:
            if rev.kind == "jti":
                self._add_jti(rev.value, rev.expires_at)
            elif rev.kind == "subject":
                self._add_subject(rev.value, rev.not_before, rev.expires_at)
            # "family" rows are informational: the family's access tokens arrive as jti rows.
            if rev.seq > self.seq:
                self.seq = rev.seq

    def _add_jti(self, jti: str, expires_at: float) -> None:
        if expires_at > self._jtis.get(jti, float("-inf")):
            self._jtis[jti] = expires_at

    def _add_subject(self, subject: str, not_before: float, expires_at: float) -> None:
        # Merging to (max, max) can only deny more. The extra coverage (older tokens past
        # an earlier entry's expiry) names tokens that have expired by then anyway, since
        # every entry's expiry is its not_before plus the maximum token lifetime.
        old = self._subjects.get(subject)
        if old is not None:
            not_before = max(not_before, old[0])
            expires_at = max(expires_at, old[1])
            if (not_before, expires_at) == old:
                return
        self._subjects[subject] = (not_before, expires_at)

    def is_revoked(self, jti: str, subject: str, iat: float, now: float) -> bool:
        expires_at = self._jtis.get(jti)
        if expires_at is not None and expires_at > now:
            return True
        entry = self._subjects.get(subject)
        # Ties are denied: iat has one-second resolution, so a token stamped with the
        # revocation's second may have been minted before it.
        return entry is not None and entry[1] > now and iat <= entry[0]

    def prune(self, now: float) -> int:
        """Drop entries whose tokens have expired; returns how many went."""
        dead_jtis = [jti for jti, expires_at in self._jtis.items() if expires_at <= now]
        for jti in dead_jtis:
            del self._jtis[jti]
        dead_subjects = [s for s, (_, expires_at) in self._subjects.items() if expires_at <= now]
        for subject in dead_subjects:
            del self._subjects[subject]
        return len(dead_jtis) + len(dead_subjects)

    def __len__(self) -> int:
        return len(self._jtis) + len(self._subjects)


class DenylistFollower:
    """Follows the store's revocation feed into a `Denylist`.

    Between two polls it waits on the store's change feed (`wait_for_change`: LISTEN/
    NOTIFY on PostgreSQL), which returns as soon as another process commits a revocation;
    ``interval`` bounds the wait, so polling remains the fallback (and the only mechanism
    on SQLite). Every wake-up reads from ``denylist.seq`` on, so nothing is missed when
    a notification is lost or the listening connection reconnects.

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

    async def catch_up(self) -> int:
        """Apply every live revocation after ``denylist.seq``; returns rows applied."""
        applied = 0
        while True:
            page = await self._store.revocations_since(
                self._denylist.seq, self._clock(), self._page_size
            )
            self._denylist.apply(page)
            applied += len(page)
            if len(page) < self._page_size:
                return applied

    async def run(self) -> None:
        """Follow the feed until cancelled; store errors are logged and retried, never fatal."""
        failures = 0
        next_prune = self._clock() + self._prune_interval
        while True:
            failures = await self._poll_once(failures)
            now = self._clock()
            if now >= next_prune:
                self._denylist.prune(now)
                next_prune = now + self._prune_interval
            await self._wait(failures)

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
            failures += 1
            # Log the first failure and then every tenth, so an outage does not flood logs.
            # The exception's type and message only: store errors carry no token material.
            if failures == 1 or failures % 10 == 0:
                log.warning(
                    "denylist.follow_failed",
                    error_type=type(exc).__name__,
                    error=str(exc)[:200],
                    failures=failures,
                    seq=self._denylist.seq,
                )
            return failures
        if failures:
            log.info("denylist.follow_recovered", failures=failures, seq=self._denylist.seq)
        if applied:
            log.debug("denylist.applied", rows=applied, seq=self._denylist.seq)
        return 0

    def _delay(self, failures: int) -> float:
        if not failures:
            return self._interval
        return min(self._interval * 2 ** min(failures, 16), self._max_backoff)
