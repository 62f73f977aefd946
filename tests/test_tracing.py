"""Tracing end to end: a client span -> a real `tokend serve` process's RPC span -> its
signing batch and Vault POST (and store transaction), all exported over OTLP/gRPC to a
collector this test runs on loopback. And with tracing off, no tracer exists at all."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from opentelemetry import trace
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2 as otlp
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2_grpc as otlp_grpc
from opentelemetry.proto.trace.v1 import trace_pb2
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from bench.tracing import otlp_collector
from tests.faults.procs import TokendProcess, replica_config
from tests.support.bao import BaoDevServer
from tests.support.tokend import RunningTokend
from tokend.config import TracingConfig
from tokend.tracing import TracingConfigError, build_tracing
from tokend_client.v1 import tokend_pb2 as pb

SERVICE = "tokend.v1.TokenService"
AUDIENCE = "orders"
SERVER = trace_pb2.Span.SpanKind.SPAN_KIND_SERVER
CLIENT = trace_pb2.Span.SpanKind.SPAN_KIND_CLIENT


class Collector(otlp_grpc.TraceServiceServicer):
    """An OTLP/gRPC trace receiver on loopback keeping every request it gets."""

    def __init__(self) -> None:
        self.requests: list[otlp.ExportTraceServiceRequest] = []
        self._lock = threading.Lock()

    def Export(self, request: otlp.ExportTraceServiceRequest,
               context: grpc.ServicerContext) -> otlp.ExportTraceServiceResponse:
        with self._lock:
            self.requests.append(request)
        return otlp.ExportTraceServiceResponse()

    def spans(self) -> list[tuple[dict[str, Any], trace_pb2.Span]]:
        """(resource attributes, span) for every span received so far."""
        with self._lock:
            requests = list(self.requests)
        out = []
        for request in requests:
            for resource_spans in request.resource_spans:
                resource = _attributes(resource_spans.resource.attributes)
                for scope in resource_spans.scope_spans:
                    out += [(resource, span) for span in scope.spans]
        return out

    def raw(self) -> bytes:
        with self._lock:
            return b"".join(request.SerializeToString() for request in self.requests)


@pytest.fixture
def collector() -> Iterator[tuple[Collector, str]]:
    receiver = Collector()
    with otlp_collector(receiver, workers=4) as endpoint:
        yield receiver, endpoint


def _attributes(pairs: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for kv in pairs:
        value = kv.value
        out[kv.key] = getattr(value, value.WhichOneof("value")) if value.WhichOneof("value") \
            else None
    return out


def _hex(raw: bytes) -> str:
    return raw.hex()


@pytest.fixture
def traced_tokend(bao: BaoDevServer, collector: tuple[Collector, str], tmp_path: Path,
                  monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest
                  ) -> Iterator[TokendProcess]:
    """A real `tokend serve` with tracing.enabled, exporting to the test's collector
    through the standard variables only (indirect parameters: more settings)."""
    endpoint = collector[1]
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint)
    monkeypatch.setenv("OTEL_SERVICE_NAME", "tokend-under-test")
    monkeypatch.setenv("OTEL_BSP_SCHEDULE_DELAY", "100")
    monkeypatch.delenv("OTEL_SDK_DISABLED", raising=False)
    monkeypatch.delenv("OTEL_TRACES_EXPORTER", raising=False)
    config = replica_config(bao.addr, bao.token, f"sqlite:///{tmp_path / 'tokend.db'}",
                            "tracing-e2e", tracing={"enabled": True},
                            **getattr(request, "param", {}))
    with TokendProcess(config, tmp_path / "tokend") as process:
        yield process


@pytest.fixture
def client_tracer(collector: tuple[Collector, str]) -> Iterator[trace.Tracer]:
    """The calling application: its own provider, exporting to the same collector."""
    provider = TracerProvider(resource=Resource({"service.name": "test-client"}))
    endpoint = collector[1].removeprefix("http://")
    provider.add_span_processor(SimpleSpanProcessor(OTLPSpanExporter(endpoint=endpoint,
                                                                     insecure=True)))
    try:
        yield provider.get_tracer("test-client")
    finally:
        provider.shutdown()


def _traced_call(tracer: trace.Tracer, name: str, call: Any, request: Any
                 ) -> tuple[Any, trace.SpanContext]:
    """One RPC inside a CLIENT span whose context travels as W3C traceparent metadata."""
    with tracer.start_as_current_span(name, kind=trace.SpanKind.CLIENT) as span:
        carrier: dict[str, str] = {}
        TraceContextTextMapPropagator().inject(carrier)
        assert "traceparent" in carrier
        return call(request, metadata=list(carrier.items()), timeout=10), \
            span.get_span_context()


def _wait_for(collector: Collector, predicate: Any, timeout: float = 20.0
              ) -> list[tuple[dict[str, Any], trace_pb2.Span]]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        spans = collector.spans()
        if predicate(spans):
            return spans
        time.sleep(0.1)
    names = sorted(span.name for _, span in collector.spans())
    raise AssertionError(f"expected spans not exported within {timeout} s; got {names}")


def _one(spans: list[tuple[dict[str, Any], trace_pb2.Span]], **match: Any
         ) -> tuple[dict[str, Any], trace_pb2.Span, dict[str, Any]]:
    found = []
    for resource, span in spans:
        attributes = _attributes(span.attributes)
        if all((span.name if key == "name" else
                span.trace_id if key == "trace_id" else
                span.parent_span_id if key == "parent_span_id" else
                attributes.get(key)) == value for key, value in match.items()):
            found.append((resource, span, attributes))
    assert len(found) == 1, f"{len(found)} spans match {match}"
    return found[0]


def test_client_span_to_rpc_span_to_vault_span(
        traced_tokend: TokendProcess, collector: tuple[Collector, str],
        client_tracer: trace.Tracer) -> None:
    receiver = collector[0]
    stub = traced_tokend.stub
    issued, issue_ctx = _traced_call(client_tracer, "client Issue", stub.Issue, pb.IssueRequest(
        subject="alice", audience=[AUDIENCE], include_refresh_token=True))
    verified, verify_ctx = _traced_call(client_tracer, "client Verify", stub.Verify,
                                        pb.VerifyRequest(token=issued.access_token,
                                                         audience=AUDIENCE))
    assert verified.valid
    head, payload, signature = issued.access_token.split(".")
    tampered = f"{head}.{payload}.{signature[:-4]}AAAA"
    refused, refused_ctx = _traced_call(client_tracer, "client Verify bad", stub.Verify,
                                        pb.VerifyRequest(token=tampered, audience=AUDIENCE))
    assert not refused.valid
    refreshed, refresh_ctx = _traced_call(client_tracer, "client Refresh", stub.Refresh,
                                          pb.RefreshRequest(refresh_token=issued.refresh_token))

    def complete(spans: list[tuple[dict[str, Any], trace_pb2.Span]]) -> bool:
        names = [span.name for _, span in spans]
        return (names.count(f"{SERVICE}/Verify") >= 2 and f"{SERVICE}/Issue" in names
                and "tokend.sign_batch" in names and "POST" in names
                and "create_family" in names and names.count("client Verify bad") == 1
                and "rotate_refresh" in names and "client Refresh" in names)

    spans = _wait_for(receiver, complete)
    trace_id = issue_ctx.trace_id.to_bytes(16, "big")

    # client -> tokend: the RPC span continues the caller's trace.
    client_resource, client_span, _ = _one(spans, name="client Issue")
    assert client_resource["service.name"] == "test-client"
    resource, rpc, attributes = _one(spans, name=f"{SERVICE}/Issue")
    assert resource["service.name"] == "tokend-under-test"
    assert rpc.kind == SERVER
    assert rpc.trace_id == trace_id == client_span.trace_id
    assert rpc.parent_span_id == client_span.span_id
    assert attributes["rpc.system"] == "grpc"
    assert attributes["rpc.service"] == SERVICE
    assert attributes["rpc.method"] == "Issue"
    assert attributes["rpc.grpc.status_code"] == 0
    assert attributes["tokend.outcome"] == "ok"
    assert attributes["tokend.caller"] == _audited_caller(traced_tokend, "rpc.Issue")
    assert attributes["tokend.caller.kind"] == "local"  # no certificate: plaintext
    assert attributes["tokend.jti"] == _claims(issued.access_token)["jti"]

    # tokend -> the signing batch -> Vault's transit/sign.
    _, batch, batch_attributes = _one(spans, name="tokend.sign_batch", trace_id=trace_id)
    assert batch.parent_span_id == rpc.span_id
    assert batch_attributes["tokend.sign.batch_size"] == 1
    _, post, post_attributes = _one(spans, name="POST", trace_id=trace_id)
    assert post.kind == CLIENT
    assert post.parent_span_id == batch.span_id
    assert post_attributes["http.response.status_code"] == 200
    assert post_attributes["url.path"] == "/v1/transit/sign/tracing-e2e"
    # ...and the store transaction of the refresh family.
    _, store, store_attributes = _one(spans, name="create_family", trace_id=trace_id)
    assert store.parent_span_id == rpc.span_id and store.kind == CLIENT
    assert store_attributes["db.system.name"] == "sqlite"

    # Verify: its own trace from its own client span; a refusal says why.
    _, ok, ok_attributes = _one(spans, name=f"{SERVICE}/Verify",
                                trace_id=verify_ctx.trace_id.to_bytes(16, "big"))
    assert ok.parent_span_id == verify_ctx.span_id.to_bytes(8, "big")
    assert ok_attributes["tokend.outcome"] == "ok"
    _, bad, bad_attributes = _one(spans, name=f"{SERVICE}/Verify",
                                  trace_id=refused_ctx.trace_id.to_bytes(16, "big"))
    assert bad_attributes["tokend.outcome"] == "rejected"
    assert bad_attributes["tokend.reason"] == "BAD_SIGNATURE"
    assert bad.parent_span_id == refused_ctx.span_id.to_bytes(8, "big")

    # Refresh: the rotation's store transaction nests in its RPC span.
    refresh_trace = refresh_ctx.trace_id.to_bytes(16, "big")
    _, refresh, refresh_attributes = _one(spans, name=f"{SERVICE}/Refresh",
                                          trace_id=refresh_trace)
    assert refresh_attributes["rpc.grpc.status_code"] == 0
    assert refresh_attributes["tokend.jti"] == _claims(refreshed.access_token)["jti"]
    _, rotate, rotate_attributes = _one(spans, name="rotate_refresh", trace_id=refresh_trace)
    assert rotate.parent_span_id == refresh.span_id
    assert rotate_attributes["db.operation.name"] == "rotate_refresh"

    # Nothing secret anywhere in what was exported: no token, no part of one.
    raw = receiver.raw()
    secrets = [issued.access_token, issued.refresh_token, tampered, payload, signature,
               issued.refresh_token[:16], traced_tokend_vault_token(traced_tokend),
               refreshed.access_token, refreshed.refresh_token,
               refreshed.access_token.split(".")[2]]
    for secret in secrets:
        assert secret.encode() not in raw, "a token or secret reached the exported spans"


def test_concurrent_issues_share_a_batch_and_each_trace_shows_it(
        traced_tokend: TokendProcess, collector: tuple[Collector, str],
        client_tracer: trace.Tracer) -> None:
    """Each Issue span is the batch span's parent or linked to it, and the batch span
    links back to every other RPC it signed for."""
    receiver, stub = collector[0], traced_tokend.stub
    for _ in range(3):  # coalescing depends on timing: a few rounds until one batch > 1
        calls = []
        for index in range(16):
            with client_tracer.start_as_current_span(f"client {index}"):
                carrier: dict[str, str] = {}
                TraceContextTextMapPropagator().inject(carrier)
                calls.append(stub.Issue.future(
                    pb.IssueRequest(subject=f"s{index}", audience=[AUDIENCE]),
                    metadata=list(carrier.items()), timeout=10))
        for call in calls:
            call.result()
        time.sleep(0.5)
        batches = [(span, _attributes(span.attributes)) for _, span in receiver.spans()
                   if span.name == "tokend.sign_batch"]
        if any(attributes["tokend.sign.batch_size"] > 1 for _, attributes in batches):
            break
    spans = _wait_for(receiver, lambda s: sum(
        span.name == f"{SERVICE}/Issue" for _, span in s) >= 16)
    issues = {span.span_id: span for _, span in spans if span.name == f"{SERVICE}/Issue"}
    batches = [span for _, span in spans if span.name == "tokend.sign_batch"]
    assert any(_attributes(b.attributes)["tokend.sign.batch_size"] > 1 for b in batches)
    by_id = {b.span_id: b for b in batches}
    for issue in issues.values():
        parent_of = [b for b in batches if b.parent_span_id == issue.span_id]
        linked = [link.span_id for link in issue.links if link.span_id in by_id]
        assert len(parent_of) + len(linked) == 1, "each Issue rides in exactly one batch"
        if linked:
            batch = by_id[linked[0]]
            assert issue.span_id in {link.span_id for link in batch.links}
    for batch in batches:
        size = _attributes(batch.attributes)["tokend.sign.batch_size"]
        members = [batch.parent_span_id, *(link.span_id for link in batch.links)]
        assert len(members) == size


@pytest.mark.parametrize("traced_tokend", [{"rate_limit": {"per_second": 0.01, "burst": 1}}],
                         indirect=True)
def test_refused_and_failed_calls_say_so(
        traced_tokend: TokendProcess, collector: tuple[Collector, str],
        client_tracer: trace.Tracer) -> None:
    """Refused at admission (rate limit): outcome refused, its code, and no error status
    (RESOURCE_EXHAUSTED is the caller's to handle, not a server fault)."""
    receiver, stub = collector[0], traced_tokend.stub
    request = pb.IssueRequest(subject="bob", audience=[AUDIENCE])
    _traced_call(client_tracer, "client Issue 1", stub.Issue, request)
    with pytest.raises(grpc.RpcError) as limited:
        _traced_call(client_tracer, "client Issue 2", stub.Issue, request)
    assert limited.value.code() is grpc.StatusCode.RESOURCE_EXHAUSTED
    spans = _wait_for(receiver, lambda s: sum(
        span.name == f"{SERVICE}/Issue" for _, span in s) >= 2)
    _, client_span, _ = _one(spans, name="client Issue 2")
    _, refused, attributes = _one(spans, name=f"{SERVICE}/Issue",
                                  parent_span_id=client_span.span_id)
    assert attributes["tokend.outcome"] == "refused"
    assert attributes["rpc.grpc.status_code"] == grpc.StatusCode.RESOURCE_EXHAUSTED.value[0]
    assert refused.status.code != trace_pb2.Status.StatusCode.STATUS_CODE_ERROR


def test_tracing_off_builds_no_tracer(tokend: RunningTokend) -> None:
    """The default: no provider, and every component holds None (the one check)."""
    app = tokend.app
    assert tokend.settings.tracing.enabled is False
    assert app.tracing is None
    assert app._tracer is None
    assert tokend.stub.GetJwks(pb.GetJwksRequest(), timeout=10).jwks_json
    servicer_tracers = [app._batcher._tracer, app._store._tracer,  # type: ignore[union-attr]
                        app._vault.transport._tracer]  # type: ignore[union-attr]
    assert servicer_tracers == [None, None, None]


def test_off_imports_no_sdk() -> None:
    """Off, the OpenTelemetry SDK and exporters are not even imported."""
    code = ("import sys; from tokend.config import TracingConfig; "
            "from tokend.tracing import build_tracing; "
            "assert build_tracing(TracingConfig()) is None; "
            "print(sorted(m for m in sys.modules if m.startswith('opentelemetry.sdk') "
            "or m.startswith('opentelemetry.exporter')))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=60, check=True)
    assert done.stdout.strip() == "[]"


@pytest.mark.parametrize("environ", [
    {"OTEL_SDK_DISABLED": "true"},
    {"OTEL_TRACES_EXPORTER": "none"},
])
def test_standard_variables_turn_it_off(environ: dict[str, str]) -> None:
    assert build_tracing(TracingConfig(enabled=True), environ) is None


@pytest.mark.parametrize("environ", [
    {"OTEL_TRACES_EXPORTER": "zipkin"},
    {"OTEL_EXPORTER_OTLP_PROTOCOL": "http/json"},
])
def test_an_exporter_tokend_lacks_fails_at_start(environ: dict[str, str]) -> None:
    with pytest.raises(TracingConfigError):
        build_tracing(TracingConfig(enabled=True), environ)


def test_service_name_defaults_to_tokend() -> None:
    tracing = build_tracing(TracingConfig(enabled=True), {"OTEL_TRACES_EXPORTER": "console"})
    assert tracing is not None
    try:
        resource = tracing.provider.resource.attributes
        assert resource["service.name"] == "tokend"
    finally:
        tracing.shutdown()


def _audited_caller(process: TokendProcess, event: str) -> str:
    for line in (process.directory / "audit.jsonl").read_text().splitlines():
        record = json.loads(line)
        if record.get("event") == event:
            return str(record["caller"])
    raise AssertionError(f"no {event} in the audit log")


def _claims(token: str) -> dict[str, Any]:
    import base64

    payload = token.split(".")[1]
    return dict(json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4))))


