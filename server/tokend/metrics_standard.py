"""Hand-written: the standard gRPC server series, derived at scrape time from tokend's own.

go-grpc-prometheus is Go, and the Python ports record a second set of counters on every
call: Verify's hot path already observes tokend_rpc_duration_seconds{method,code}, which
holds everything the standard unary series say. So /metrics shows, computed per scrape
from tokend_rpc_duration_seconds and the hidden tokend_grpc_* sources (metrics.py):

- the names and labels of go-grpc-prometheus / go-grpc-middleware's providers/prometheus:
  grpc_server_started_total, grpc_server_handled_total (+grpc_code, Go's code names),
  grpc_server_msg_received_total, grpc_server_msg_sent_total and the histogram
  grpc_server_handling_seconds, labelled grpc_type, grpc_service, grpc_method;
- the OpenTelemetry RPC semantic conventions as the OTel Prometheus exporter writes them
  (semconv <= v1.37, what otelgrpc emits): rpc_server_duration_milliseconds, labelled
  rpc_system, rpc_service, rpc_method, rpc_grpc_status_code.

A unary call is counted when it ends (started == handled); a stream when it starts.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Iterator
from typing import Any

import grpc
from prometheus_client.metrics_core import (
    CounterMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.utils import floatToGoString

from tokend_client.v1 import tokend_pb2 as pb

TOKEN_SERVICE = pb.DESCRIPTOR.services_by_name["TokenService"]
OWN = "tokend_rpc_duration_seconds"
CALLS = "tokend_grpc_calls_seconds"
STARTED = "tokend_grpc_streams_started"
SENT = "tokend_grpc_stream_messages_sent"
RECEIVED = "tokend_grpc_stream_messages_received"
# The sources only: shown under the standard names, not their own.
SOURCES = frozenset({CALLS, STARTED, SENT, RECEIVED})
# What /metrics adds (the dashboard test checks each has a panel).
STANDARD = {
    "grpc_server_started_total": "counter",
    "grpc_server_handled_total": "counter",
    "grpc_server_msg_received_total": "counter",
    "grpc_server_msg_sent_total": "counter",
    "grpc_server_handling_seconds": "histogram",
    "rpc_server_duration_milliseconds": "histogram",
}

Key = tuple[str, str, str]  # grpc_type, grpc_service, grpc_method


def _go_name(code: grpc.StatusCode) -> str:
    """Go's codes.Code.String(): what go-grpc-prometheus puts in grpc_code."""
    if code is grpc.StatusCode.OK:
        return "OK"
    if code is grpc.StatusCode.CANCELLED:
        return "Canceled"
    return "".join(part.capitalize() for part in code.name.split("_"))


GO_CODE = {code.name: _go_name(code) for code in grpc.StatusCode}
NUMBER = {code.name: str(code.value[0]) for code in grpc.StatusCode}


def _own_type(method: str) -> str:
    found = TOKEN_SERVICE.methods_by_name.get(method)
    return "server_stream" if found is not None and found.server_streaming else "unary"


class _Histogram:
    def __init__(self) -> None:
        self.buckets: dict[str, float] = defaultdict(float)
        self.sum = 0.0
        self.count = 0.0

    def add(self, sample_name: str, labels: dict[str, str], value: float) -> None:
        if sample_name.endswith("_bucket"):
            self.buckets[labels["le"]] += value
        elif sample_name.endswith("_sum"):
            self.sum += value
        elif sample_name.endswith("_count"):
            self.count += value

    def merge(self, other: _Histogram) -> None:
        for le, value in other.buckets.items():
            self.buckets[le] += value
        self.sum += other.sum
        self.count += other.count

    def ordered(self, scale: float = 1.0) -> list[tuple[str, float]]:
        les = sorted(self.buckets, key=float)
        return [(le if scale == 1.0 or le == "+Inf" else floatToGoString(round(
            float(le) * scale, 9)), self.buckets[le]) for le in les]


