"""scripts/bench: tokend against its floors and its peers, in one run on this machine.

Starts OpenBao (`bao server -dev`) and tokend processes on loopback, drives them with a
load generator in a separate process (bench/loadgen.py), and writes one table
(bench/results/latest.md), the raw figures (latest.json) and a chart (latest.png).

Every figure that matters is a ratio of two rates measured in the same run, so the
noise of a shared machine cancels as far as it can:

- LocalVerifier (and jwcrypto, PyJWT, joserfc) ÷ raw `cryptography` verify, per alg;
- each language's local verifier ÷ that language's raw ES256 verify (bench/verifiers.py:
  Python, Go, Node.js, Java);
- Verify RPC ÷ gRPC Health/Check on the same server, and ÷ the floor
  1/(1/health + 1/raw ES256 verify);
- Issue RPC ÷ Health/Check, with Transit and with kv custody;
- tokend Issue/Verify ÷ OpenBao's own identity-token issue/introspect, same OpenBao, by
  server CPU per call (issue 17), with OpenBao's Transit CPU during Issue shown beside;
- VerifyMany's tokens per server CPU-second ÷ unary Verify's, and ÷ OpenBao introspect's.

The service phases run in alternating rounds with medians (bench/rounds.py). Every phase
is bounded in count and in time. `--quick` takes a few minutes, the default run longer,
`--soak` adds five minutes at half load watching RSS.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import datetime as dt
import functools
import json
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench import event_loop as event_loop_cost
from bench import report, rounds, servers, verifiers
from bench import tracing as tracing_cost
from tests.support.bao import BaoDevServer
from tokend.tokens.verify_cache import VERIFIED_CACHE_ENTRIES

RESULTS = servers.ROOT / "bench" / "results"
# Built by scripts/bench from bench/loadgen-go (module versions pinned in its go.sum).
LOADGEN_GO = servers.ROOT / ".tools" / "bench" / "loadgen"


@dataclass(frozen=True)
class Plan:
    """Seconds per phase (each is also capped by a count), and how many rounds."""

    crypto: float
    verifiers: float
    health: float
    issue: float
    latency: float
    scaling: float
    rounds: int  # alternating rounds of the service phases (bench.rounds)
    step: float  # seconds of one phase in one round
    pool: float  # at most this long to issue the token pool
    latency_runs: int  # open-loop runs per RPC; the median p99 is reported
    soak: float = 0.0

    @classmethod
    def for_mode(cls, quick: bool, soak: float) -> Plan:
        if quick:
            return cls(crypto=1.5, verifiers=3, health=3, issue=3, latency=3, scaling=2.5,
                       rounds=3, step=2.0, pool=60, latency_runs=1, soak=soak)
        return cls(crypto=4, verifiers=10, health=6, issue=8, latency=5, scaling=4,
                   rounds=5, step=4.0, pool=90, latency_runs=3, soak=soak)

    def override(self, args: argparse.Namespace) -> Plan:
        """--rounds and --round-seconds, for short tries while working."""
        changes = {key: value for key, value in (("rounds", args.rounds),
                                                 ("step", args.round_seconds))
                   if value is not None}
        return dataclasses.replace(self, **changes)


MAX_COUNT = 200_000  # no phase here comes close; the time bound ends them
CONCURRENCY = 64
CACHE = VERIFIED_CACHE_ENTRIES  # the verified-token cache (FIFO): the pool outruns it twice
POOL_TOKENS = 2 * CACHE + 1024
BAO_TOKENS = 2000  # distinct OpenBao identity tokens for introspect
BATCHES = (16, 64)  # VerifyMany sizes in the rounds


class Bench:
    """One run: the servers it started, the plan, the figures gathered so far."""

    def __init__(self, args: argparse.Namespace, work: Path) -> None:
        self.args = args
        self.plan = Plan.for_mode(args.quick, args.soak_seconds if args.soak else 0.0
                                  ).override(args)
        self.work = work
        self.results: dict[str, Any] = {}
        self.pool_info: dict[str, Any] = {}
        # Per server and pool: the token the next cycling phase begins at (load()).
        self.cursors: dict[tuple[str, str], int] = {}

    def log(self, message: str) -> None:
        print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)

    # -- load generator ----------------------------------------------------------------

    def load(self, target: servers.Tokend | str, rpc: str, seconds: float,
             **options: Any) -> dict[str, Any]:
        """Run one bench.loadgen process and return its figures."""
        if isinstance(target, servers.Tokend):
            addr, pids = target.grpc_addr, target.pids
        else:
            addr, pids = target, options.pop("pids", [])
        # A cycling phase goes on where the last one on the same server stopped: the pool
        # then outruns the verified-token cache across phases too, not only within one.
        cursor = ((addr, str(options["tokens"])) if options.get("cycle") and
                  options.get("tokens") and rpc in ("verify", "verify-many", "bao-introspect")
                  else None)
        if cursor is not None:
            options["start"] = self.cursors.get(cursor, 0)
        # gRPC phases use the Go load generator when it is built: a Python client spends
        # about as much CPU per call as the server, so it cannot saturate it on 2 cores.
        go = LOADGEN_GO.exists() and not rpc.startswith("bao-") and not self.args.python_loadgen
        program = [str(LOADGEN_GO)] if go else [sys.executable, "-m", "bench.loadgen"]
        command = [*program, "--addr", addr, "--rpc", rpc,
                   "--max-seconds", str(seconds),
                   "--max-count", str(options.pop("max_count", MAX_COUNT)),
                   "--concurrency", str(options.pop("concurrency", CONCURRENCY))]
        for pid in pids:
            command += ["--server-pid", str(pid)]
        for name, value in options.items():
            flag = "--" + name.replace("_", "-")
            command += [flag] if value is True else [flag, str(value)]
        done = subprocess.run(command, cwd=servers.ROOT, capture_output=True, text=True,
                              timeout=seconds + 120, check=False)
        if done.returncode != 0:
            raise RuntimeError(f"load generator failed ({rpc}): {done.stderr[-2000:]}")
        result = servers.loads_json_line(done.stdout)
        if cursor is not None and "next_token" in result:
            self.cursors[cursor] = int(result["next_token"])
        if pids and result["seconds"]:
            result["server_cores_busy"] = round(result["server_cpu_s"] / result["seconds"], 2)
        per_call = result.get("server_cpu_us_per_call")
        cpu = f"  server cpu {per_call} us/call" if pids and per_call else ""
        self.log(f"{rpc:15s} {result['rps']:9.1f}/s  p50 {result['p50_us']} us  "
                 f"p99 {result['p99_us']} us  errors {result['errors']}{cpu}"
                 + (f"  ({result['first_error']})" if result["errors"] else ""))
        return result

    # -- phases ------------------------------------------------------------------------

    def crypto(self) -> None:
        self.log("in-process verification: LocalVerifier and peers vs raw cryptography")
        self.results["crypto"] = _crypto("--seconds", str(self.plan.crypto))
        for row in self.results["crypto"]:
            self.log(f"{row['alg']}: {row['ratio_to_raw']}")

    def local_verifiers(self) -> None:
        """Each language's local verifier ÷ that language's raw ES256 verify (issue 12)."""
        self.log("local verifiers per language: verifier ÷ raw ES256 verify, same run")
        # Many short rounds: the median shrugs off a neighbour's burst (9 in --quick).
        rounds = 9 if self.args.quick else 15
        self.results["verifiers"] = verifiers.run(verifiers.LANGUAGES, self.plan.verifiers,
                                                  rounds=rounds, tokens=64, log=self.log)

    def raw_es256(self) -> float:
        """Raw ES256 verifications per CPU-second, measured now: the floor of the Verify
        phase just run, taken under the same neighbours."""
        row = _crypto("--algs", "ES256", "--impls", "raw", "--seconds", "1.5", "--rounds", "3")
        return float(row[0]["ops_per_s"]["raw"])

    def tokend_transit(self, bao: BaoDevServer) -> None:
        """The Transit tokend and OpenBao's identity tokens, in alternating rounds."""
        self.log("tokend, Transit custody (ES256), 1 worker, and OpenBao identity tokens")
        identity = servers.setup_bao_identity(bao)
        with self.tokend(bao, "bench-es256", workers=1) as running:
            pool = self.token_pool(running)
            bao_tokens = self.bao_tokens(bao, identity)
            samples = rounds.alternate(self.plan.rounds, {
                "service": self.service_steps(running, bao, identity, pool, bao_tokens)})
            self.results["transit"], self.results["openbao"] = _split(samples["service"])
            transit = self.results["transit"]
            transit["pool"] = self.pool_info
            transit["rounds_plan"] = {"rounds": self.plan.rounds, "seconds": self.plan.step}
            self.results["openbao"]["tokens"] = sum(1 for _ in bao_tokens.open())
            transit["raw_es256_now"] = self.raw_es256()
            transit["latency"] = self.latency_phases(running, transit, pool)
        self.log_rounds(samples["service"])

    def token_pool(self, running: servers.Tokend) -> Path:
        """Tokens for Verify: issued by this run's Transit tokend, more than twice the
        verified-token cache (FIFO), so that cycling over them never hits the cache.
        Every tokend on the same Transit key verifies them."""
        pool = self.work / "tokens.txt"
        if not pool.exists():
            self.load(running, "issue", self.plan.pool, save_tokens=pool,
                      max_count=self.args.pool_tokens, warmup=0)
            count = sum(1 for _ in pool.open())
            self.pool_info = {"tokens": count, "cycled": True,
                              "outruns_cache": count >= 2 * CACHE}
            if count < 2 * CACHE:
                self.log(f"only {count} tokens issued: Verify will hit the {CACHE}-entry cache")
        return pool

    def bao_tokens(self, bao: BaoDevServer, identity: servers.BaoIdentity) -> Path:
        """Many distinct OpenBao identity tokens, issued concurrently, for introspect."""
        path = self.work / "bao-tokens.txt"
        self.load(bao.addr, "bao-issue", 60, max_count=self.args.bao_tokens, concurrency=32,
                  warmup=0, bao_token=identity.entity_token, bao_role=identity.role,
                  save_tokens=path)
        return path

    def service_steps(self, running: servers.Tokend, bao: BaoDevServer,
                      identity: servers.BaoIdentity, pool: Path, bao_tokens: Path
                      ) -> dict[str, rounds.Step]:
        """One round's phases: the floor, tokend's RPCs, OpenBao's identity tokens."""
        seconds, warm = self.plan.step, 0.3
        load = functools.partial(self.load, running)
        verify = {"tokens": pool, "cycle": True, "warmup": warm}
        bao_pids = [bao.pid] if bao.pid else []
        steps: dict[str, rounds.Step] = {
            "health": functools.partial(load, "health", seconds, warmup=warm),
            "verify": functools.partial(load, "verify", seconds, **verify),
            "verify_repeat": functools.partial(load, "verify-repeat", seconds, tokens=pool,
                                               warmup=warm),
            # OpenBao's CPU is read too: the Transit signing tokend asks it for.
            "issue": functools.partial(load, "issue", seconds, warmup=warm,
                                       **({"peer_pid": bao.pid} if bao.pid else {})),
        }
        for batch in BATCHES:
            steps[f"verify_many_{batch}"] = functools.partial(
                load, "verify-many", seconds, batch=batch, concurrency=16, **verify)
        steps["bao_issue"] = functools.partial(
            self.load, bao.addr, "bao-issue", seconds, pids=bao_pids, concurrency=32,
            warmup=warm, bao_token=identity.entity_token, bao_role=identity.role)
        steps["bao_introspect"] = functools.partial(
            self.load, bao.addr, "bao-introspect", seconds, pids=bao_pids, concurrency=32,
            warmup=warm, tokens=bao_tokens, cycle=True, bao_token=bao.token)
        return steps

    def log_rounds(self, samples: dict[str, list[dict[str, Any]]]) -> None:
        for step, rows in samples.items():
            figures = rounds.figures(rows)
            if figures.get("unimplemented"):
                self.log(f"{step}: UNIMPLEMENTED by this tokend")
                continue
            per_token = (f"  CPU/token {figures['server_cpu_us_per_token']} us "
                         f"{figures['spread'].get('server_cpu_us_per_token')}"
                         if "server_cpu_us_per_token" in figures else "")
            self.log(f"median {step:15s} {figures['rps']}/s "
                     f"{figures['spread'].get('rps')}  CPU/call "
                     f"{figures['server_cpu_us_per_call']} us "
                     f"{figures['spread'].get('server_cpu_us_per_call')}{per_token}")

    def tokend_kv(self, bao: BaoDevServer) -> None:
        self.log("tokend, kv custody (ES256), 1 worker")
        try:
            with self.tokend(bao, "bench-kv", workers=1,
                             vault={"custody": "kv", "create_key": True}) as running:
                plan = self.plan
                health = self.load(running, "health", plan.health)
                issue = self.load(running, "issue", plan.issue)
                self.results["kv"] = {"health": health, "issue": issue}
        except (RuntimeError, TimeoutError) as exc:  # this tree may predate kv custody
            self.log(f"kv custody not measured: {exc}")
            self.results["kv"] = {"skipped": str(exc)[:500]}

    def latency_phases(self, running: servers.Tokend, figures: dict[str, Any], pool: Path
                       ) -> dict[str, Any]:
        """Open loop at half of the closed-loop maximum (the rounds' median): latency a
        caller sees at moderate load, with queueing counted from each call's scheduled
        start. Several runs alternate; the median p99 is reported."""
        verify_rate = round((figures["verify"]["rps"] or 2) * 0.5)
        issue_rate = round((figures["issue"]["rps"] or 2) * 0.5)
        seconds = self.plan.latency
        samples = rounds.alternate(self.plan.latency_runs, {"latency": {
            "verify": functools.partial(self.load, running, "verify", seconds, tokens=pool,
                                        cycle=True, rate=verify_rate, warmup=0,
                                        concurrency=256),
            "issue": functools.partial(self.load, running, "issue", seconds, rate=issue_rate,
                                       concurrency=256, warmup=0),
        }})["latency"]
        out = rounds.summary(samples)
        return {"verify": {**out["verify"], "rate": verify_rate},
                "issue": {**out["issue"], "rate": issue_rate}, "runs": samples}

    def scaling(self, bao: BaoDevServer) -> None:
        """Calls/s and server CPU per worker count: health, Issue, Verify, VerifyMany."""
        rows = []
        for workers in self.args.workers:
            self.log(f"scaling: {workers} worker(s)")
            with self.tokend(bao, "bench-es256", workers=workers) as running:
                pool = self.token_pool(running)
                seconds = self.plan.scaling
                row: dict[str, Any] = {"workers": workers}
                # More connections than workers, so SO_REUSEPORT spreads them out.
                opts = {"channels": max(4, 4 * workers)}
                row["health"] = self.load(running, "health", seconds, **opts)
                row["issue"] = self.load(running, "issue", seconds, **opts)
                row["verify"] = self.load(running, "verify", seconds, tokens=pool, cycle=True,
                                          **opts)
                row["verify_repeat"] = self.load(running, "verify-repeat", seconds,
                                                 tokens=pool, **opts)
                row["verify_many_64"] = self.load(running, "verify-many", seconds,
                                                  tokens=pool, cycle=True, batch=64,
                                                  concurrency=16, **opts)
                rows.append(row)
        self.results["scaling"] = rows

    def soak(self, bao: BaoDevServer) -> None:
        """Half load for five minutes: Verify of many tokens plus Issue, RSS sampled."""
        figures = self.results["transit"]
        verify_rate = round((figures["verify"]["rps"] or 2) * 0.4)
        issue_rate = round((figures["issue"]["rps"] or 10) * 0.1)
        seconds = self.plan.soak
        self.log(f"soak: {seconds:.0f} s at verify {verify_rate}/s + issue {issue_rate}/s")
        with self.tokend(bao, "bench-es256", workers=1) as running:
            pool = self.work / "soak-tokens.txt"
            self.load(running, "issue", self.plan.issue, save_tokens=pool)
            samples: list[tuple[float, int]] = []
            stop = threading.Event()
            sampler = threading.Thread(target=_sample_rss, args=(running, samples, stop, 5.0))
            sampler.start()
            try:
                jobs = [
                    ("verify", {"tokens": pool, "cycle": True, "rate": verify_rate,
                                "warmup": 0, "concurrency": 256}),
                    ("issue", {"rate": issue_rate, "warmup": 0, "concurrency": 256}),
                ]
                outcomes = _parallel(self, running, jobs, seconds)
            finally:
                stop.set()
                sampler.join()
        self.results["soak"] = {"seconds": seconds, "verify_rate": verify_rate,
                                "issue_rate": issue_rate, "rss": samples, **outcomes}

    def profiles(self, bao: BaoDevServer) -> None:
        """Where a phase's server time goes: cProfile of the event loop, one tokend per
        phase, written next to the results (profile-<phase>.txt)."""
        pool = self.work / "tokens.txt"
        if not pool.exists():  # --only profiles: tokens to verify, issued first
            with self.tokend(bao, "bench-es256", workers=1) as running:
                self.token_pool(running)
        for rpc in ("health", "verify-repeat", "verify", "verify-many", "issue"):
            self.log(f"profiling tokend under {rpc}")
            stats = self.work / f"profile-{rpc}.prof"
            with servers.tokend_running(bao, self.work, "bench-es256", "ES256", 1,
                                        profile_to=stats) as running:
                options: dict[str, Any] = {"tokens": pool, "warmup": 0}
                if rpc in ("verify", "verify-many"):
                    options["cycle"] = True
                if rpc == "verify-many":
                    options.update(batch=64, concurrency=16)
                figures = self.load(running, rpc, self.plan.scaling,
                                    **(options if rpc.startswith("verify") else {}))
            report.write_profile(stats, self.args.out / f"profile-{rpc}.txt", rpc, figures)

    def tracing(self, bao: BaoDevServer) -> None:
        """Verify and Issue on two tokends, tracing off and on, in alternating rounds."""
        rounds, seconds = (4, 2.0) if self.args.quick else (6, 4.0)
        self.log(f"tracing: off vs on, {rounds} rotating rounds of {seconds:g} s per RPC")
        pool = self.work / "tracing-tokens.txt"
        with tracing_cost.sink() as (receiver, endpoint), \
                tracing_cost.otel_environment(endpoint), contextlib.ExitStack() as stack:
            running = {}
            for side, variables in tracing_cost.SIDES.items():
                directory = self.work / f"tracing-{side}"
                directory.mkdir()
                extra = {} if variables is None else {"tracing": {"enabled": True}}
                with tracing_cost.sampler(variables):
                    running[side] = stack.enter_context(servers.tokend_running(
                        bao, directory, tracing_cost.KEY, "ES256", 1, extra))
            self.load(running["off"], "issue", seconds, save_tokens=pool)
            figures = tracing_cost.alternate(self.load, running, rounds, seconds, pool)
        self.results["tracing"] = {**figures, "rounds": rounds, "seconds": seconds,
                                   "spans_exported": receiver.spans,
                                   "in_process": tracing_cost.in_process()}
        self.log(f"tracing code alone, CPU us/call: {self.results['tracing']['in_process']}")
        for phase in tracing_cost.PHASES:
            for side in [name for name in figures[phase] if name not in ("off", "rounds")]:
                row = figures[phase][side]
                self.log(f"tracing {phase} {side}: calls/s ÷ off {row['rps_ratio_to_off']}, "
                         f"CPU/call ÷ off {row['cpu_per_call_ratio_to_off']}")

    def event_loop(self, bao: BaoDevServer) -> None:
        """Health, Verify and Issue on two tokends, asyncio and uvloop, alternating."""
        plan = self.plan
        self.log(f"event loop: asyncio vs uvloop, {plan.rounds} rotating rounds of "
                 f"{plan.step:g} s per RPC")
        with contextlib.ExitStack() as stack:
            running = {}
            for loop in event_loop_cost.LOOPS:
                directory = self.work / f"event-loop-{loop}"
                directory.mkdir()
                # servers.start_tokend drops TOKEND_* variables: the setting goes in the file.
                running[loop] = stack.enter_context(servers.tokend_running(
                    bao, directory, event_loop_cost.KEY, "ES256", 1, {"event_loop": loop}))
            pool = self.token_pool(running["uvloop"])
            figures = event_loop_cost.alternate(self.load, running, plan.rounds, plan.step,
                                                pool)
        self.results["event_loop"] = {**figures, "rounds": plan.rounds, "seconds": plan.step,
                                      "pool": self.pool_info}
        for phase in event_loop_cost.PHASES:
            row = figures[phase]["uvloop"]
            self.log(f"event loop {phase}: uvloop CPU/call ÷ asyncio "
                     f"{row['cpu_per_call_ratio_to_asyncio']}, calls/s ÷ asyncio "
                     f"{row['rps_ratio_to_asyncio']}")

    # -- servers -----------------------------------------------------------------------

    @contextlib.contextmanager
    def tokend(self, bao: BaoDevServer, key: str, workers: int,
               **extra: Any) -> Iterator[servers.Tokend]:
        with servers.tokend_running(bao, self.work, key, "ES256", workers, extra) as running:
            yield running


