"""The audit stream: one JSON line per security-relevant act, separate from application logs.

Never a token or refresh token: only jti, family ids and short hashes. Each line starts
with the fields of the application log lines (logs.py): timestamp, level, logger, event.
"""

from __future__ import annotations

import json
import sys
import threading
from pathlib import Path
from typing import IO, Any

from tokend.logs import UtcIsoClock

# Built once: json.dumps with options builds a new encoder on every call.
_ENCODER = json.JSONEncoder(separators=(",", ":"), default=str)
_CLOCK = UtcIsoClock("Z")  # as the log lines write it
LOGGER = "tokend.audit"


class AuditLog:
    def __init__(self, target: str = "-") -> None:
        """`-` writes to stdout; anything else is a file path, appended to (mode 0600)."""
        self._lock = threading.Lock()
        self._owned: IO[str] | None = None
        if target == "-":
            self._stream: IO[str] = sys.stdout
        else:
            path = Path(target)
            path.parent.mkdir(parents=True, exist_ok=True)
            path.touch(mode=0o600, exist_ok=True)
            self._stream = self._owned = path.open("a", encoding="utf-8", buffering=1)

    def emit(self, event: str, *, level: str = "info", **fields: Any) -> None:
        """`level`: "critical" for an attack under way (security.refresh_token_reuse)."""
        record = {"timestamp": _CLOCK(), "level": level, "logger": LOGGER, "event": event}
        for name, value in fields.items():
            if value is not None:
                record[name] = value
        line = _ENCODER.encode(record) + "\n"
        # One write and one flush per line: a crash loses no audited call.
        with self._lock:
            self._stream.write(line)
            self._stream.flush()

    def close(self) -> None:
        if self._owned is not None:
            self._owned.close()
