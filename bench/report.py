"""Turns one run's figures into ratios against targets: latest.json, latest.md, latest.png."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class Ratio:
    """One figure of the issue, its target and what bounds it on this stack."""

    name: str
    value: float | None
    target: float
    higher_is_better: bool = True
    unit: str = "x"
    limit: str = ""
    # The same comparison made with server CPU per call (health CPU ÷ this CPU): what
    # one core could do, less sensitive to a busy neighbour than calls per second.
    by_cpu: float | None = None

    @property
    def met(self) -> bool | None:
        """Met only if both views agree: calls per second, and (where measured) server
        CPU per call, which a load generator short of CPU cannot flatter."""
        if self.value is None:
            return None
        if not self.higher_is_better:
            return self.value <= self.target
        return self.value >= self.target and (self.by_cpu is None or self.by_cpu >= self.target)


PEERS = ("jwcrypto", "PyJWT", "joserfc")
CRYPTO_TARGETS = {"ES256": 0.80, "RS256": 0.60, "EdDSA": 0.80}
VERIFIER_TARGET = 0.80  # issue 12: each language's local verifier ÷ its raw ES256 verify
LANGUAGE_NAMES = {"python": "Python", "go": "Go", "node": "Node.js", "java": "Java"}


def _rps(phase: dict[str, Any] | None) -> float | None:
    return phase["rps"] if phase and phase.get("count") else None


def _div(a: float | None, b: float | None) -> float | None:
    return round(a / b, 3) if a and b else None


def health_rps(service: dict[str, Any]) -> float | None:
    """The better of the health samples: the higher floor, so ratios err low."""
    values = [_rps(service.get(k)) for k in ("health", "health_1", "health_2")]
    present = [v for v in values if v]
    return max(present) if present else None


def ratios(results: dict[str, Any]) -> list[Ratio]:
    out: list[Ratio] = []
    crypto = {row["alg"]: row for row in results.get("crypto", [])}
    for alg, target in CRYPTO_TARGETS.items():
        row = crypto.get(alg)
        value = row["ratio_to_raw"]["LocalVerifier"] if row else None
        best_peer = max((row["ratio_to_raw"][p] for p in PEERS), default=None) if row else None
        out.append(Ratio(f"LocalVerifier {alg} ÷ raw verify", value, target,
                         limit=f"best peer {best_peer}; the rest is base64url, strict JSON "
                               "and claim checks in Python"))
    out += verifier_ratios(results)
    transit = results.get("transit") or {}
    health = health_rps(transit)
    # The raw rate measured right after the Verify phase, else the in-process one.
    raw = transit.get("raw_es256_now") or crypto.get("ES256", {}).get("ops_per_s", {}).get("raw")
    floor = 1 / (1 / health + 1 / raw) if health and raw else None
    verify, repeat = _rps(transit.get("verify")), _rps(transit.get("verify_repeat"))
    issue = _rps(transit.get("issue"))
    cpu = {k: (transit.get(k) or {}).get("server_cpu_us_per_call")
           for k in ("verify", "verify_repeat", "issue", "health_1", "health_2")}
    health_cpu = min((c for c in (cpu["health_1"], cpu["health_2"]) if c), default=None)
    floor_cpu = health_cpu + 1e6 / raw if health_cpu and raw else None
    out += [
        Ratio("Verify RPC (unique ES256) ÷ floor 1/(1/health+1/raw)", _div(verify, floor),
              0.85, by_cpu=_div(floor_cpu, cpu["verify"]),
              limit=f"{cpu['verify']} µs CPU/call; floor {_fmt(floor_cpu)} µs "
                    f"(health {health_cpu} + raw verify {_fmt(1e6 / raw if raw else None)}); "
                    "profile-verify.txt"),
        Ratio("Verify RPC (repeated token) ÷ health", _div(repeat, health), 0.90,
              by_cpu=_div(health_cpu, cpu["verify_repeat"]),
              limit=f"{cpu['verify_repeat']} µs CPU/call vs health {health_cpu}; "
                    "profile-verify-repeat.txt"),
        Ratio("Issue RPC (Transit) ÷ health", _div(issue, health), 0.60,
              by_cpu=_div(health_cpu, cpu["issue"]),
              limit=f"{cpu['issue']} µs CPU/call vs health {health_cpu}; "
                    "profile-issue.txt"),
    ]
    kv = results.get("kv") or {}
    kv_cpu = (kv.get("issue") or {}).get("server_cpu_us_per_call")
    kv_health_cpu = (kv.get("health") or {}).get("server_cpu_us_per_call")
    out.append(Ratio("Issue RPC (kv custody) ÷ health", _div(_rps(kv.get("issue")),
                                                             health_rps(kv)), 0.75,
                     by_cpu=_div(kv_health_cpu, kv_cpu),
                     limit=kv.get("skipped", f"{kv_cpu} µs CPU/call vs health {kv_health_cpu}; "
                                  "ES256 signed on the event loop, in batches")))
    out += _versus_openbao(results, issue, verify)
    latency = transit.get("latency") or {}
    for name, bound in (("verify", 5.0), ("issue", 10.0)):
        phase = latency.get(name) or {}
        p99 = phase.get("p99_us")
        out.append(Ratio(f"p99 {name} at {phase.get('rate', '?')}/s (50% of max), ms",
                         round(p99 / 1000, 2) if p99 else None, bound,
                         higher_is_better=False, unit="ms",
                         limit=f"open loop; p50 {_fmt(phase.get('p50_us'))} µs, p90 "
                               f"{_fmt(phase.get('p90_us'))} µs"))
    soak = results.get("soak")
    if soak and soak.get("rss"):
        out.append(Ratio("RSS growth over the soak, %", rss_growth(soak["rss"]), 5.0,
                         higher_is_better=False, unit="%", limit="after a 30 s warm-up"))
    return out


def verifier_ratios(results: dict[str, Any]) -> list[Ratio]:
    """One row per language measured by bench/verifiers.py (none if it did not run)."""
    out = []
    for row in results.get("verifiers") or []:
        language = LANGUAGE_NAMES.get(row["language"], row["language"])
        if "ratio" not in row:
            out.append(Ratio(f"{language} local verifier ES256 ÷ raw verify", None,
                             VERIFIER_TARGET, limit=f"not measured: {row['error'][:200]}"))
            continue
        out.append(Ratio(f"{language} {row['verifier']} ES256 ÷ raw {row['raw']}", row["ratio"],
                         VERIFIER_TARGET,
                         limit=f"per CPU-second, median of {row['rounds']} alternating rounds; "
                               f"by wall time {row['ratio_wall']}"))
    return out


def verifier_lines(results: dict[str, Any]) -> list[str]:
    """The per-language table of bench/verifiers.py's figures."""
    rows = results.get("verifiers") or []
    if not rows:
        return []
    lines = ["", "## Local verifiers per language (ES256, verifications per CPU-second, "
             "one process each)", "",
             "| language | local verifier | verify/s | raw verify | raw/s | ÷ raw (CPU) "
             "| ÷ raw (wall) | target | met |", "|---|---|---|---|---|---|---|---|---|"]
    for row in rows:
        language = LANGUAGE_NAMES.get(row["language"], row["language"])
        if "ratio" not in row:
            lines.append(f"| {language} | - | - | - | - | - | - | ≥ {VERIFIER_TARGET:g} | - |")
            continue
        met = "yes" if row["ratio"] >= VERIFIER_TARGET else "**no**"
        lines.append(f"| {language} | {row['verifier']} | {_fmt(row['verifier_per_s'])} | "
                     f"{row['raw']} | {_fmt(row['raw_per_s'])} | {row['ratio']:.3f} | "
                     f"{row['ratio_wall']:.3f} | ≥ {VERIFIER_TARGET:g} | {met} |")
    tokens = {row.get("tokens") for row in rows if "tokens" in row}
    lines += ["", f"Same P-256 key and the same {', '.join(map(str, sorted(tokens)))} distinct "
              "tokens in every language; raw and verifier alternate in rounds after an untimed "
              "warm-up, each side's median round is shown (bench/verifiers.py). Rates are per "
              "CPU-second of the harness process (its garbage collector and JIT included); the "
              "wall-time ratio is a second view of the same rounds."]
    for row in rows:
        if "error" in row:
            lines.append(f"\n{LANGUAGE_NAMES.get(row['language'], row['language'])} not "
                         f"measured: `{row['error'][:300]}`")
    return lines


