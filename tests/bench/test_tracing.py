"""bench/tracing.py: the summary arithmetic and the in-process cost of the tracing code.
The service figures (`scripts/bench --only tracing`) are not run here: CI proves the
pieces, the benchmark measures."""

from __future__ import annotations

from typing import Any

from bench import tracing


def _row(rps: float, cpu: float) -> dict[str, Any]:
    return {"rps": rps, "server_cpu_us_per_call": cpu, "p50_us": 1.0, "p99_us": 2.0,
            "errors": 0}


def test_summary_takes_medians_and_divides_by_off() -> None:
    out = tracing.summary({
        "off": [_row(1000, 300), _row(900, 320), _row(5000, 100)],
        "on": [_row(800, 400), _row(700, 410), _row(750, 390)],
    })
    assert out["off"]["rps"] == 1000 and out["off"]["server_cpu_us_per_call"] == 300
    assert out["on"]["rps_ratio_to_off"] == 0.75
    assert out["on"]["cpu_per_call_ratio_to_off"] == round(400 / 300, 3)
    assert out["on"]["cpu_us_added_per_call"] == 100
    assert "rps_ratio_to_off" not in out["off"]
    assert "| Verify | on | 750.0 | 0.75 |" in tracing.table(
        {"verify": {**out, "sampled_1pct": out["on"]}, "issue": {**out, "sampled_1pct": out["on"]}})


def test_tracing_off_costs_a_none_check_and_sampling_cuts_the_on_cost() -> None:
    cost = tracing.in_process(calls=3000)
    # Off: no span, no context read, well under a microsecond; an exported span costs
    # tens of microseconds; an unsampled one in between.
    assert cost["off"] < 0.5
    assert cost["off"] < cost["sampled_1pct"] < cost["on"]
