"""The Python load generator: a separate process that drives one phase, prints one JSON line.

bench/run.py uses it for the OpenBao (HTTP) phases, and for gRPC when the Go load
generator (bench/loadgen-go, same flags and output, far less CPU per call) is not built.

    python -m bench.loadgen --addr 127.0.0.1:50051 --rpc verify --tokens FILE \
        --concurrency 64 --max-count 20000 --max-seconds 8 --server-pid 1234

Closed loop by default (``--concurrency`` calls always in flight); with ``--rate`` it is
open loop (calls start on a fixed schedule, latency counts from the scheduled start, so
queueing in the server is not hidden). Every phase is bounded in count and in time. The
server's CPU time over the measured window is read from /proc for ``--server-pid``.

Targets: ``health`` (grpc.health.v1.Health/Check), ``jwks`` (GetJwks: the TokenService
path with next to no handler work), ``verify`` (a fresh token per call
from ``--tokens``, stopping when they run out), ``verify-repeat`` (the first token every
time), ``verify-many`` (``--batch`` tokens of the pool per VerifyMany call; figures per
token too), ``issue`` (``--save-tokens`` writes the issued tokens, one a line), and the
OpenBao identity-token endpoints ``bao-issue`` (``--save-tokens`` too) / ``bao-introspect``
(cycling over ``--tokens``) over HTTP. ``--peer-pid`` reports another process's CPU time
apart (the OpenBao that signs for tokend during Issue).
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import os
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from tokend_client.v1 import tokend_pb2 as pb
from tokend_client.v1 import tokend_pb2_grpc

Call = Callable[[int], Awaitable[Any]]
_TICKS = os.sysconf("SC_CLK_TCK")


def process_cpu_seconds(pids: list[int]) -> float:
    """User + system CPU of the processes and their reaped children, from /proc."""
    total = 0.0
    for pid in pids:
        with open(f"/proc/{pid}/stat", encoding="ascii") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
        # fields[11:13] are utime and stime (man 5 proc, counting from field 3).
        total += (int(fields[11]) + int(fields[12])) / _TICKS
    return total


class Pool:
    """Tokens for the verify phases; a shared cursor hands each call its own token.

    Without `cycle` the phase ends when the tokens run out; with it they come round
    again in the same order (the caller makes sure that is still a cache miss).
    """

    def __init__(self, path: Path | None, cycle: bool = False, start: int = 0) -> None:
        self.tokens = path.read_text().split() if path else []
        self._cursor = itertools.count(start % len(self.tokens) if self.tokens else 0)
        self._cycle = cycle and bool(self.tokens)
        self.next = 0  # the index after the last token taken

    def take(self) -> str | None:
        index = next(self._cursor)
        self.next = index + 1
        if self._cycle:
            return self.tokens[index % len(self.tokens)]
        return self.tokens[index] if index < len(self.tokens) else None


def _grpc_calls(args: argparse.Namespace, channels: list[grpc.aio.Channel], pool: Pool,
                issued: list[str]) -> Call:
    """The request function for a gRPC target; `worker` picks the channel."""
    health = [health_pb2_grpc.HealthStub(c) for c in channels]
    tokens = [tokend_pb2_grpc.TokenServiceStub(c) for c in channels]
    n = len(channels)
    if args.rpc == "health":
        request = health_pb2.HealthCheckRequest(service="")
        return lambda worker: health[worker % n].Check(request, timeout=10)
    if args.rpc == "jwks":  # a TokenService call that does almost nothing
        jwks = pb.GetJwksRequest()
        return lambda worker: tokens[worker % n].GetJwks(jwks, timeout=10)
    if args.rpc == "issue":
        async def issue(worker: int) -> None:
            request = pb.IssueRequest(subject=f"user-{worker}", audience=[args.audience],
                                      scopes=["orders:read"])
            response = await tokens[worker % n].Issue(request, timeout=10)
            if args.save_tokens:
                issued.append(response.access_token)
        return issue
    if args.rpc == "verify-many":
        return _verify_many(args, tokens, pool)
    first = pool.tokens[0] if pool.tokens else ""

    async def verify(worker: int) -> None:
        token = first if args.rpc == "verify-repeat" else pool.take()
        if token is None:
            raise StopAsyncIteration
        request = pb.VerifyRequest(token=token, audience=args.audience)
        response = await tokens[worker % n].Verify(request, timeout=10)
        if not response.valid:
            raise RuntimeError(f"token refused: {pb.Reason.Name(response.reason)}")
    return verify


def _verify_many(args: argparse.Namespace, stubs: list[Any], pool: Pool) -> Call:
    """`--batch` tokens per VerifyMany call; every result must be a valid response."""
    n = len(stubs)

    async def verify_many(worker: int) -> None:
        batch = [pool.take() for _ in range(args.batch)]
        if None in batch:
            raise StopAsyncIteration
        request = pb.VerifyManyRequest(requests=[
            pb.VerifyRequest(token=token, audience=args.audience) for token in batch])
        response = await stubs[worker % n].VerifyMany(request, timeout=10)
        if len(response.results) != len(batch) or not all(
                result.HasField("response") and result.response.valid
                for result in response.results):
            raise RuntimeError("a token of the batch was refused")
    return verify_many


def _bao_calls(args: argparse.Namespace, session: aiohttp.ClientSession, pool: Pool,
               issued: list[str]) -> Call:
    """OpenBao's own identity tokens: issue with an entity's token, introspect as root."""
    base = args.addr.rstrip("/") + "/v1/identity/oidc/"
    if args.rpc == "bao-issue":
        url, headers = base + f"token/{args.bao_role}", {"X-Vault-Token": args.bao_token}

        async def issue(worker: int) -> None:
            async with session.get(url, headers=headers) as response:
                body = await response.json()
                if response.status != 200:
                    raise RuntimeError(f"bao issue: {response.status} {body.get('errors')}")
                if args.save_tokens:
                    issued.append(body["data"]["token"])
        return issue
    url, headers = base + "introspect", {"X-Vault-Token": args.bao_token}

    async def introspect(worker: int) -> None:
        # Each call the next token of the pool (--cycle): many distinct tokens, so no
        # cache of OpenBao's can flatter it.
        token = pool.take()
        if token is None:
            raise StopAsyncIteration
        async with session.post(url, headers=headers, json={"token": token}) as response:
            body = await response.json()
            if response.status != 200 or not body.get("active"):
                raise RuntimeError(f"bao introspect: {response.status} {body}")
    return introspect


class Recorder:
    """Latencies (ns) and errors of the measured window."""

    def __init__(self) -> None:
        self.latencies: list[int] = []
        self.errors = 0
        self.first_error: str | None = None
        self.unimplemented = False

    def error(self, exc: BaseException) -> None:
        if isinstance(exc, grpc.aio.AioRpcError) and exc.code() == grpc.StatusCode.UNIMPLEMENTED:
            self.unimplemented = True
        self.errors += 1
        if self.first_error is None:
            self.first_error = f"{type(exc).__name__}: {exc}"[:300]


async def _closed_loop(call: Call, args: argparse.Namespace, rec: Recorder) -> None:
    deadline = time.perf_counter() + args.max_seconds
    budget = itertools.count()

    async def worker(index: int) -> None:
        while time.perf_counter() < deadline and next(budget) < args.max_count:
            started = time.perf_counter_ns()
            try:
                await call(index)
            except StopAsyncIteration:
                return
            except Exception as exc:  # counted, and the phase goes on
                rec.error(exc)
                if rec.unimplemented:
                    return  # a server without this RPC: the row says so
                continue
            rec.latencies.append(time.perf_counter_ns() - started)

    await asyncio.gather(*(worker(i) for i in range(args.concurrency)))


async def _open_loop(call: Call, args: argparse.Namespace, rec: Recorder) -> None:
    """Starts calls on a fixed schedule; a call's latency counts from its scheduled time."""
    interval = 1.0 / args.rate
    total = min(args.max_count, int(args.rate * args.max_seconds))
    start = time.perf_counter()
    in_flight: set[asyncio.Task[None]] = set()
    limit = max(args.concurrency, 1)

    async def one(index: int, scheduled: float) -> None:
        try:
            await call(index)
        except StopAsyncIteration:
            return
        except Exception as exc:
            rec.error(exc)
            return
        rec.latencies.append(int((time.perf_counter() - scheduled) * 1e9))

    for index in range(total):
        scheduled = start + index * interval
        delay = scheduled - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        if len(in_flight) >= limit:  # the server fell far behind: do not pile up forever
            await asyncio.wait(in_flight, return_when=asyncio.FIRST_COMPLETED)
        task = asyncio.create_task(one(index, scheduled))
        in_flight.add(task)
        task.add_done_callback(in_flight.discard)
    if in_flight:
        await asyncio.wait(in_flight)


