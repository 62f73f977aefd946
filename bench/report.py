"""Turns one run's figures into ratios against targets: latest.json, latest.md, latest.png."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from bench import rounds


@dataclass(frozen=True)
class Ratio:
    """One figure of the issue, its target and what bounds it on this stack."""

    name: str
    value: float | None
    target: float | None  # None: reported, no target
    higher_is_better: bool = True
    unit: str = "x"
    limit: str = ""
    # The same comparison made with server CPU per call (health CPU ÷ this CPU): what
    # one core could do, less sensitive to a busy neighbour than calls per second.
    by_cpu: float | None = None
    # "both": met when calls/s and (where measured) CPU per call both meet the target;
    # "cpu": the target is defined on server CPU per call (issue 17's rows against OpenBao).
    basis: str = "both"

    @property
    def met(self) -> bool | None:
        """Met only if both views agree: calls per second, and (where measured) server
        CPU per call, which a load generator short of CPU cannot flatter; or, for a
        target defined by CPU per call, that view alone."""
        if self.target is None:
            return None
        if self.basis == "cpu":
            return None if self.by_cpu is None else self.by_cpu >= self.target
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
    # The raw rate measured right after the rounds, else the in-process one.
    raw = transit.get("raw_es256_now") or crypto.get("ES256", {}).get("ops_per_s", {}).get("raw")
    floor = 1 / (1 / health + 1 / raw) if health and raw else None
    verify, repeat = _rps(transit.get("verify")), _rps(transit.get("verify_repeat"))
    issue = _rps(transit.get("issue"))
    cpu = {k: _cpu(transit.get(k)) for k in ("verify", "verify_repeat", "issue", "health",
                                               "health_1", "health_2")}
    health_cpu = min((c for c in (cpu["health"], cpu["health_1"], cpu["health_2"]) if c),
                     default=None)
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
    out += versus_openbao(results)
    out += verify_many_ratios(results)
    out += scaling_ratios(results)
    latency = transit.get("latency") or {}
    for name, bound in (("verify", 5.0), ("issue", 10.0)):
        phase = latency.get(name) or {}
        p99 = phase.get("p99_us")
        runs = phase.get("rounds", 1)
        out.append(Ratio(f"p99 {name} at {phase.get('rate', '?')}/s (50% of max), ms",
                         round(p99 / 1000, 2) if p99 else None, bound,
                         higher_is_better=False, unit="ms",
                         limit=f"open loop; median of {runs} run(s), p99 "
                               f"{_range_ms((phase.get('spread') or {}).get('p99_us'), phase)}; "
                               f"p50 {_fmt(phase.get('p50_us'))} µs, p90 "
                               f"{_fmt(phase.get('p90_us'))} µs"))
    soak = results.get("soak")
    if soak and soak.get("rss"):
        out.append(Ratio("RSS growth over the soak, %", rss_growth(soak["rss"]), 5.0,
                         higher_is_better=False, unit="%", limit="after a 30 s warm-up"))
    return out


def _cpu(phase: dict[str, Any] | None) -> float | None:
    return (phase or {}).get("server_cpu_us_per_call")


def _range_ms(values: list[float] | None, phase: dict[str, Any]) -> str:
    if not values:
        p99 = phase.get("p99_us")
        return f"{p99 / 1000:.2f} ms" if p99 else "-"
    return f"{values[0] / 1000:.2f}-{values[1] / 1000:.2f} ms"


CPU = "server_cpu_us_per_call"


def _per_round(results: dict[str, Any], top: str, bottom: str, top_key: str = CPU,
               bottom_key: str = CPU) -> str:
    """"per round": the same ratios taken round by round (bottom ÷ top of CPU per call,
    top ÷ bottom of rates), their min-max: how far one round alone could be off."""
    samples = (results.get("transit") or {}).get("rounds") or {}
    if top not in samples or bottom not in samples:
        return ""
    by_cpu = rounds.paired(samples[bottom], samples[top], bottom_key, top_key)
    rate = "tokens_per_s" if top_key == "server_cpu_us_per_token" else "rps"
    by_rate = rounds.paired(samples[top], samples[bottom], rate, "rps")
    if not by_cpu or not by_rate:
        return ""
    return (f"; per round by CPU {by_cpu['min']}-{by_cpu['max']}, by rate "
            f"{by_rate['min']}-{by_rate['max']}")


UNIMPLEMENTED = "the server answered UNIMPLEMENTED (a tokend without VerifyMany)"


def versus_openbao(results: dict[str, Any]) -> list[Ratio]:
    """Issue 17's targets: tokend ÷ OpenBao's identity tokens (same OpenBao, same run),
    defined on server CPU per call; calls/s beside it."""
    transit = results.get("transit") or {}
    bao = results.get("openbao") or {}
    verify, introspect = transit.get("verify") or {}, bao.get("introspect") or {}
    issue, bao_issue = transit.get("issue") or {}, bao.get("issue") or {}
    issue_cpu, transit_cpu = _cpu(issue), issue.get("peer_cpu_us_per_call")
    both = issue_cpu + transit_cpu if issue_cpu and transit_cpu else None
    tokens = bao.get("tokens")
    one_worker = "tokend: one Python worker (≤ 1 core); OpenBao (Go) on both cores"
    out = [
        Ratio("tokend Verify ÷ OpenBao introspect (by server CPU per call)",
              _div(_rps(verify), _rps(introspect)), 1.0, basis="cpu",
              by_cpu=_div(_cpu(introspect), _cpu(verify)),
              limit=f"{_cpu(verify)} vs {_cpu(introspect)} µs CPU/call"
                    f"{_per_round(results, 'verify', 'bao_introspect')}"
                    f"; {tokens or '?'} distinct OpenBao tokens; {one_worker}; "
                    "profile-verify.txt"),
        Ratio("tokend Issue (Transit) ÷ OpenBao issue (tokend's own CPU: the target's basis)",
              _div(_rps(issue), _rps(bao_issue)), 2.0, basis="cpu",
              by_cpu=_div(_cpu(bao_issue), issue_cpu),
              limit=f"{issue_cpu} vs {_cpu(bao_issue)} µs CPU/call"
                    f"{_per_round(results, 'issue', 'bao_issue')}"
                    f"; Transit signing runs in OpenBao, not counted here (next row); "
                    f"{one_worker}; profile-issue.txt"),
        Ratio("tokend + OpenBao Transit CPU per Issue ÷ OpenBao issue (honesty row)",
              _div(_rps(issue), _rps(bao_issue)), 2.0, basis="cpu",
              by_cpu=_div(_cpu(bao_issue), both),
              limit=f"not the target's basis (the row above is): tokend {issue_cpu} + OpenBao "
                    f"during tokend's Issue {transit_cpu} = {_fmt(both)} µs CPU/call vs OpenBao "
                    f"issue {_cpu(bao_issue)}"),
    ]
    for row in results.get("scaling") or []:
        if row.get("workers", 1) > 1:
            out.append(Ratio(f"tokend Verify ÷ OpenBao introspect, {row['workers']} workers "
                             "(by calls/s)", _div(_rps(row.get("verify")), _rps(introspect)),
                             None, limit="the load generator, OpenBao and the workers share "
                                         "2 cores"))
    return out


def verify_many_ratios(results: dict[str, Any]) -> list[Ratio]:
    """Tokens verified per server CPU-second: VerifyMany against one unary Verify per
    token, and against OpenBao introspect per call."""
    transit = results.get("transit") or {}
    verify = transit.get("verify") or {}
    introspect = (results.get("openbao") or {}).get("introspect") or {}
    out = []
    for batch in (16, 64):
        many = transit.get(f"verify_many_{batch}")
        if many is None:
            continue
        per_token = many.get("server_cpu_us_per_token")
        note = UNIMPLEMENTED if many.get("unimplemented") else (
            f"{per_token} µs CPU per token ({_fmt(1e6 / per_token if per_token else None)} "
            f"tokens per CPU-second) vs unary {_cpu(verify)} µs per call "
            f"({_fmt(1e6 / _cpu(verify) if _cpu(verify) else None)})"
            + _per_round(results, f"verify_many_{batch}", "verify", "server_cpu_us_per_token"))
        value = None if many.get("unimplemented") else _div(many.get("tokens_per_s"),
                                                            _rps(verify))
        out.append(Ratio(f"VerifyMany (batch {batch}) tokens per server CPU-second ÷ unary "
                         "Verify's", value, None, basis="cpu",
                         by_cpu=None if value is None else _div(_cpu(verify), per_token),
                         limit=note))
        value = None if many.get("unimplemented") else _div(many.get("tokens_per_s"),
                                                            _rps(introspect))
        out.append(Ratio(f"VerifyMany (batch {batch}) per token ÷ OpenBao introspect per call",
                         value, 1.0, basis="cpu",
                         by_cpu=None if value is None else _div(_cpu(introspect), per_token),
                         limit=UNIMPLEMENTED if many.get("unimplemented") else
                         f"{per_token} vs {_cpu(introspect)} µs CPU; the Verify target "
                         "applied to the batched path"))
    return out


def scaling_ratios(results: dict[str, Any]) -> list[Ratio]:
    """Throughput with N workers ÷ 1 worker (no target: 2 shared cores bound it)."""
    rows = {row["workers"]: row for row in results.get("scaling") or []}
    one = rows.get(1)
    out = []
    if not one:
        return out
    for workers, row in sorted(rows.items()):
        if workers == 1:
            continue
        for name in ("verify", "issue"):
            out.append(Ratio(f"{name.capitalize()} calls/s, {workers} workers ÷ 1 worker",
                             _div(_rps(row.get(name)), _rps(one.get(name))), None,
                             by_cpu=_div(_cpu(one.get(name)), _cpu(row.get(name))),
                             limit=SCALING_NOTE if workers > 2 else
                             "2 cores, shared with the load generator and OpenBao"))
    return out


SCALING_NOTE = ("this machine has 2 cores, shared with the load generator and OpenBao: past "
                "2 workers the figure is a model (more processes than cores), not scaling")


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
        target = "-" if r.target is None else f"{sign} {r.target:g}"
        if r.target is not None and r.basis == "cpu":
            target += " (by CPU)"
        lines.append(f"| {r.name} | {_fmt(r.value)} | {_fmt(r.by_cpu)} | {target} "
                     f"| {met} | {r.limit} |")
    lines += ["", "\"measured\" divides calls per second; \"by server CPU\" divides the server's "
              "CPU time per call the other way round (what one dedicated core would do). A "
              "target counts as met only when both views meet it (a load generator that "
              "cannot saturate the server on Health/Check makes the first view flatter "
              "tokend, see \"server cores busy\" below), except where it says \"(by CPU)\": "
              "issue 17 defines its targets against OpenBao by server CPU per call, so that "
              "view alone decides those. The service figures are medians over alternating "
              "rounds (below); \"per round\" gives the min-max of the same ratio taken round "
              "by round."]
    lines += ["", "## In-process verification (ops per CPU-second, one thread)", "",
              "| alg | raw cryptography | LocalVerifier | jwcrypto | PyJWT | joserfc |",
              "|---|---|---|---|---|---|"]
    for row in results.get("crypto", []):
        cells = [f"{_fmt(row['ops_per_s'][k])} ({row['ratio_to_raw'][k]:.2f})"
                 for k in ("raw", "LocalVerifier", *PEERS)]
        lines.append(f"| {row['alg']} | " + " | ".join(cells) + " |")
    lines += verifier_lines(results)
    transit = results.get("transit") or {}
    lines += _rounds_lines(results)
    lines += ["", "## Services, single runs (closed loop, 64 calls in flight unless open loop; "
              "latency in µs)", "",
              "| server | phase | calls/s | ÷ health | p50 | p99 | server CPU µs/call "
              "| server cores busy | errors |", "|---|---|---|---|---|---|---|---|---|"]
    lines += _phase_rows("tokend transit, open loop (median)",
                         {k: v for k, v in (transit.get("latency") or {}).items() if k != "runs"},
                         health_rps(transit))
    kv = results.get("kv") or {}
    lines += _phase_rows("tokend kv", kv, health_rps(kv))
    pool = transit.get("pool")
    if pool:
        cycled = (" (cycled: more than twice the 4096-entry cache, so every unique Verify "
                  "misses it)" if pool.get("outruns_cache") else
                  " (**fewer than twice the 4096-entry cache: cycling hits it**)")
        bao_tokens = (results.get("openbao") or {}).get("tokens")
        lines += ["", f"Verify and VerifyMany used {pool['tokens']} distinct tokens issued in "
                  f"the run{cycled}; OpenBao introspect {bao_tokens} distinct identity tokens, "
                  "in turn."]
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


ROUND_STEPS = {"health": "tokend Health/Check (floor)", "verify": "tokend Verify, unique",
               "verify_repeat": "tokend Verify, repeated token", "issue": "tokend Issue (Transit)",
               "verify_many_16": "tokend VerifyMany, batch 16",
               "verify_many_64": "tokend VerifyMany, batch 64",
               "bao_issue": "OpenBao identity-token issue",
               "bao_introspect": "OpenBao introspect"}


def _rounds_lines(results: dict[str, Any]) -> list[str]:
    """The alternating rounds: each phase's median and min-max over the rounds."""
    transit = results.get("transit") or {}
    bao = results.get("openbao") or {}
    plan = transit.get("rounds_plan") or {}
    phases = {**{k: v for k, v in transit.items() if k in ROUND_STEPS},
              **{f"bao_{k}": v for k, v in bao.items() if f"bao_{k}" in ROUND_STEPS}}
    if not phases:
        return []
    lines = ["", f"## Services in alternating rounds ({plan.get('rounds', '?')} rounds of "
             f"{plan.get('seconds', '?')} s per phase, rotating order; medians, min-max)", "",
             "| phase | calls/s | tokens/s | server CPU µs/call | µs/token | OpenBao CPU µs "
             "during it | server cores busy | p50 / p99 µs | errors |",
             "|---|---|---|---|---|---|---|---|---|"]
    for step, label in ROUND_STEPS.items():
        row = phases.get(step)
        if row is None:
            continue
        if row.get("unimplemented"):
            lines.append(f"| {label} | UNIMPLEMENTED | - | - | - | - | - | - | - |")
            continue
        cells = " | ".join(_spread(row, key) for key in (
            "rps", "tokens_per_s", CPU, "server_cpu_us_per_token", "peer_cpu_us_per_call"))
        lines.append(
            f"| {label} | {cells} | {_fmt(row.get('server_cores_busy'))} "
            f"| {_fmt(row.get('p50_us'))} / {_fmt(row.get('p99_us'))} | {row.get('errors', 0)} |")
    lines += ["", "tokend has one worker; \"server\" for OpenBao's rows is the OpenBao process "
              "(which also signs tokend's Issue over Transit: its CPU during tokend's Issue is "
              "the \"OpenBao CPU during it\" column)."]
    return lines


