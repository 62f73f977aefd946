"""bench/verifiers.py and the four harnesses it runs (Python, Go, Node.js, Java): they build,
verify the shared fixture on both sides and report figures, and a harness whose verifier
or raw side refuses the tokens reports none. No timing is asserted: CI only proves the
benchmark still works (`scripts/bench --only verifiers` measures)."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from bench import report, verifiers
from bench.crypto import Signer

# A cold Maven/Go/npm build on 2 shared cores, then four short harness runs.
E2E_TIMEOUT = 1200


@pytest.mark.timeout(E2E_TIMEOUT)
def test_only_verifiers_writes_its_own_report(tmp_path: Path) -> None:
    done = subprocess.run([sys.executable, "-m", "bench", "--only", "verifiers", "--quick",
                           "--out", str(tmp_path)], cwd=verifiers.ROOT, capture_output=True,
                          text=True, timeout=E2E_TIMEOUT - 60, check=False)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    (figures,) = tmp_path.glob("verifiers-*.json")
    (table,) = tmp_path.glob("verifiers-*.md")
    assert not list(tmp_path.glob("latest.*")), "--only verifiers must leave latest.* alone"
    rows = {row["language"]: row for row in json.loads(figures.read_text())["verifiers"]}
    assert set(rows) == set(verifiers.LANGUAGES)
    for language, row in rows.items():
        assert "error" not in row, f"{language}: {row.get('error')}"
        assert row["checked"] is True and row["tokens"] == 64 and row["rounds"] == 9
        assert row["verifier_per_s"] > 0 and row["raw_per_s"] > 0
        assert row["ratio"] == pytest.approx(row["verifier_per_s"] / row["raw_per_s"], rel=0.01)
        assert row["ratio_wall"] > 0
    text = table.read_text()
    assert text.strip() == done.stdout.strip()
    for name in ("LocalVerifier", "tokend.Verifier", "| Verifier |", "TokendVerifier"):
        assert name in text


def _refused_fixture(case: str) -> dict:
    """Tokens one side must refuse: signed by another key (raw and verifier both refuse),
    or expired an hour ago (raw verify accepts them, only the verifier's claim checks refuse)."""
    if case == "expired":
        return verifiers.fixture(2, now=int(time.time()) - 3600)
    good = verifiers.fixture(2)
    other = Signer("ES256").jwk
    return {**good, "jwks": {"keys": [{**other, "kid": good["jwks"]["keys"][0]["kid"]}]}}


@pytest.mark.timeout(E2E_TIMEOUT)
@pytest.mark.parametrize("case", ["another-key", "expired"])
@pytest.mark.parametrize("language", verifiers.LANGUAGES)
def test_harness_reports_no_figures_for_refused_tokens(language: str, case: str,
                                                       tmp_path: Path) -> None:
    path = tmp_path / "fixture.json"
    path.write_text(json.dumps(_refused_fixture(case)))
    row = verifiers.measure(language, path, seconds=0.2, rounds=2)
    # The raw side runs first: another key stops it; expired tokens pass it and stop the verifier.
    refused = "raw verify refused" if case == "another-key" else "verifier refused"
    assert "ratio" not in row and refused in row.get("error", ""), row


def test_report_marks_a_language_not_measured(tmp_path: Path) -> None:
    results = {"run": {"date": "2026-12-07T19:00:00+00:00", "commit": "abc1234", "seconds": 9},
               "verifiers": [
                   {"language": "go", "verifier": "tokend.Verifier", "raw": "crypto/ecdsa",
                    "tokens": 64, "rounds": 9, "checked": True, "verifier_per_s": 900,
                    "raw_per_s": 1000, "ratio": 0.9, "ratio_wall": 0.88},
                   {"language": "java", "error": "mvn is not on PATH"}]}
    ratios = {r.name: r for r in report.verifier_ratios(results)}
    assert ratios["Go tokend.Verifier ES256 ÷ raw crypto/ecdsa"].met is True
    assert ratios["Java local verifier ES256 ÷ raw verify"].met is None
    paths = report.write_verifiers(results, tmp_path)
    assert paths["md"].name == "verifiers-2026-12-07.md"
    text = paths["md"].read_text()
    assert "| Go | tokend.Verifier | 900 | crypto/ecdsa | 1,000 | 0.900 | 0.880 | ≥ 0.8 | yes |" \
        in text
    assert "Java not measured: `mvn is not on PATH`" in text
    assert "Local verifiers per language" in report.markdown(results)
