"""Reading what a process under test logged: JSON lines, and a tail when something goes wrong."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    """The complete JSON lines of `path`: a line still being written (no newline yet) is
    left for the next read, so a test reading while the server writes never sees half."""
    text = path.read_text()
    return [json.loads(line) for line in text[:text.rfind("\n") + 1].splitlines() if line]


def log_tail(path: Path, lines: int) -> str:
    """The last `lines` lines of the log at `path`, or a note that there is none."""
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"