def _spread(row: dict[str, Any], key: str) -> str:
    """The median, and the min-max over the rounds when they differ."""
    value, values = row.get(key), (row.get("spread") or {}).get(key)
    if value is None:
        return "-"
    if not values or values[0] == values[1]:
        return _fmt(value)
    return f"{_fmt(value)} ({_fmt(values[0])}-{_fmt(values[1])})"


def _scaling_lines(rows: list[dict[str, Any]]) -> list[str]:
    if not rows:
        return []
    lines = ["", "## Scaling: tokend serve --workers N (processes sharing the port, SO_REUSEPORT)",
             "", "| workers | phase | calls/s (tokens/s) | server cores busy | server CPU µs/call "
             "(/token) | errors | what bounds it |", "|---|---|---|---|---|---|---|"]
    for row in rows:
        for name in ("health", "issue", "verify", "verify_repeat", "verify_many_64"):
            phase = row.get(name)
            if not phase:
                continue
            if phase.get("unimplemented"):
                lines.append(f"| {row['workers']} | {name} | UNIMPLEMENTED | - | - | - | - |")
                continue
            tokens = f" ({_fmt(phase['tokens_per_s'])})" if "tokens_per_s" in phase else ""
            per_token = (f" ({phase['server_cpu_us_per_token']})"
                         if phase.get("server_cpu_us_per_token") else "")
            lines.append(f"| {row['workers']} | {name} | {_fmt(_rps(phase))}{tokens} "
                         f"| {_fmt(phase.get('server_cores_busy'))} "
                         f"| {_fmt(phase.get(CPU))}{per_token} | {phase.get('errors', 0)} "
                         f"| {_bound(name, row['workers'])} |")
    lines += ["", "Two cores hold the load generator, OpenBao and every tokend worker. With one "
              "worker a phase is bound by that worker's event loop, one core of Python "
              "(gRPC's C-core threads add a little beside it, hence cores busy above 1); "
              "with two, by the machine's two cores, which the load generator (and for Issue "
              "OpenBao's Transit signing) share. **Past 2 workers the figures are a model, not "
              "scaling**: more processes than cores, so they show the cost of context switches "
              "and shared cores, and say nothing about a machine with 4 cores."]
    return lines