class _Read:
    """The sources' values, summed per method (and code)."""

    def __init__(self, families: Iterable[Metric]) -> None:
        self.calls: dict[tuple[Key, str], _Histogram] = defaultdict(_Histogram)
        self.counters: dict[str, dict[Key, float]] = {
            name: defaultdict(float) for name in (STARTED, SENT, RECEIVED)}
        for family in families:
            if family.name == OWN:
                for s in family.samples:
                    key = (_own_type(s.labels["method"]), TOKEN_SERVICE.full_name,
                           s.labels["method"])
                    self.calls[key, s.labels["code"]].add(s.name, s.labels, s.value)
            elif family.name == CALLS:
                for s in family.samples:
                    key = (s.labels["grpc_type"], s.labels["grpc_service"],
                           s.labels["grpc_method"])
                    self.calls[key, s.labels["grpc_code"]].add(s.name, s.labels, s.value)
            elif family.name in self.counters:
                for s in family.samples:
                    if s.name.endswith("_total"):
                        key = (s.labels["grpc_type"], s.labels["grpc_service"],
                               s.labels["grpc_method"])
                        self.counters[family.name][key] += s.value


def derive(families: Iterable[Metric]) -> list[Metric]:
    read = _Read(families)
    labels = ["grpc_type", "grpc_service", "grpc_method"]
    started = CounterMetricFamily("grpc_server_started_total",
                                  "Total number of RPCs started on the server.", labels=labels)
    handled = CounterMetricFamily(
        "grpc_server_handled_total",
        "Total number of RPCs completed on the server, regardless of success or failure.",
        labels=[*labels, "grpc_code"])
    received = CounterMetricFamily("grpc_server_msg_received_total",
                                   "Total number of RPC stream messages received on the server.",
                                   labels=labels)
    sent = CounterMetricFamily("grpc_server_msg_sent_total",
                               "Total number of gRPC stream messages sent by the server.",
                               labels=labels)
    handling = HistogramMetricFamily(
        "grpc_server_handling_seconds",
        "Histogram of response latency (seconds) of gRPC that had been application-level "
        "handled by the server.", labels=labels)
    otel = HistogramMetricFamily(
        "rpc_server_duration_milliseconds", "Measures the duration of inbound RPC.",
        labels=["rpc_system", "rpc_service", "rpc_method", "rpc_grpc_status_code"])

    per_method: dict[Key, _Histogram] = defaultdict(_Histogram)
    ok: dict[Key, float] = defaultdict(float)
    for (key, code), hist in sorted(read.calls.items()):
        per_method[key].merge(hist)
        handled.add_metric([*key, GO_CODE.get(code, code)], hist.count)
        if code == "OK":
            ok[key] += hist.count
        otel.add_metric(["grpc", key[1], key[2], NUMBER.get(code, "2")],
                        hist.ordered(1000.0), hist.sum * 1000.0)
    streams = read.counters[STARTED]
    for key in sorted(set(per_method) | set(streams)):
        kind = key[0]
        streaming = kind != "unary"
        hist = per_method.get(key)
        began = streams.get(key, 0.0) if streaming else (hist.count if hist else 0.0)
        started.add_metric(list(key), began)
        one_request = kind in ("unary", "server_stream")
        received.add_metric(list(key), began if one_request
                            else read.counters[RECEIVED].get(key, 0.0))
        sent.add_metric(list(key), read.counters[SENT].get(key, 0.0) if streaming
                        else ok.get(key, 0.0))
        if hist is not None:
            handling.add_metric(list(key), hist.ordered(), hist.sum)
    return [started, handled, received, sent, handling, otel]


class WithStandard:
    """A registry for generate_latest: `source`'s families without the hidden sources,
    then the derived standard ones."""

    def __init__(self, source: Any) -> None:
        self._source = source

    def collect(self) -> Iterator[Metric]:
        families = list(self._source.collect())
        for family in families:
            if family.name not in SOURCES:
                yield family
        yield from derive(families)