def traced_tokend_vault_token(process: TokendProcess) -> str:
    """The Vault token tokend was configured with (from its settings file)."""
    import yaml

    return str(yaml.safe_load(process.config_path.read_text())["vault"]["token"])


def test_console_exporter_keeps_off_the_audit_stream() -> None:
    """stdout is the audit stream (audit_log: -): console spans go to stderr."""
    code = ("import os; os.environ['OTEL_TRACES_EXPORTER'] = 'console'; "
            "from tokend.logs import configure_logging; configure_logging(); "
            "from tokend.config import TracingConfig; "
            "from tokend.tracing import build_tracing; "
            "t = build_tracing(TracingConfig(enabled=True)); "
            "t.tracer.start_span('console-probe').end(); t.shutdown()")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=60, check=True)
    assert done.stdout == ""
    assert "console-probe" in done.stderr


def test_a_verify_many_span_names_its_batch_size(
        traced_tokend: TokendProcess, collector: tuple[Collector, str],
        client_tracer: trace.Tracer) -> None:
    receiver, stub = collector[0], traced_tokend.stub
    batch = pb.VerifyManyRequest(requests=[pb.VerifyRequest(token="a.b.c", audience=AUDIENCE)
                                           for _ in range(3)])
    answer, context = _traced_call(client_tracer, "client VerifyMany", stub.VerifyMany, batch)
    assert [r.response.reason for r in answer.results] == [pb.REASON_MALFORMED] * 3
    spans = _wait_for(receiver, lambda s: any(
        span.name == f"{SERVICE}/VerifyMany" for _, span in s))
    _, _, attributes = _one(spans, name=f"{SERVICE}/VerifyMany",
                            trace_id=context.trace_id.to_bytes(16, "big"))
    assert attributes["tokend.batch_size"] == 3
    assert attributes["tokend.outcome"] == "ok"
    assert attributes["rpc.grpc.status_code"] == 0
