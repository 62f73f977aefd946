"""metrics_standard.derive on families as a scrape reads them: the rules the running-server
tests (test_metrics_standard_server.py) cannot isolate, on a registry of its own."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from tokend import metrics_standard
from tokend.metrics import RPC_BUCKETS

SERVICE = "tokend.v1.TokenService"
LABELS = ["grpc_type", "grpc_service", "grpc_method"]


def scrape(registry: CollectorRegistry) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    text = generate_latest(metrics_standard.WithStandard(registry)).decode()
    return {(s.name, frozenset(s.labels.items())): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def sources(registry: CollectorRegistry) -> tuple[Histogram, Histogram, Counter]:
    own = Histogram(metrics_standard.OWN, "", ["method", "code"], buckets=RPC_BUCKETS,
                    registry=registry)
    calls = Histogram(metrics_standard.CALLS, "", [*LABELS, "grpc_code"], buckets=RPC_BUCKETS,
                      registry=registry)
    started = Counter(metrics_standard.STARTED, "", LABELS, registry=registry)
    return own, calls, started


def key(name: str, **labels: str) -> tuple[str, frozenset[tuple[str, str]]]:
    return name, frozenset(labels.items())


def test_a_code_from_both_sources_is_one_summed_series() -> None:
    registry = CollectorRegistry()
    own, calls, _ = sources(registry)
    # Denied by the policy inside the handler (timed) and at admission (refused).
    own.labels("Issue", "PERMISSION_DENIED").observe(0.002)
    calls.labels("unary", SERVICE, "Issue", "PERMISSION_DENIED").observe(0.0001)
    own.labels("Issue", "OK").observe(0.003)
    got = scrape(registry)
    method = {"grpc_type": "unary", "grpc_service": SERVICE, "grpc_method": "Issue"}
    assert got[key("grpc_server_handled_total", **method, grpc_code="PermissionDenied")] == 2
    assert got[key("grpc_server_started_total", **method)] == 3
    assert got[key("grpc_server_msg_sent_total", **method)] == 1  # only the OK call answered
    assert got[key("grpc_server_handling_seconds_count", **method)] == 3
    assert got[key("grpc_server_handling_seconds_bucket", **method, le="0.0005")] == 1
    assert got[key("grpc_server_handling_seconds_bucket", **method, le="0.0025")] == 2
    # The sources show under the standard names only; tokend's own histogram stays.
    assert not any(name.startswith("tokend_grpc_") for name, _ in got)
    assert key("tokend_rpc_duration_seconds_count", method="Issue", code="OK") in got


def test_otel_histogram_is_in_milliseconds_with_numeric_codes() -> None:
    registry = CollectorRegistry()
    own, _, _ = sources(registry)
    own.labels("Verify", "UNAVAILABLE").observe(0.004)
    got = scrape(registry)
    otel = {"rpc_system": "grpc", "rpc_service": SERVICE, "rpc_method": "Verify",
            "rpc_grpc_status_code": "14"}
    assert got[key("rpc_server_duration_milliseconds_sum", **otel)] == 4.0
    assert got[key("rpc_server_duration_milliseconds_bucket", **otel, le="5.0")] == 1
    assert got[key("rpc_server_duration_milliseconds_bucket", **otel, le="2.5")] == 0


def test_a_running_stream_counts_as_started_not_handled() -> None:
    registry = CollectorRegistry()
    _, _, started = sources(registry)
    started.labels("server_stream", SERVICE, "WatchRevocations").inc()
    got = scrape(registry)
    stream = {"grpc_type": "server_stream", "grpc_service": SERVICE,
              "grpc_method": "WatchRevocations"}
    assert got[key("grpc_server_started_total", **stream)] == 1
    assert got[key("grpc_server_msg_received_total", **stream)] == 1
    assert not any(name == "grpc_server_handled_total" for name, _ in got)


def test_go_code_names() -> None:
    assert metrics_standard.GO_CODE["CANCELLED"] == "Canceled"
    assert metrics_standard.GO_CODE["DEADLINE_EXCEEDED"] == "DeadlineExceeded"
    assert metrics_standard.GO_CODE["OK"] == "OK"