def _crypto(*args: str) -> list[dict[str, Any]]:
    done = subprocess.run([sys.executable, "-W", "ignore", "-m", "bench.crypto", *args],
                          cwd=servers.ROOT, capture_output=True, text=True, timeout=600,
                          check=True)
    return list(json.loads(done.stdout)["crypto"])


def _split(samples: dict[str, list[dict[str, Any]]]
           ) -> tuple[dict[str, Any], dict[str, Any]]:
    """The rounds' medians as tokend's figures and OpenBao's, and every round's rows."""
    figures = {step: rounds.figures(rows) for step, rows in samples.items()}
    transit: dict[str, Any] = {k: v for k, v in figures.items() if not k.startswith("bao_")}
    openbao = {k.removeprefix("bao_"): v for k, v in figures.items() if k.startswith("bao_")}
    transit["rounds"] = samples
    return transit, openbao


def _sample_rss(running: servers.Tokend, samples: list[tuple[float, int]],
                stop: threading.Event, every: float) -> None:
    started = time.monotonic()
    while not stop.is_set():
        with contextlib.suppress(OSError):
            samples.append((round(time.monotonic() - started, 1), running.rss_bytes()))
        stop.wait(every)


def _parallel(bench: Bench, running: servers.Tokend, jobs: list[tuple[str, dict[str, Any]]],
              seconds: float) -> dict[str, Any]:
    """Several load generators at once (each its own process), for the soak."""
    outcomes: dict[str, Any] = {}
    threads = [threading.Thread(target=lambda n=name, o=opts: outcomes.__setitem__(
        n, bench.load(running, n, seconds, **o))) for name, opts in jobs]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return outcomes


