"""Alternating rounds with medians: how the benchmark makes ratios steady on a shared machine.

A figure measured once on two busy shared cores moves by ±20 % from run to run, and a
neighbour's burst that lands on one phase of a comparison but not the other makes the
ratio lie. So the phases of a comparison run in rounds, each round in a rotated order
(no phase always follows the same one), and each figure is its median over the rounds,
with its min-max spread beside it. Ratios divide figures of the same run; `paired` also
divides round by round, whose spread shows how far one ratio could be trusted alone.

Used by the main service part (bench/run.py: floor, Verify, Issue, VerifyMany and
OpenBao's identity tokens) and by `--only tracing` / `--only event-loop`.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable, Mapping
from typing import Any

Row = dict[str, Any]
Step = Callable[[], Row]

# Figures of a load generator's row that get a median (those present in the rows).
MEDIANS = ("rps", "server_cpu_us_per_call", "p50_us", "p90_us", "p99_us", "server_cores_busy",
           "peer_cpu_us_per_call", "tokens_per_s", "server_cpu_us_per_token")
# Figures that also get their min-max spread.
SPREADS = ("rps", "server_cpu_us_per_call", "tokens_per_s", "server_cpu_us_per_token",
           "peer_cpu_us_per_call")


def rotated(names: list[str], index: int) -> list[str]:
    """Round `index`'s order: the names shifted by `index`."""
    if not names:
        return []
    shift = index % len(names)
    return names[shift:] + names[:shift]


def alternate(rounds: int, groups: Mapping[str, Mapping[str, Step]]
              ) -> dict[str, dict[str, list[Row]]]:
    """Runs every step of every group once per round; within a group the steps rotate.

    Returns each step's rows, by group and step. A step whose row says `unimplemented`
    (the server lacks the RPC) is not run again: its one row says so.
    """
    samples: dict[str, dict[str, list[Row]]] = {
        group: {name: [] for name in steps} for group, steps in groups.items()}
    for index in range(rounds):
        for group, steps in groups.items():
            for name in rotated(list(steps), index):
                rows = samples[group][name]
                if rows and rows[-1].get("unimplemented"):
                    continue
                rows.append(steps[name]())
    return samples


def median(rows: list[Row], key: str) -> float | None:
    values = [float(row[key]) for row in rows if row.get(key) is not None]
    return round(statistics.median(values), 1) if values else None


def spread(rows: list[Row], key: str) -> list[float] | None:
    values = [float(row[key]) for row in rows if row.get(key) is not None]
    return [round(min(values), 1), round(max(values), 1)] if values else None


def figures(rows: list[Row]) -> Row:
    """One step's rounds as one row: medians, spreads, total counts and errors."""
    out: Row = {key: median(rows, key) for key in MEDIANS
                if any(row.get(key) is not None for row in rows)}
    out.setdefault("rps", None)
    out.setdefault("server_cpu_us_per_call", None)
    out["spread"] = {key: spread(rows, key) for key in SPREADS if key in out}
    out["count"] = sum(int(row.get("count", 0)) for row in rows)
    if any("tokens" in row for row in rows):
        out["tokens"] = sum(int(row.get("tokens", 0)) for row in rows)
    out["errors"] = sum(int(row.get("errors", 0)) for row in rows)
    out["first_error"] = next((row["first_error"] for row in rows if row.get("first_error")),
                              None)
    out["rounds"] = len(rows)
    if any(row.get("unimplemented") for row in rows):
        out["unimplemented"] = True
    return out


def ratio(top: float | None, bottom: float | None) -> float | None:
    return round(top / bottom, 3) if top and bottom else None


def summary(by_side: dict[str, list[Row]], base: str | None = None) -> dict[str, Any]:
    """Each side's figures; with `base`, every other side's ratios to it (÷ base):
    calls/s (below 1 is throughput lost) and server CPU per call (above 1 is CPU added)."""
    out: dict[str, Any] = {"rounds": dict(by_side)}
    for side, rows in by_side.items():
        out[side] = figures(rows)
    if base is None:
        return out
    reference = out[base]
    for side in by_side:
        if side == base:
            continue
        row = out[side]
        row[f"rps_ratio_to_{base}"] = ratio(row["rps"], reference["rps"])
        row[f"cpu_per_call_ratio_to_{base}"] = ratio(row["server_cpu_us_per_call"],
                                                     reference["server_cpu_us_per_call"])
        row["cpu_us_added_per_call"] = (
            round(row["server_cpu_us_per_call"] - reference["server_cpu_us_per_call"], 1)
            if row["server_cpu_us_per_call"] and reference["server_cpu_us_per_call"] else None)
        row[f"cpu_per_call_ratio_to_{base}_by_round"] = paired(
            by_side[side], by_side[base], "server_cpu_us_per_call")
    return out


def paired(tops: list[Row], bottoms: list[Row], key: str, bottom_key: str | None = None
           ) -> Row | None:
    """top[key] ÷ bottom[bottom_key] round by round (rows of the same round): median, min,
    max. The spread says how much one round's ratio alone could be off."""
    values = [row[key] / other[bottom_key or key] for row, other in zip(tops, bottoms, strict=False)
              if row.get(key) and other.get(bottom_key or key)]
    if not values:
        return None
    return {"median": round(statistics.median(values), 3), "min": round(min(values), 3),
            "max": round(max(values), 3), "rounds": len(values)}
