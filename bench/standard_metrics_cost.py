"""What the standard gRPC metrics (issue 15) cost, in process: per call and per scrape.

`python -m bench.standard_metrics_cost` (from the repo root, with .venv's python). Prints
per-call nanoseconds of: what the unary TokenService wrapper now does in addition (a
branch), what recording the standard series natively per call would cost instead
(started, received, handled, sent, one histogram observation), the Health wrapper
(api/observed.py) around an empty coroutine, and one /metrics exposition with and
without the derived series. Bounded: a fixed number of iterations each.
"""

from __future__ import annotations

import asyncio
import statistics
import time
from collections.abc import Callable

import grpc
from prometheus_client import REGISTRY, CollectorRegistry, Counter, Histogram, generate_latest

from tokend import metrics
from tokend.api.observed import observe

N = 200_000
ROUNDS = 5


def per_call(run: Callable[[int], None], n: int = N) -> float:
    """Median over ROUNDS of ns per iteration."""
    samples = []
    for _ in range(ROUNDS):
        began = time.perf_counter_ns()
        run(n)
        samples.append((time.perf_counter_ns() - began) / n)
    return statistics.median(samples)


def branch_only(n: int) -> None:
    timed = True
    standard = metrics.token_service("Verify")
    for _ in range(n):
        if not timed:
            standard.started()


def own_histogram(n: int) -> None:
    for _ in range(n):
        metrics.child(metrics.RPC_SECONDS, "Verify", "OK").observe(0.0001)


def native_standard(n: int) -> None:
    """What a go-grpc-prometheus-style recorder would add on every unary call."""
    registry = CollectorRegistry()
    labels = ["grpc_type", "grpc_service", "grpc_method"]
    started = Counter("s", "", labels, registry=registry)
    received = Counter("r", "", labels, registry=registry)
    sent = Counter("m", "", labels, registry=registry)
    handled = Counter("h", "", [*labels, "grpc_code"], registry=registry)
    seconds = Histogram("d", "", labels, registry=registry, buckets=metrics.RPC_BUCKETS)
    key = ("unary", "tokend.v1.TokenService", "Verify")
    for _ in range(n):
        metrics.child(started, *key).inc()
        metrics.child(received, *key).inc()
        metrics.child(handled, *key, "OK").inc()
        metrics.child(sent, *key).inc()
        metrics.child(seconds, *key).observe(0.0001)


class _Context:
    def code(self) -> None:
        return None


async def _empty(request: object, context: object) -> object:
    return request


def health_wrapper(n: int, wrapped: bool) -> float:
    handler = grpc.unary_unary_rpc_method_handler(_empty)
    if wrapped:
        handler = observe("grpc.health.v1.Health", "Check", handler)
    behavior = handler.unary_unary
    context = _Context()

    async def loop() -> None:
        for _ in range(n):
            await behavior(None, context)

    began = time.perf_counter_ns()
    asyncio.run(loop())
    return (time.perf_counter_ns() - began) / n


def scrape_ms(derived: bool, n: int = 200) -> float:
    began = time.perf_counter_ns()
    for _ in range(n):
        if derived:
            metrics.exposition()
        else:
            generate_latest(REGISTRY)
    return (time.perf_counter_ns() - began) / n / 1e6


def populate() -> None:
    """Series as a busy server has them: every TokenService method with five codes."""
    codes = ("OK", "INVALID_ARGUMENT", "PERMISSION_DENIED", "UNAVAILABLE",
             "RESOURCE_EXHAUSTED")
    for method in metrics.metrics_standard.TOKEN_SERVICE.methods_by_name:
        for code in codes:
            metrics.child(metrics.RPC_SECONDS, method, code).observe(0.001)
            metrics.token_service(method).ended(getattr(grpc.StatusCode, code), 0.001)


def main() -> None:
    populate()
    print(f"unary wrapper, added branch:          {per_call(branch_only):8.1f} ns/call")
    print(f"tokend_rpc_duration_seconds observe:   {per_call(own_histogram):8.1f} ns/call")
    print(f"native standard series (not done):     {per_call(native_standard):8.1f} ns/call")
    bare = statistics.median(health_wrapper(50_000, False) for _ in range(ROUNDS))
    wrapped = statistics.median(health_wrapper(50_000, True) for _ in range(ROUNDS))
    print(f"Health wrapper (api/observed.py):      {wrapped - bare:8.1f} ns/call "
          f"({bare:.0f} -> {wrapped:.0f} around an empty coroutine)")
    print(f"/metrics exposition, tokend only:      {scrape_ms(False):8.3f} ms")
    print(f"/metrics exposition, + standard:       {scrape_ms(True):8.3f} ms")


if __name__ == "__main__":
    main()
