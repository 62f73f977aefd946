"""`scripts/bench --only tracing`: what OpenTelemetry tracing costs Verify and Issue.

Four `tokend serve` processes run side by side on the same transit key (SIDES): tracing
off (the default), twice (the second's ratio to the first is the run's noise floor);
`tracing.enabled` exporting every span over OTLP/gRPC to a sink in
this process (the standard OTEL_* variables name it; every call sampled, the worst case);
and the same sampling 1 % of traces. The load generator drives them in rounds, rotating
which goes first, so a neighbour's burst lands on all; each figure is the median over
the rounds, and the ratios (÷ off) are of figures from the same run:

- calls/s ratio (closed loop, 64 concurrent calls): below 1 is throughput lost;
- server CPU µs per call ratio (from /proc): above 1 is the CPU tracing adds per call.

What tracing off costs compared with a tokend without tracing code is one `None` check
per call (tokend.tracing); `--only tracing` shows it as the "off" server's own figures,
which `--only transit` on an older commit gives for comparison.
"""

from __future__ import annotations

import functools
import os
import threading
from collections.abc import Callable, Iterator
from concurrent import futures
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import grpc
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2 as otlp
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2_grpc as otlp_grpc

from bench import report
from bench import rounds as rounds_

KEY = "bench-tracing"
PHASES = ("verify", "issue")


class Sink(otlp_grpc.TraceServiceServicer):
    """Counts the spans it receives, keeps none."""

    def __init__(self) -> None:
        self.spans = 0
        self._lock = threading.Lock()

    def Export(self, request: otlp.ExportTraceServiceRequest,
               context: grpc.ServicerContext) -> otlp.ExportTraceServiceResponse:
        count = sum(len(scope.spans) for rs in request.resource_spans
                    for scope in rs.scope_spans)
        with self._lock:
            self.spans += count
        return otlp.ExportTraceServiceResponse()