def _workers(text: str) -> list[int]:
    values = [int(part) for part in text.split(",") if part.strip()]
    if not values or any(v < 1 or v > 8 for v in values):
        raise argparse.ArgumentTypeError("--workers takes counts from 1 to 8, e.g. 1,2")
    return values


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="scripts/bench", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="short phases, 3 rounds")
    parser.add_argument("--soak", action="store_true",
                        help="add a 5-minute soak at half load, watching RSS")
    parser.add_argument("--soak-seconds", type=float, default=300.0,
                        help="length of the soak (default 300)")
    parser.add_argument("--workers", type=_workers, default=[1, 2, 4],
                        help="tokend process counts for the scaling phase (default 1,2,4)")
    parser.add_argument("--rounds", type=int,
                        help="alternating rounds of the service phases (default 5, --quick 3)")
    parser.add_argument("--round-seconds", type=float,
                        help="seconds per phase and round (default 4, --quick 2)")
    parser.add_argument("--pool-tokens", type=int, default=POOL_TOKENS,
                        help=f"tokens issued for Verify (default {POOL_TOKENS}: more than "
                             f"twice the {CACHE}-entry verified-token cache)")
    parser.add_argument("--bao-tokens", type=int, default=BAO_TOKENS,
                        help=f"distinct OpenBao identity tokens to introspect (default "
                             f"{BAO_TOKENS})")
    parser.add_argument("--out", type=Path, default=RESULTS,
                        help="where latest.{json,md,png} go (default bench/results)")
    parser.add_argument("--only", choices=["crypto", "service", "transit", "kv", "profiles",
                                           "verifiers", "tracing", "event-loop"],
                        help="run one part: the in-process figures, or the services; "
                             "transit/kv: only that tokend's phases, figures printed as "
                             "JSON, no table (for quick comparisons while working); "
                             "profiles: only results/profile-*.txt; verifiers: only the "
                             "per-language local verifier rows, into "
                             "results/verifiers-<date>.{md,json} (latest.* untouched); "
                             "tracing: Verify and Issue with tracing off vs on, alternating, "
                             "into results/tracing-<date>.{md,json}; event-loop: health, "
                             "Verify and Issue on asyncio vs uvloop, alternating, into "
                             "results/event-loop-<date>.{md,json}")
    parser.add_argument("--python-loadgen", action="store_true",
                        help="drive gRPC with bench/loadgen.py even when the Go one is built")
    parser.add_argument("--render", action="store_true",
                        help="only redo latest.md and latest.png from latest.json")
    parser.add_argument("--profile", action="store_true",
                        help="also profile tokend per phase (bench/results/profile-*.txt)")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.render:  # the table and chart again, from the figures of the last run
        paths = report.write(json.loads((args.out / "latest.json").read_text()), args.out)
        print(paths["md"].read_text())
        return 0
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="tokend-bench-") as tmp:
        bench = Bench(args, Path(tmp))
        bench.results["run"] = {
            "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            "mode": "quick" if args.quick else "full", "soak": args.soak,
            "machine": servers.describe_machine(), "commit": _commit(),
            "loadgen": ("bench/loadgen-go (Go, separate process)"
                        if LOADGEN_GO.exists() and not args.python_loadgen
                        else "bench/loadgen.py (Python, separate process)"),
        }
        if args.only in ("transit", "kv"):
            return _one_tokend(bench, args.only)
        if args.only == "verifiers":
            bench.local_verifiers()
            bench.results["run"]["seconds"] = round(time.monotonic() - started, 1)
            paths = report.write_verifiers(bench.results, args.out)
            print(paths["md"].read_text())
            return 0 if all("ratio" in row for row in bench.results["verifiers"]) else 1
        if args.only in ("tracing", "event-loop"):  # side by side on one key, dated files
            part = tracing_cost if args.only == "tracing" else event_loop_cost
            with BaoDevServer() as bao:
                servers.create_transit_key(bao, part.KEY, "ecdsa-p256")
                (bench.tracing if part is tracing_cost else bench.event_loop)(bao)
            bench.results["run"]["seconds"] = round(time.monotonic() - started, 1)
            print(part.write(bench.results, args.out)["md"].read_text())
            return 0
        if args.only == "profiles":
            with BaoDevServer() as bao:
                servers.create_transit_key(bao, "bench-es256", "ecdsa-p256")
                bench.profiles(bao)
            return 0
        if args.only != "service":
            bench.crypto()
            bench.local_verifiers()
        if args.only != "crypto":
            with BaoDevServer() as bao:
                servers.create_transit_key(bao, "bench-es256", "ecdsa-p256")
                bench.tokend_transit(bao)
                bench.tokend_kv(bao)
                bench.scaling(bao)
                if args.profile:
                    bench.profiles(bao)
                if args.soak:
                    bench.soak(bao)
        bench.results["run"]["seconds"] = round(time.monotonic() - started, 1)
        paths = report.write(bench.results, args.out)
    print(paths["md"].read_text())
    for kind, path in paths.items():
        print(f"{kind}: {path}", file=sys.stderr)
    return 0


def _one_tokend(bench: Bench, which: str) -> int:
    with BaoDevServer() as bao:
        servers.create_transit_key(bao, "bench-es256", "ecdsa-p256")
        (bench.tokend_transit if which == "transit" else bench.tokend_kv)(bao)
    print(json.dumps({which: bench.results[which], "openbao": bench.results.get("openbao")},
                     indent=1, default=str))
    return 0


def _commit() -> str:
    try:
        done = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=servers.ROOT,
                              capture_output=True, text=True, timeout=10, check=False)
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"],
                               cwd=servers.ROOT, capture_output=True, text=True, timeout=10,
                               check=False)
    except OSError:
        return "unknown"
    return done.stdout.strip() + ("+changes" if dirty.stdout.strip() else "")
