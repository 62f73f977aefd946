"""The audit stream's lines and the log timestamps: the same text datetime would write,
one flushed JSON line per event, absent fields left out."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest

from tokend.audit import AuditLog
from tokend.logs import HEADER, UtcIsoClock


@pytest.mark.parametrize("nanos", [
    1_700_000_000_000_000_000,  # a whole second: no fraction, as isoformat writes it
    1_700_000_000_000_001_999,  # microseconds are truncated, not rounded
    1_700_000_000_999_999_000,
    1_700_000_001_500_000_000,
])
def test_timestamps_read_as_datetime_writes_them(monkeypatch: pytest.MonkeyPatch,
                                                 nanos: int) -> None:
    monkeypatch.setattr("time.time_ns", lambda: nanos)
    expected = datetime.fromtimestamp(nanos // 1000 / 1e6, UTC).isoformat()
    assert UtcIsoClock("+00:00")() == expected
    assert UtcIsoClock("Z")() == expected.replace("+00:00", "Z")


def test_the_cached_second_moves_on(monkeypatch: pytest.MonkeyPatch) -> None:
    clock = UtcIsoClock("Z")
    monkeypatch.setattr("time.time_ns", lambda: 1_700_000_000_250_000_000)
    assert clock() == "2023-11-14T22:13:20.250000Z"
    monkeypatch.setattr("time.time_ns", lambda: 1_700_000_061_250_000_000)
    assert clock() == "2023-11-14T22:14:21.250000Z"


def test_each_event_is_one_flushed_line(tmp_path: Path) -> None:
    path = tmp_path / "audit" / "audit.log"
    audit = AuditLog(str(path))
    audit.emit("rpc.Issue", outcome="ok", error=None, audience=["orders"], refresh=False,
               at=Path("/x"))
    # Read while the log is open: nothing waits in a buffer for a crash to lose.
    (line,) = path.read_text().splitlines()
    record = json.loads(line)
    assert list(record) == [*HEADER, "outcome", "audience", "refresh", "at"]
    assert record["event"] == "rpc.Issue" and record["at"] == "/x"  # str() of the unknown
    assert record["level"] == "info" and record["logger"] == "tokend.audit"
    assert record["timestamp"].endswith("Z")  # as the log lines write it
    assert datetime.fromisoformat(record["timestamp"]).tzinfo is not None
    assert " " not in line  # compact separators
    audit.emit("rpc.Revoke")
    assert len(path.read_text().splitlines()) == 2
    assert path.stat().st_mode & 0o777 == 0o600
    audit.close()