def _bound(phase: str, workers: int) -> str:
    if workers > 2:
        return "a model: more workers than the 2 cores"
    if phase == "issue":
        return ("1 worker's event loop + the OpenBao Transit round trip" if workers == 1 else
                "2 shared cores: workers + OpenBao Transit signing + load generator")
    return ("1 worker: its event loop (Python) plus gRPC's C-core threads" if workers == 1 else
            "2 shared cores: workers + load generator")


def _shown(ratio: Ratio) -> float | None:
    """The view a row's target is judged on: CPU per call for issue 17's rows."""
    return ratio.by_cpu if ratio.basis == "cpu" else ratio.value


def chart(results: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, (left, right) = plt.subplots(1, 2, figsize=(14, 6.5),
                                         gridspec_kw={"width_ratios": [3, 2]})
    shown = [r for r in ratios(results) if r.unit == "x" and r.target and _shown(r) is not None]
    names = [r.name for r in shown][::-1]
    values = [_shown(r) / r.target for r in shown][::-1]
    colors = ["#2e7d32" if r.met else "#c62828" for r in shown][::-1]
    left.barh(names, values, color=colors)
    left.axvline(1.0, color="black", linewidth=1)
    left.set_xlabel("measured ÷ target (≥ 1 meets the target)")
    left.set_title("Ratios against their targets")
    for index, ratio in enumerate(shown[::-1]):
        left.text(values[index], index, f" {_shown(ratio):.2f} / {ratio.target:g}",
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


def dated_results(results: dict[str, Any], out: Path, part: str) -> dict[str, Path]:
    """Writes results/<part>-<date>.json (a `--only` part's figures; latest.* left alone)
    and returns it with the path its table goes to, <part>-<date>.md."""
    out.mkdir(parents=True, exist_ok=True)
    stem = f"{part}-{str(results.get('run', {}).get('date', 'undated'))[:10]}"
    paths = {"json": out / f"{stem}.json", "md": out / f"{stem}.md"}
    paths["json"].write_text(json.dumps(results, indent=1, default=str) + "\n")
    return paths


def dated_heading(results: dict[str, Any], part: str, title: str) -> list[str]:
    """The first lines of a `--only` part's table: its title, then when, how and what ran
    it, then "Machine: <cpu>, <n> cores" for the part's own description to go on."""
    run = results.get("run", {})
    machine = run.get("machine", {})
    quick = " --quick" if run.get("mode") == "quick" else ""
    return [f"# tokend benchmark: {title}", "",
            f"{run.get('date')} · `scripts/bench --only {part}{quick}` "
            f"· commit {run.get('commit')} · {run.get('seconds')} s", "",
            f"Machine: {machine.get('cpu')}, {machine.get('cores')} cores"]


def write_verifiers(results: dict[str, Any], out: Path) -> dict[str, Path]:
    """`--only verifiers`: results/verifiers-<date>.{json,md}, latest.* left alone."""
    paths = dated_results(results, out, "verifiers")
    machine = results.get("run", {}).get("machine", {})
    *lines, first = dated_heading(results, "verifiers", "local verifiers per language")
    lines += [f"{first}, {machine.get('memory_gib')} GiB. Shared and noisy: read the ratios, "
              "not the rates.", "",
              "| figure | measured | target | met | what bounds it |", "|---|---|---|---|---|"]
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
             "|denylist|transit|requests|responses|verify_cache"
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