def _summary(rec: Recorder, seconds: float, cpu: tuple[float, float],
             args: argparse.Namespace, peer_cpu: float) -> dict[str, Any]:
    ordered = sorted(rec.latencies)
    count = len(ordered)

    def quantile(q: float) -> float | None:
        return round(ordered[min(count - 1, int(q * count))] / 1000, 1) if count else None

    server_cpu, client_cpu = cpu
    out: dict[str, Any] = {
        "count": count, "errors": rec.errors, "first_error": rec.first_error,
        "seconds": round(seconds, 3), "rps": round(count / seconds, 1) if seconds else 0.0,
        "p50_us": quantile(0.50), "p90_us": quantile(0.90), "p99_us": quantile(0.99),
        "max_us": quantile(1.0),
        "server_cpu_s": round(server_cpu, 3), "client_cpu_s": round(client_cpu, 3),
        "server_cpu_us_per_call": round(server_cpu / count * 1e6, 1) if count else None,
    }
    if args.peer_pid:
        out["peer_cpu_s"] = round(peer_cpu, 3)
        out["peer_cpu_us_per_call"] = round(peer_cpu / count * 1e6, 1) if count else None
    if rec.unimplemented:
        out["unimplemented"] = True
    if args.rpc == "verify-many":  # per token: what compares with one Verify per token
        tokens = count * args.batch
        out.update(batch=args.batch, tokens=tokens,
                   tokens_per_s=round(tokens / seconds, 1) if seconds else 0.0,
                   server_cpu_us_per_token=round(server_cpu / tokens * 1e6, 2) if tokens
                   else None)
    return out