def _versus_openbao(results: dict[str, Any], issue: float | None, verify: float | None
                    ) -> list[Ratio]:
    """One tokend worker, and the best `--workers` row: OpenBao uses every core."""
    bao = results.get("openbao") or {}
    bao_issue, bao_introspect = _rps(bao.get("issue")), _rps(bao.get("introspect"))
    out = [
        Ratio("tokend Issue ÷ OpenBao identity-token issue", _div(issue, bao_issue), 4.0,
              limit="OpenBao (Go) on both cores; tokend one Python worker"),
        Ratio("tokend Verify ÷ OpenBao introspect", _div(verify, bao_introspect), 3.0,
              limit="OpenBao (Go) on both cores; tokend one Python worker"),
    ]
    rows = results.get("scaling") or []
    for name, peer, target in (("issue", bao_issue, 4.0), ("verify", bao_introspect, 3.0)):
        best = max(rows, key=lambda row, n=name: _rps(row.get(n)) or 0, default=None)
        if best is None or not best.get("workers", 1) > 1:
            continue
        label = "Issue ÷ OpenBao identity-token issue" if name == "issue" else \
            "Verify ÷ OpenBao introspect"
        out.append(Ratio(f"tokend {label}, {best['workers']} workers",
                         _div(_rps(best.get(name)), peer), target,
                         limit="the load generator, OpenBao and the workers share 2 cores"))
    return out


