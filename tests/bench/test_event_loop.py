"""`scripts/bench --only event-loop` end to end with tiny counts (one short round, a small
pool): two real `tokend serve` processes, one per event loop, each answering health, Verify
and Issue; the report and its figures land in results/event-loop-<date>.*, latest.* left
alone. No timing is asserted."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from bench import event_loop, servers


@pytest.mark.timeout(300)
def test_only_event_loop_writes_its_own_report(tmp_path: Path) -> None:
    done = subprocess.run([sys.executable, "-m", "bench", "--only", "event-loop", "--quick",
                           "--rounds", "1", "--round-seconds", "0.3", "--pool-tokens", "100",
                           "--out", str(tmp_path)], cwd=servers.ROOT, capture_output=True,
                          text=True, timeout=240, check=False)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    (figures,) = tmp_path.glob("event-loop-*.json")
    (table,) = tmp_path.glob("event-loop-*.md")
    assert not list(tmp_path.glob("latest.*"))
    results = json.loads(figures.read_text())["event_loop"]
    for phase in event_loop.PHASES:
        for loop in event_loop.LOOPS:
            row = results[phase][loop]
            assert row["errors"] == 0 and row["count"] > 0 and row["rounds"] == 1, row
            assert row["server_cpu_us_per_call"] > 0
        assert results[phase]["uvloop"]["cpu_per_call_ratio_to_asyncio"] > 0
    assert results["pool"] == {"tokens": 100, "cycled": True, "outruns_cache": False}
    text = table.read_text()
    assert text.strip() == done.stdout.strip()
    assert "| Verify | uvloop |" in text and "some Verify calls hit it" in text


def test_the_setting_goes_through_the_config_file(tmp_path: Path) -> None:
    """servers.start_tokend drops TOKEND_* variables, so the loop must be in the file."""
    import yaml

    class _Bao:  # only addr and token are read to write the config
        addr, token = "http://127.0.0.1:1", "root"

    config = servers.tokend_config(_Bao(), tmp_path, event_loop.KEY, "ES256", 1,  # type: ignore[arg-type]
                                   {"event_loop": "asyncio"})
    assert yaml.safe_load(config.read_text())["event_loop"] == "asyncio"
