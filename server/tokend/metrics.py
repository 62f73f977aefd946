"""Prometheus metrics (names follow the Prometheus conventions: *_total, *_seconds).

With `tokend serve --workers N` the parent sets PROMETHEUS_MULTIPROC_DIR before the
workers start: prometheus-client then keeps every value in files there and a scrape of
any worker reports the group (counters and histograms summed, each gauge by the
`multiprocess_mode` given below).
"""

from __future__ import annotations

import functools
import os
import threading
import time
from collections.abc import Callable
from typing import Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from prometheus_client.metrics import MetricWrapperBase
from prometheus_client.multiprocess import MultiProcessCollector

from tokend import metrics_standard

MULTIPROCESS_ENV = "PROMETHEUS_MULTIPROC_DIR"
# prometheus-client picks its value store when first imported: so does this module.
MULTIPROCESS = bool(os.environ.get(MULTIPROCESS_ENV))
# How often a worker writes its computed gauges (track) to the shared files.
TRACK_INTERVAL = 1.0


@functools.lru_cache(maxsize=4096)
def child(metric: MetricWrapperBase, *labels: str) -> Any:
    """`metric.labels(*labels)`, looked up once: labels() validates and locks per call.
    Label values must come from a bounded set (methods, outcomes, policy entries)."""
    return metric.labels(*labels)


ISSUED = Counter("tokend_tokens_issued_total", "Access tokens issued", ["kind"])
VERIFIED = Counter("tokend_verifications_total", "Verify answers", ["outcome", "reason"])
REFRESHED = Counter("tokend_refreshes_total", "Refresh attempts", ["outcome"])
REVOKED = Counter("tokend_revocations_total", "Revocation entries recorded", ["kind"])
REUSE_DETECTED = Counter(
    "tokend_refresh_reuse_detected_total", "Spent refresh tokens presented again"
)
RPC_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5)
# TokenService's unary calls that ran (admitted). Also the source of the standard
# grpc_server_* series for those calls, derived at scrape time (metrics_standard.py).
RPC_SECONDS = Histogram(
    "tokend_rpc_duration_seconds", "gRPC handling time", ["method", "code"],
    buckets=RPC_BUCKETS,
)
# Sources of the standard series for every other call (refused TokenService calls,
# TokenService streams, Health, Reflection): recorded here, shown on /metrics only
# under the standard names (metrics_standard.SOURCES hides these).
_GRPC_LABELS = ["grpc_type", "grpc_service", "grpc_method"]
GRPC_CALLS = Histogram(
    "tokend_grpc_calls_seconds", "Calls not in tokend_rpc_duration_seconds, ended",
    [*_GRPC_LABELS, "grpc_code"], buckets=RPC_BUCKETS,
)
GRPC_STREAMS_STARTED = Counter(
    "tokend_grpc_streams_started", "Streaming calls started", _GRPC_LABELS)
GRPC_STREAM_SENT = Counter(
    "tokend_grpc_stream_messages_sent", "Messages sent on streams", _GRPC_LABELS)
GRPC_STREAM_RECEIVED = Counter(
    "tokend_grpc_stream_messages_received", "Messages received on client/bidi streams",
    _GRPC_LABELS)
SIGN_SECONDS = Histogram(
    "tokend_sign_duration_seconds",
    "Time one signing call (a batch of tokens) took through the key custody",
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1),
)
# Workers follow the same feed: the one furthest behind is the one that matters.
DENYLIST_SIZE = Gauge("tokend_denylist_entries", "Live revocation entries held in memory",
                      multiprocess_mode="livemin")
KEYS_PUBLISHED = Gauge("tokend_jwks_keys", "Public keys published in the JWKS",
                       multiprocess_mode="livemin")
SECURITY_EVENTS = Counter("tokend_security_events_total", "Security signals raised", ["kind"])
RATE_LIMITED = Counter("tokend_rate_limited_total", "Calls refused by a rate limit", ["rpc"])
AUTHZ_DENIED = Counter("tokend_authz_denied_total", "Calls refused by the caller policy", ["rpc"])
MALFORMED_REQUESTS = Counter(
    "tokend_malformed_requests_total",
    "Calls refused because the request bytes were not a valid protobuf message", ["rpc"])