def rss_growth(samples: list[list[float]] | list[tuple[float, int]]) -> float | None:
    """Growth from the first sample after 30 s (caches warm) to the last, in percent."""
    settled = [rss for t, rss in samples if t >= 30] or [rss for _, rss in samples]
    if len(settled) < 2:
        return None
    return round((settled[-1] - settled[0]) / settled[0] * 100, 2)


def _fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:,.3f}" if value < 10 else f"{value:,.0f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def _phase_rows(name: str, phases: dict[str, Any], health: float | None) -> list[str]:
    rows = []
    for label, phase in phases.items():
        if not isinstance(phase, dict) or "rps" not in phase:
            continue
        rows.append(f"| {name} | {label} | {_fmt(phase['rps'])}"
                    f" | {_fmt(_div(phase['rps'], health))}"
                    f" | {_fmt(phase.get('p50_us'))} | {_fmt(phase.get('p99_us'))}"
                    f" | {_fmt(phase.get('server_cpu_us_per_call'))}"
                    f" | {_fmt(phase.get('server_cores_busy'))} | {phase.get('errors', 0)} |")
    return rows


def markdown(results: dict[str, Any]) -> str:
    run = results.get("run", {})
    machine = run.get("machine", {})
    lines = [
        "# tokend benchmark: last run",
        "",
        f"{run.get('date')} · {run.get('mode')} run · commit {run.get('commit')} · "
        f"{run.get('seconds')} s",
        "",
        f"Machine: {machine.get('cpu')}, {machine.get('cores')} cores, "
        f"{machine.get('memory_gib')} GiB; Python {machine.get('python')}, grpcio "
        f"{machine.get('grpcio')}, cryptography {machine.get('cryptography')}, "
        f"{machine.get('openbao')}. Load generator: {run.get('loadgen')}. Shared and "
        "noisy: read the ratios, not the rates.",
        "",
        "## Targets",
        "",
        "| figure | measured | by server CPU | target | met | what bounds it |",
        "|---|---|---|---|---|---|",
    ]
    for r in ratios(results):
        sign = "≥" if r.higher_is_better else "≤"
        met = {True: "yes", False: "**no**", None: "-"}[r.met]
        lines.append(f"| {r.name} | {_fmt(r.value)} | {_fmt(r.by_cpu)} | {sign} {r.target:g} "
                     f"| {met} | {r.limit} |")
    lines += ["", "\"measured\" divides calls per second; \"by server CPU\" divides the server's "
              "CPU time per call the other way round (what one dedicated core would do). A "
              "target counts as met only when both views meet it: a load generator that "
              "cannot saturate the server on Health/Check makes the first view flatter "
              "tokend (see \"server cores busy\" below)."]
    lines += ["", "## In-process verification (ops per CPU-second, one thread)", "",
              "| alg | raw cryptography | LocalVerifier | jwcrypto | PyJWT | joserfc |",
              "|---|---|---|---|---|---|"]
    for row in results.get("crypto", []):
        cells = [f"{_fmt(row['ops_per_s'][k])} ({row['ratio_to_raw'][k]:.2f})"
                 for k in ("raw", "LocalVerifier", *PEERS)]
        lines.append(f"| {row['alg']} | " + " | ".join(cells) + " |")
    lines += verifier_lines(results)
    lines += ["", "## Services (closed loop, 64 calls in flight unless open loop; latency in µs)",
              "",
              "| server | phase | calls/s | ÷ health | p50 | p99 | server CPU µs/call "
              "| server cores busy | errors |", "|---|---|---|---|---|---|---|---|---|"]
    transit = results.get("transit") or {}
    lines += _phase_rows("tokend transit", {k: v for k, v in transit.items() if k != "latency"},
                         health_rps(transit))
    lines += _phase_rows("tokend transit, open loop", transit.get("latency") or {},
                         health_rps(transit))
    kv = results.get("kv") or {}
    lines += _phase_rows("tokend kv", kv, health_rps(kv))
    lines += _phase_rows("OpenBao", results.get("openbao") or {}, None)
    pool = transit.get("pool")
    if pool:
        cycled = " (cycled: more than twice the 4096-entry cache)" if pool["cycled"] else ""
        lines += ["", f"Verify used {pool['tokens']} distinct tokens issued in the run{cycled}."]
    lines += _scaling_lines(results.get("scaling") or [])
    soak = results.get("soak")
    if soak:
        rss = soak.get("rss") or []
        lines += ["", f"## Soak ({soak['seconds']:.0f} s: Verify {soak['verify_rate']}/s + "
                  f"Issue {soak['issue_rate']}/s, open loop, together)", "",
                  f"RSS {rss[0][1] / 2**20:.1f} MiB at start, "
                  f"{rss[-1][1] / 2**20:.1f} MiB at the end; growth after warm-up "
                  f"{_fmt(rss_growth(rss))} %." if rss else "no RSS samples", "",
                  "| phase | calls/s | p50 µs | p90 µs | p99 µs | errors |",
                  "|---|---|---|---|---|---|"]
        for name in ("verify", "issue"):
            phase = soak.get(name) or {}
            lines.append(f"| {name} | {_fmt(phase.get('rps'))} | {_fmt(phase.get('p50_us'))} | "
                         f"{_fmt(phase.get('p90_us'))} | {_fmt(phase.get('p99_us'))} | "
                         f"{phase.get('errors', '-')} |")
    lines += ["", "Chart: [latest.png](latest.png) · figures: [latest.json](latest.json)", ""]
    return "\n".join(lines)


def _scaling_lines(rows: list[dict[str, Any]]) -> list[str]:
    if not rows:
        return []
    lines = ["", "## Scaling: tokend serve --workers N (processes sharing the port, SO_REUSEPORT)",
             "",
             "| workers | health/s | Issue/s | Verify/s | Verify repeated/s | server cores busy "
             "(verify) |", "|---|---|---|---|---|---|"]
    for row in rows:
        lines.append(f"| {row['workers']} | {_fmt(_rps(row['health']))} | "
                     f"{_fmt(_rps(row['issue']))} | {_fmt(_rps(row['verify']))} | "
                     f"{_fmt(_rps(row['verify_repeat']))} | "
                     f"{_fmt(row['verify'].get('server_cores_busy'))} |")
    lines.append("")
    lines.append("Two cores hold the load generator, OpenBao and every tokend worker.")
    return lines


def chart(results: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, (left, right) = plt.subplots(1, 2, figsize=(14, 6.5),
                                         gridspec_kw={"width_ratios": [3, 2]})
    shown = [r for r in ratios(results) if r.unit == "x" and r.target and r.value is not None]
    names = [r.name for r in shown][::-1]
    values = [r.value / r.target for r in shown][::-1]
    colors = ["#2e7d32" if r.met else "#c62828" for r in shown][::-1]
    left.barh(names, values, color=colors)
    left.axvline(1.0, color="black", linewidth=1)
    left.set_xlabel("measured ÷ target (≥ 1 meets the target)")
    left.set_title("Ratios against their targets")
    for index, ratio in enumerate(shown[::-1]):
        left.text(values[index], index, f" {ratio.value:.2f} / {ratio.target:g}",
                  va="center", fontsize=8)
    left.tick_params(axis="y", labelsize=8)
    crypto = results.get("crypto", [])
    impls = ("LocalVerifier", *PEERS)
    width = 0.2
    for offset, impl in enumerate(impls):
        xs = [i + (offset - 1.5) * width for i in range(len(crypto))]
        right.bar(xs, [row["ratio_to_raw"][impl] for row in crypto], width, label=impl)
    right.set_xticks(range(len(crypto)), [row["alg"] for row in crypto])
    right.set_ylim(0, 1.05)
    right.axhline(1.0, color="black", linewidth=1)
    right.set_ylabel("verify rate ÷ raw cryptography verify")
    right.set_title("Full JWT verification, in-process")
    right.legend(fontsize=8)
    run = results.get("run", {})
    machine = run.get("machine", {})
    figure.suptitle(f"tokend bench {run.get('date')} · {machine.get('cpu')} · "
                    f"{machine.get('cores')} cores · {run.get('mode')} run", fontsize=10)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def write(results: dict[str, Any], out: Path) -> dict[str, Path]:
    out.mkdir(parents=True, exist_ok=True)
    results = {**results, "ratios": [{**asdict(r), "met": r.met} for r in ratios(results)]}
    paths = {"json": out / "latest.json", "md": out / "latest.md", "png": out / "latest.png"}
    paths["json"].write_text(json.dumps(results, indent=1, default=str) + "\n")
    paths["md"].write_text(markdown(results))
    chart(results, paths["png"])
    return paths


def write_verifiers(results: dict[str, Any], out: Path) -> dict[str, Path]:
    """`--only verifiers`: results/verifiers-<date>.{json,md}, latest.* left alone."""
    out.mkdir(parents=True, exist_ok=True)
    run = results.get("run", {})
    machine = run.get("machine", {})
    stem = f"verifiers-{str(run.get('date', 'undated'))[:10]}"
    paths = {"json": out / f"{stem}.json", "md": out / f"{stem}.md"}
    paths["json"].write_text(json.dumps(results, indent=1, default=str) + "\n")
    lines = ["# tokend benchmark: local verifiers per language", "",
             f"{run.get('date')} · `scripts/bench --only verifiers` · commit {run.get('commit')} "
             f"· {run.get('seconds')} s", "",
             f"Machine: {machine.get('cpu')}, {machine.get('cores')} cores, "
             f"{machine.get('memory_gib')} GiB. Shared and noisy: read the ratios, not the rates.",
             "", "| figure | measured | target | met | what bounds it |", "|---|---|---|---|---|"]
    for r in verifier_ratios(results):
        met = {True: "yes", False: "**no**", None: "-"}[r.met]
        lines.append(f"| {r.name} | {_fmt(r.value)} | ≥ {r.target:g} | {met} | {r.limit} |")
    paths["md"].write_text("\n".join([*lines, *verifier_lines(results), ""]))
    return paths


# What the request path runs (start-up imports left out of the profile listing).
# tokend's modules, the event loop, and the signature operations themselves (openssl).
# tokend_client.jose's modules are jws, jwk, jwa, b64url and json (the last is left out:
# it would match the standard library's json too).
_PROFILED = ("servicer|admission|authority|verifier|jws|jwk|jwa|b64url|minting|batching"
             "|denylist|transit"
             "|transport|keyring|localkeys|identity|audit|calls|policy|structlog|prometheus"
             "|well_known|random|Context|epoll|write|tasks.py|base_events|openssl")


def write_profile(stats: Path, out: Path, rpc: str, figures: dict[str, Any]) -> None:
    """The top of a cProfile run as text: by cumulative time, then by own time."""
    import io
    import pstats

    out.parent.mkdir(parents=True, exist_ok=True)
    text = io.StringIO()
    text.write(f"tokend under {rpc}: {figures['count']} calls, {figures['rps']}/s, "
               f"{figures['server_cpu_us_per_call']} us server CPU per call (profiling "
               "inflates Python time 2-3x; gRPC's C core shows as Context.run).\n\n")
    if not stats.exists():
        text.write("no profile was written (tokend did not exit cleanly)\n")
    else:
        for order, count in (("cumulative", 45), ("tottime", 30)):
            pstats.Stats(str(stats), stream=text).strip_dirs().sort_stats(order
                                                                           ).print_stats(
                _PROFILED, count)
    out.write_text(text.getvalue())
