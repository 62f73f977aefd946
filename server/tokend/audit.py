"""The audit stream: one JSON line per security-relevant act, separate from application logs.

Never a token or refresh token: only jti, family ids and short hashes.
"""

from __future__ import annotations

import json
import sys
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any


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

    def emit(self, event: str, **fields: Any) -> None:
        record = {"ts": datetime.fromtimestamp(time.time(), UTC).isoformat(), "event": event,
                  **{k: v for k, v in fields.items() if v is not None}}
        line = json.dumps(record, separators=(",", ":"), default=str)
        with self._lock:
            self._stream.write(line + "\n")
            self._stream.flush()

    def close(self) -> None:
        if self._owned is not None:
            self._owned.close()
