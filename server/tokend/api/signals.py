"""Security signals: bursts of rejected tokens per caller or per subject."""

from __future__ import annotations

import time
from collections import OrderedDict, deque

from tokend import metrics
from tokend.audit import AuditLog
from tokend.config import SecurityConfig

MAX_TRACKED_KEYS = 10_000


class RejectionWatch:
    """Counts rejections in a sliding window and raises one event per burst."""

    def __init__(self, config: SecurityConfig, audit: AuditLog) -> None:
        self._config = config
        self._audit = audit
        self._seen: OrderedDict[tuple[str, str], deque[float]] = OrderedDict()
        self._alerted: dict[tuple[str, str], float] = {}

    def rejected(self, caller: str, subject: str | None, reason: str,
                 now: float | None = None) -> None:
        now = time.monotonic() if now is None else now
        self._count(("caller", caller), reason, now)
        if subject:
            self._count(("subject", subject), reason, now)

    def _count(self, key: tuple[str, str], reason: str, now: float) -> None:
        window = self._config.rejected_window
        times = self._seen.pop(key, None) or deque()
        times.append(now)
        while times and times[0] <= now - window:
            times.popleft()
        self._seen[key] = times
        if len(self._seen) > MAX_TRACKED_KEYS:
            old, _ = self._seen.popitem(last=False)
            self._alerted.pop(old, None)
        if len(times) >= self._config.rejected_burst and \
                self._alerted.get(key, -window) <= now - window:
            self._alerted[key] = now
            metrics.SECURITY_EVENTS.labels("rejected_burst").inc()
            self._audit.emit("security.rejected_burst", scope=key[0], who=key[1],
                             count=len(times), window_seconds=window, last_reason=reason)
