"""What a test harness shows of a process's log when something goes wrong."""

from __future__ import annotations

from pathlib import Path


def log_tail(path: Path, lines: int) -> str:
    """The last `lines` lines of the log at `path`, or a note that there is none."""
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"