async def _drive(call: Call, args: argparse.Namespace) -> dict[str, Any]:
    if args.warmup > 0:  # fills caches and JITs nothing, but warms connections and code paths
        warm = argparse.Namespace(**{**vars(args), "max_seconds": args.warmup,
                                     "max_count": args.warmup_count, "rate": None})
        await _closed_loop(call, warm, Recorder())
    rec = Recorder()
    cpu0, own0 = process_cpu_seconds(args.server_pid), time.process_time()
    peer0 = process_cpu_seconds(args.peer_pid)
    started = time.perf_counter()
    if args.rate:
        await _open_loop(call, args, rec)
    else:
        await _closed_loop(call, args, rec)
    seconds = time.perf_counter() - started
    cpu = (process_cpu_seconds(args.server_pid) - cpu0, time.process_time() - own0)
    return _summary(rec, seconds, cpu, args, process_cpu_seconds(args.peer_pid) - peer0)


async def _run(args: argparse.Namespace) -> dict[str, Any]:
    pool = Pool(args.tokens, args.cycle, args.start)
    result = await _run_on(args, pool)
    if pool.tokens:  # where the next phase on this server should begin (warm-up included)
        result["next_token"] = max(pool.next, args.start) % len(pool.tokens)
    return result


async def _run_on(args: argparse.Namespace, pool: Pool) -> dict[str, Any]:
    issued: list[str] = []
    if args.rpc.startswith("bao-"):
        connector = aiohttp.TCPConnector(limit=args.concurrency)
        async with aiohttp.ClientSession(connector=connector, trust_env=False) as session:
            result = await _drive(_bao_calls(args, session, pool, issued), args)
        if args.save_tokens:
            args.save_tokens.write_text("\n".join(issued) + "\n")
        return result
    # One TCP connection per channel: gRPC shares subchannels between channels with equal
    # arguments, so each gets its own index; several connections reach several workers.
    channels = [grpc.aio.insecure_channel(args.addr, options=[("bench.channel", i)])
                for i in range(args.channels)]
    try:
        result = await _drive(_grpc_calls(args, channels, pool, issued), args)
    finally:
        for channel in channels:
            await channel.close()
    if args.save_tokens:
        args.save_tokens.write_text("\n".join(issued) + "\n")
    return result


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="bench.loadgen", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--addr", required=True, help="host:port (gRPC) or http://… (bao)")
    parser.add_argument("--rpc", required=True, choices=[
        "health", "jwks", "verify", "verify-repeat", "verify-many", "issue", "bao-issue",
        "bao-introspect"])
    parser.add_argument("--batch", type=int, default=16,
                        help="verify-many: tokens per VerifyMany call (1 to 256)")
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--channels", type=int, default=4)
    parser.add_argument("--max-count", type=int, required=True)
    parser.add_argument("--max-seconds", type=float, required=True)
    parser.add_argument("--rate", type=float, help="open loop at this many calls/s")
    parser.add_argument("--warmup", type=float, default=0.5, help="seconds, not measured")
    parser.add_argument("--warmup-count", type=int, default=2000)
    parser.add_argument("--server-pid", type=int, action="append", default=[])
    parser.add_argument("--peer-pid", type=int, action="append", default=[],
                        help="another process whose CPU time to report apart")
    parser.add_argument("--tokens", type=Path, help="tokens to verify, one a line")
    parser.add_argument("--cycle", action="store_true", help="verify: reuse tokens in order")
    parser.add_argument("--start", type=int, default=0,
                        help="verify: begin at this token of the pool (where the previous "
                             "phase on the same server stopped)")
    parser.add_argument("--save-tokens", type=Path, help="issue: write issued tokens here")
    parser.add_argument("--audience", default="bench-api")
    parser.add_argument("--bao-token", default="")
    parser.add_argument("--bao-role", default="bench")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.max_count <= 0 or args.max_seconds <= 0:
        print("bench.loadgen: --max-count and --max-seconds must be positive", file=sys.stderr)
        return 2
    if not 1 <= args.batch <= 256:
        print("bench.loadgen: --batch takes 1 to 256", file=sys.stderr)
        return 2
    result = asyncio.run(_run(args))
    print(json.dumps({"rpc": args.rpc, **result}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
