"""bench/report.py: issue 17's rows against OpenBao (by server CPU per call), the honesty
row for Transit, VerifyMany per token, scaling, and the median p99; from made-up figures
(no timing is measured here)."""

from __future__ import annotations

from typing import Any

from bench import report, rounds


def _phase(rps: float, cpu: float, **extra: Any) -> dict[str, Any]:
    return {"rps": rps, "server_cpu_us_per_call": cpu, "count": 100, "errors": 0,
            "p50_us": 900.0, "p90_us": 1500.0, "p99_us": 3000.0, **extra}


def _results(many: dict[str, Any]) -> dict[str, Any]:
    samples = {
        "health": [_phase(5000, 200)] * 3,
        "verify": [_phase(3000, 300), _phase(2800, 320), _phase(3100, 280)],
        "issue": [_phase(2000, 250, peer_cpu_us_per_call=100)] * 3,
        "verify_many_16": [many] * 3,
        "bao_issue": [_phase(1500, 600)] * 3,
        "bao_introspect": [_phase(3500, 330), _phase(3400, 300), _phase(3600, 290)],
    }
    figures = {step: rounds.figures(rows) for step, rows in samples.items()}
    transit = {k: v for k, v in figures.items() if not k.startswith("bao_")}
    transit["rounds"] = samples
    transit["rounds_plan"] = {"rounds": 3, "seconds": 2.0}
    transit["pool"] = {"tokens": 9216, "cycled": True, "outruns_cache": True}
    transit["latency"] = {"verify": {**_phase(1500, 300), "rate": 1500, "rounds": 3,
                                     "spread": {"p99_us": [2000.0, 7000.0]}}}
    return {"run": {"date": "2026-12-07T21:00:00+00:00"}, "transit": transit,
            "openbao": {"issue": figures["bao_issue"], "introspect": figures["bao_introspect"],
                        "tokens": 2000},
            "scaling": [{"workers": 1, "verify": _phase(3000, 300), "issue": _phase(2000, 250)},
                        {"workers": 4, "verify": _phase(4000, 350), "issue": _phase(2500, 300)}]}


def _row(results: dict[str, Any], prefix: str) -> report.Ratio:
    return next(r for r in report.ratios(results) if r.name.startswith(prefix))


def test_openbao_rows_are_decided_by_server_cpu_per_call() -> None:
    many = _phase(300, 800, tokens_per_s=4800, server_cpu_us_per_token=50, tokens=1000)
    rows = {r.name.split(" (")[0]: r for r in report.ratios(_results(many))}
    verify = rows["tokend Verify ÷ OpenBao introspect"]
    # Medians: introspect 300 µs/call, Verify 300 µs/call; rates 3,000 vs 3,500.
    assert verify.by_cpu == 1.0 and verify.value == round(3000 / 3500, 3)
    assert verify.met is True, "by CPU decides: calls/s below 1 does not fail it"
    # Round by round: 330/300, 300/320, 290/280 by CPU; 3000/3500, 2800/3400, 3100/3600.
    assert "per round by CPU 0.938-1.1, by rate 0.824-0.861" in verify.limit
    issue = rows["tokend Issue"]
    assert issue.by_cpu == round(600 / 250, 3) and issue.met is True
    honest = rows["tokend + OpenBao Transit CPU per Issue ÷ OpenBao issue"]
    assert honest.by_cpu == round(600 / 350, 3) and honest.met is False
    assert "250.0 + OpenBao during tokend's Issue 100.0 = 350 µs" in honest.limit
    batched = _row(_results(many), "VerifyMany (batch 16) tokens per server CPU-second")
    assert batched.by_cpu == 6.0 and batched.met is None  # reported, no target
    assert batched.value == round(4800 / 3000, 3)
    versus = _row(_results(many), "VerifyMany (batch 16) per token")
    assert versus.by_cpu == round(300 / 50, 3) and versus.met is True
    scaling = rows["Verify calls/s, 4 workers ÷ 1 worker"]
    assert scaling.value == round(4000 / 3000, 3) and "a model" in scaling.limit
    p99 = _row(_results(many), "p99 verify")
    assert p99.value == 3.0 and p99.met is True and "median of 3 run(s)" in p99.limit
    assert "2.00-7.00 ms" in p99.limit


def test_unimplemented_verify_many_is_said_not_crashed_on() -> None:
    many = {"rps": 0.0, "count": 0, "errors": 16, "unimplemented": True, "tokens": 0,
            "tokens_per_s": 0.0, "server_cpu_us_per_token": None,
            "server_cpu_us_per_call": None, "first_error": "code = Unimplemented"}
    results = _results(many)
    rows = [r for r in report.ratios(results) if r.name.startswith("VerifyMany")]
    assert rows and all(r.value is None and r.met is None for r in rows)
    assert all("UNIMPLEMENTED" in r.limit for r in rows)
    text = report.markdown(results)
    assert "| tokend VerifyMany, batch 16 | UNIMPLEMENTED |" in text
    assert "| tokend Verify, unique | 3,000 (2,800-3,100) |" in text
    assert "≥ 1 (by CPU) | yes |" in text
    assert "Past 2 workers the figures are a model" in text