@contextmanager
def otlp_collector(receiver: otlp_grpc.TraceServiceServicer, workers: int = 2
                   ) -> Iterator[str]:
    """An OTLP/gRPC trace collector on loopback serving `receiver`; yields its endpoint."""
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=workers))
    otlp_grpc.add_TraceServiceServicer_to_server(receiver, server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.stop(0)


@contextmanager
def sink() -> Iterator[tuple[Sink, str]]:
    receiver = Sink()
    with otlp_collector(receiver) as endpoint:
        yield receiver, endpoint


@contextmanager
def otel_environment(endpoint: str) -> Iterator[None]:
    """The variables both servers inherit; only the one with tracing.enabled uses them."""
    values = {"OTEL_EXPORTER_OTLP_PROTOCOL": "grpc", "OTEL_EXPORTER_OTLP_ENDPOINT": endpoint,
              "OTEL_SERVICE_NAME": "tokend-bench"}
    cleared = ("OTEL_SDK_DISABLED", "OTEL_TRACES_EXPORTER", "OTEL_TRACES_SAMPLER",
               "OTEL_TRACES_SAMPLER_ARG")
    saved = {name: os.environ.get(name) for name in (*values, *cleared)}
    os.environ.update(values)
    for name in cleared:
        os.environ.pop(name, None)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


Load = Callable[..., dict[str, Any]]


# The sides: tracing off (twice); on with every call sampled (the worst case); on with 1 % of
# the traces sampled (parentbased_traceidratio, the usual production setting), where the
# other 99 % still read the context and make a non-recording span.
SIDES: dict[str, dict[str, str] | None] = {
    "off": None,
    # A second server with tracing off: its ratio to `off` is this run's noise floor (an
    # A/A comparison), against which the others' ratios are read.
    "off_control": None,
    "on": {"OTEL_TRACES_SAMPLER": "always_on"},
    "sampled_1pct": {"OTEL_TRACES_SAMPLER": "parentbased_traceidratio",
                     "OTEL_TRACES_SAMPLER_ARG": "0.01"},
}


@contextmanager
def sampler(variables: dict[str, str] | None) -> Iterator[None]:
    """The sampler of the tokend started inside (its environment is copied at start)."""
    saved = {name: os.environ.get(name) for name in variables or {}}
    os.environ.update(variables or {})
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def alternate(load: Load, servers: dict[str, Any], rounds: int, seconds: float,
              tokens: Path) -> dict[str, Any]:
    """`rounds` rounds of each phase on each server, rotating which goes first (bench.rounds).
    Every server first verifies the whole pool once, so all start with the same cache."""
    count = sum(1 for _ in tokens.open())
    for side in servers:
        load(servers[side], "verify", 30, tokens=tokens, max_count=count, warmup=0)
    verify = {"tokens": tokens, "cycle": True, "warmup": 0.3}
    groups = {phase: {side: functools.partial(load, server, phase, seconds,
                                              **(verify if phase == "verify" else
                                                 {"warmup": 0.3}))
                      for side, server in servers.items()} for phase in PHASES}
    samples = rounds_.alternate(rounds, groups)
    return {phase: summary(by_side) for phase, by_side in samples.items()}


def summary(by_side: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
    """Medians per side, each ÷ `off`."""
    return rounds_.summary(by_side, base="off")


def table(results: dict[str, Any]) -> str:
    lines = ["| RPC | tracing | calls/s | ÷ off | server CPU µs/call | ÷ off | CPU µs added "
             "| p50 / p99 µs |", "|---|---|---|---|---|---|---|---|"]
    for phase in PHASES:
        row = results[phase]
        for side in [name for name in row if name != "rounds"]:
            figures = row[side]
            lines.append(
                f"| {phase.capitalize()} | {side} | {figures['rps']} "
                f"| {figures.get('rps_ratio_to_off', '-')} "
                f"| {figures['server_cpu_us_per_call']} "
                f"| {figures.get('cpu_per_call_ratio_to_off', '-')} "
                f"| {figures.get('cpu_us_added_per_call', '-')} "
                f"| {figures['p50_us']} / {figures['p99_us']} |")
    return "\n".join(lines)


def in_process(calls: int = 20_000) -> dict[str, float]:
    """CPU µs per call of the tracing code alone (this process, its export thread
    included): what the servicer's `rpc` wrapper adds around a handler, off, unsampled
    (1 % ratio sampler, no traceparent) and sampled with the OTLP encoding of every span.
    Neighbours barely move these figures, unlike the service rates above."""
    import time

    from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import (
        BatchSpanProcessor,
        SpanExporter,
        SpanExportResult,
    )
    from opentelemetry.sdk.trace.sampling import ALWAYS_ON, ParentBasedTraceIdRatio

    from tokend.tracing import RpcSpan

    class Encoder(SpanExporter):  # what the OTLP exporter does, less the network send
        def export(self, spans: Any) -> SpanExportResult:
            encode_spans(spans).SerializeToString()
            return SpanExportResult.SUCCESS

    class Context:  # a call's metadata as grpc.aio hands it over, without traceparent
        def invocation_metadata(self) -> tuple[tuple[str, str], ...]:
            return (("user-agent", "grpc-go/1.79"), ("x-request-id", "bench-1"))

    call = _Call()
    context = Context()

    def cost(tracer: Any) -> float:
        started = time.process_time()
        for _ in range(calls):
            span = None if tracer is None else RpcSpan(tracer, "Verify", context)  # type: ignore[arg-type]
            if span is not None:
                span.end(grpc.StatusCode.OK, call)  # type: ignore[arg-type]
        return started

    out: dict[str, float] = {}
    for name, chosen in (("off", None), ("sampled_1pct", ParentBasedTraceIdRatio(0.01)),
                         ("on", ALWAYS_ON)):
        provider = None
        tracer = None
        if chosen is not None:
            provider = TracerProvider(sampler=chosen)
            provider.add_span_processor(BatchSpanProcessor(
                Encoder(), max_queue_size=calls + 1, schedule_delay_millis=200))
            tracer = provider.get_tracer("bench")
        started = cost(tracer)
        if provider is not None:
            provider.force_flush()
        out[name] = round((time.process_time() - started) / calls * 1e6, 3)
        if provider is not None:
            provider.shutdown()
    return out


class _Identity:
    class kind:
        value = "local"


class _Call:
    """What RpcSpan.end reads of a CallContext."""

    audit: dict[str, Any] = {}  # noqa: RUF012
    caller = "tokend-local"
    identity = _Identity()


def write(results: dict[str, Any], out: Path) -> dict[str, Path]:
    """results/tracing-<date>.{json,md}; latest.* left alone."""
    paths = report.dated_results(results, out, "tracing")
    figures = results["tracing"]
    *lines, machine = report.dated_heading(results, "tracing", "tracing off vs on")
    lines += [
        f"{machine}. Four tokend processes "
        "(Transit ES256, 1 worker each), same key: `off`; `off_control`, tracing off too (its "
        "ratio to `off` is this run's noise floor); `on`, exporting every span "
        "(sampler always_on) over OTLP/gRPC to a sink in the bench process; `sampled_1pct`, "
        "the same with parentbased_traceidratio 0.01 (the load generator sends no "
        "traceparent, so tokend's own sampler decides). "
        f"{figures['rounds']} rounds, rotating which side goes first, of "
        f"{figures['seconds']} s per RPC and side; "
        "medians. Verify cycles over the issued tokens (the verified-token cache's hot path).",
        "", table(figures), "",
        f"Spans the sink received: {figures['spans_exported']}.", "",
        "The tracing code alone, in-process (CPU µs per call, its export thread included; "
        "RpcSpan around nothing, as the servicer's `rpc` wrapper runs it): "
        + ", ".join(f"{side} {value}" for side, value in figures["in_process"].items())
        + ". Off is the `None` check the wrapper makes; compare with the server CPU per "
        "Verify above.", ""]
    paths["md"].write_text("\n".join(lines))
    return paths