ISSUED_BY_CALLER = Counter(
    "tokend_issued_by_caller_total",
    "Access tokens issued, by the policy entry that allowed the caller",
    ["caller"],
)
# Set by the revocation feed follower (tokend.tokens.denylist); one follower per process.
DENYLIST_STALENESS = Gauge(
    "tokend_denylist_staleness_seconds",
    "Seconds since the revocation feed was last read to its end (revocations made by "
    "other replicas since then may not be enforced here yet)",
    multiprocess_mode="livemax",
)
STORE_UP = Gauge(
    "tokend_store_up", "1 when the last read of the store's revocation feed succeeded, else 0",
    multiprocess_mode="livemin",
)
# Signing health (tokend.tokens.circuit, tokend.tokens.batching).
SIGNING_AVAILABLE = Gauge(
    "tokend_signing_available",
    "1 while Issue and Refresh can sign; 0 while the signing circuit is open after a "
    "failed signing call (they answer UNAVAILABLE at once until a probe succeeds)",
    multiprocess_mode="livemin",
)
SIGNING_CIRCUIT_OPENED = Counter(
    "tokend_signing_circuit_opened_total", "Times a failed signing call opened the circuit"
)
SIGN_SHED = Counter(
    "tokend_sign_shed_total",
    "Signing requests answered without a signature: circuit_open (refused at once), "
    "gave_up (no signature within signing.max_wait), cancelled (the caller left before "
    "its batch did; never sent)",
    ["reason"],
)
SIGN_INPUTS = Counter(
    "tokend_sign_inputs_total", "Signing inputs sent to the key custody (probes included)"
)
CONNECTIONS_SHED = Counter(
    "tokend_http_connections_shed_total",
    "HTTP connections closed to stay within http.max_connections (the oldest goes)",
    ["listener"],
)
TLS_RELOAD_REJECTED = Gauge(
    "tokend_tls_reload_rejected",
    "1 while the TLS files on disk (certificate, key, client CA) were changed but refused "
    "(unparsable, empty CA, key not matching, expired): the previous material still serves",
    multiprocess_mode="livemax",
)
TLS_CERT_EXPIRY = Gauge(
    "tokend_tls_certificate_expiry_timestamp_seconds",
    "When the server certificate in use expires (Unix time); a renewal that is refused "
    "or never comes leaves it approaching",
    multiprocess_mode="livemin",
)
TLS_RELOAD_FAILURES = Counter(
    "tokend_tls_reload_failures_total", "Changed TLS files refused instead of hot-loaded"
)


class GrpcMethod:
    """One method's children of the GRPC_* sources, looked up once (grpc_type as
    go-grpc-prometheus names it: unary, server_stream, client_stream, bidi_stream)."""

    def __init__(self, service: str, method: str, *, client_streaming: bool,
                 server_streaming: bool) -> None:
        kind = (("bidi_stream" if server_streaming else "client_stream") if client_streaming
                else ("server_stream" if server_streaming else "unary"))
        self.streaming = client_streaming or server_streaming
        self._labels = (kind, service, method)
        self._started = GRPC_STREAMS_STARTED.labels(*self._labels)
        self.sent = GRPC_STREAM_SENT.labels(*self._labels)
        self.received = GRPC_STREAM_RECEIVED.labels(*self._labels)

    @classmethod
    def of(cls, method: Any) -> GrpcMethod:
        """From a protobuf MethodDescriptor."""
        return cls(method.containing_service.full_name, method.name,
                   client_streaming=method.client_streaming,
                   server_streaming=method.server_streaming)

    def started(self) -> None:
        """A stream began (a unary call's start is derived from its end)."""
        if self.streaming:
            self._started.inc()

    def ended(self, code: Any, seconds: float) -> None:
        """`code`: a grpc.StatusCode."""
        child(GRPC_CALLS, *self._labels, code.name).observe(seconds)


def token_service(method: str) -> GrpcMethod:
    """The GrpcMethod of one of TokenService's methods."""
    return GrpcMethod.of(metrics_standard.TOKEN_SERVICE.methods_by_name[method])


def exposition() -> tuple[bytes, str]:
    """The /metrics body and its content type: this process's registry, or with workers
    every worker's values read from the shared directory; plus the standard gRPC series
    derived from them (metrics_standard.py)."""
    if not MULTIPROCESS:
        return generate_latest(metrics_standard.WithStandard(REGISTRY)), CONTENT_TYPE_LATEST
    registry = CollectorRegistry()
    MultiProcessCollector(registry)
    return generate_latest(metrics_standard.WithStandard(registry)), CONTENT_TYPE_LATEST


_tracked: dict[Gauge, Callable[[], float]] = {}
_tracker: threading.Thread | None = None


def track(gauge: Gauge, value: Callable[[], float]) -> None:
    """`gauge` reports `value()`: computed at scrape time in one process; with workers a
    scrape cannot call into the others, so each writes its value every TRACK_INTERVAL."""
    global _tracker
    if not MULTIPROCESS:
        gauge.set_function(value)
        return
    _tracked[gauge] = value
    gauge.set(value())
    if _tracker is None:
        _tracker = threading.Thread(target=_write_tracked, name="tokend-metrics", daemon=True)
        _tracker.start()


def _write_tracked() -> None:
    while True:
        time.sleep(TRACK_INTERVAL)
        for gauge, value in list(_tracked.items()):
            gauge.set(value())
