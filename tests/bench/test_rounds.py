"""bench/rounds.py: the rotation, the medians and spreads, the ratios ÷ a base side and
round by round, and a step the server does not implement running once."""

from __future__ import annotations

from typing import Any

from bench import rounds


def _row(rps: float, cpu: float, **extra: Any) -> dict[str, Any]:
    return {"rps": rps, "server_cpu_us_per_call": cpu, "p50_us": 1.0, "p99_us": 2.0,
            "count": 10, "errors": 0, **extra}


def test_each_round_rotates_the_order() -> None:
    order: list[str] = []

    def step(name: str) -> rounds.Step:
        return lambda: order.append(name) or _row(1, 1)

    samples = rounds.alternate(3, {"g": {name: step(name) for name in "abc"}})
    assert order == ["a", "b", "c", "b", "c", "a", "c", "a", "b"]
    assert {name: len(rows) for name, rows in samples["g"].items()} == {"a": 3, "b": 3, "c": 3}


def test_a_step_answered_unimplemented_runs_once() -> None:
    calls = {"many": 0}

    def many() -> dict[str, Any]:
        calls["many"] += 1
        return {"rps": 0.0, "count": 0, "errors": 4, "unimplemented": True,
                "first_error": "rpc error: code = Unimplemented"}

    samples = rounds.alternate(4, {"g": {"verify": lambda: _row(5, 5), "many": many}})
    assert calls["many"] == 1 and len(samples["g"]["verify"]) == 4
    figures = rounds.figures(samples["g"]["many"])
    assert figures["unimplemented"] is True and figures["errors"] == 4
    assert figures["first_error"].endswith("Unimplemented")


def test_figures_are_medians_with_min_max_and_totals() -> None:
    rows = [_row(1000, 300, tokens_per_s=16000, server_cpu_us_per_token=20),
            _row(900, 320, tokens_per_s=14000, server_cpu_us_per_token=25, errors=2),
            _row(5000, 100, tokens_per_s=90000, server_cpu_us_per_token=5,
                 first_error="boom")]
    out = rounds.figures(rows)
    assert out["rps"] == 1000 and out["server_cpu_us_per_call"] == 300
    assert out["tokens_per_s"] == 16000 and out["server_cpu_us_per_token"] == 20
    assert out["spread"]["rps"] == [900, 5000]
    assert out["spread"]["server_cpu_us_per_call"] == [100, 320]
    assert out["count"] == 30 and out["errors"] == 2 and out["rounds"] == 3
    assert out["first_error"] == "boom" and "unimplemented" not in out


def test_summary_divides_by_the_base_side_and_round_by_round() -> None:
    out = rounds.summary({"asyncio": [_row(1000, 400), _row(800, 500), _row(900, 300)],
                          "uvloop": [_row(1100, 300), _row(1000, 400), _row(1200, 330)]},
                         base="asyncio")
    uv = out["uvloop"]
    assert uv["rps_ratio_to_asyncio"] == round(1100 / 900, 3)
    assert uv["cpu_per_call_ratio_to_asyncio"] == round(330 / 400, 3)
    assert uv["cpu_us_added_per_call"] == -70
    # Round by round: 300/400, 400/500, 330/300.
    assert uv["cpu_per_call_ratio_to_asyncio_by_round"] == {
        "median": 0.8, "min": 0.75, "max": 1.1, "rounds": 3}
    assert "rps_ratio_to_asyncio" not in out["asyncio"]
    assert len(out["rounds"]["uvloop"]) == 3


def test_paired_skips_rounds_without_the_figure() -> None:
    tops = [{"x": 10}, {"x": None}, {"x": 30}]
    bottoms = [{"y": 5}, {"y": 5}, {"y": 10}]
    assert rounds.paired(tops, bottoms, "x", "y") == {"median": 2.5, "min": 2.0, "max": 3.0,
                                                      "rounds": 2}
    assert rounds.paired([], [], "x") is None
