"""OpenTelemetry tracing, opt-in (`tracing.enabled`), exported as the OTEL_* variables say.

app.py builds one `Tracing` (or none) and hands its tracer to the servicer, the signing
batcher, the Vault transport and the store. Off, nothing else exists: no provider, no
span, no context read from metadata; the request path checks one `None`.

Span contents are chosen here, in one place, so that nothing secret can slip in: method,
status code, caller identity (kind-qualified, as in the audit), outcome, reason, jti.
Never a token, a refresh token, an idempotency key or a Vault token.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import metadata
from typing import TYPE_CHECKING, Any

import grpc
import structlog
from opentelemetry import context as otel_context
from opentelemetry import propagate, trace
from opentelemetry.propagators.textmap import Getter
from opentelemetry.trace import Link, SpanKind, Status, StatusCode

from tokend.api.identity import UnusableCertificate

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SpanExporter

    from tokend.api.calls import CallContext
    from tokend.config import TracingConfig

log = structlog.get_logger("tokend.tracing")

SERVICE = "tokend.v1.TokenService"
INSTRUMENTATION = "tokend"
# Server-side gRPC codes that mark the span as failed (OTel RPC semantic conventions);
# the others (INVALID_ARGUMENT, PERMISSION_DENIED...) are the caller's error, not ours.
_SERVER_ERRORS = frozenset({
    grpc.StatusCode.UNKNOWN, grpc.StatusCode.DEADLINE_EXCEEDED,
    grpc.StatusCode.UNIMPLEMENTED, grpc.StatusCode.INTERNAL,
    grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DATA_LOSS,
})
# What a handler's audit record may add to its span: identifiers, never token text.
_AUDIT_ATTRIBUTES = (("reason", "tokend.reason"), ("jti", "tokend.jti"),
                     ("error_reason", "tokend.error.reason"),  # docs/errors.md
                     ("batch_size", "tokend.batch_size"))  # VerifyMany
_EXPORTERS = frozenset({"otlp", "console", "none"})
_PROTOCOLS = frozenset({"grpc", "http/protobuf"})


class TracingConfigError(ValueError):
    """An OTEL_* variable names something tokend cannot export with."""


@dataclass
class Tracing:
    """The provider (flushed and stopped by `shutdown`) and the tracer it hands out."""

    provider: TracerProvider
    tracer: trace.Tracer

    def shutdown(self) -> None:
        """Exports what is buffered (bounded by OTEL_BSP_EXPORT_TIMEOUT), then stops."""
        self.provider.shutdown()


def build_tracing(config: TracingConfig, environ: dict[str, str] | None = None) -> Tracing | None:
    """A Tracing when `tracing.enabled` and the OTEL_* variables leave it on, else None.

    Raises TracingConfigError for an exporter or protocol tokend does not ship, so a
    typo fails at start rather than silently tracing nowhere.
    """
    env = os.environ if environ is None else environ
    if not config.enabled:
        return None
    if env.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        log.info("tracing.off", why="OTEL_SDK_DISABLED=true")
        return None
    names = _exporter_names(env)
    if names == ["none"]:
        log.info("tracing.off", why="OTEL_TRACES_EXPORTER=none")
        return None
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    # The sampler (OTEL_TRACES_SAMPLER, default parentbased_always_on), span limits and
    # the batch processor's queue and delays (OTEL_BSP_*) are read from the environment.
    provider = TracerProvider(resource=_resource(env))
    for name in names:
        provider.add_span_processor(BatchSpanProcessor(_exporter(name, env)))
    version = _version()
    log.info("tracing.on", exporters=names, protocol=_protocol(env))
    return Tracing(provider, provider.get_tracer(INSTRUMENTATION, version))


def _exporter_names(env: dict[str, str] | os._Environ[str]) -> list[str]:
    raw = env.get("OTEL_TRACES_EXPORTER", "otlp")
    names = [part.strip().lower() for part in raw.split(",") if part.strip()] or ["otlp"]
    unknown = [name for name in names if name not in _EXPORTERS]
    if unknown:
        raise TracingConfigError(
            f"OTEL_TRACES_EXPORTER={raw!r}: tokend exports with otlp, console or none, "
            f"not {', '.join(unknown)}")
    return [name for name in names if name != "none"] or ["none"]


def _protocol(env: dict[str, str] | os._Environ[str]) -> str:
    # The specification's default; the signal-specific variable wins over the general one.
    raw = (env.get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL")
           or env.get("OTEL_EXPORTER_OTLP_PROTOCOL") or "http/protobuf").strip().lower()
    if raw not in _PROTOCOLS:
        raise TracingConfigError(
            f"OTEL_EXPORTER_OTLP_PROTOCOL={raw!r}: tokend exports with grpc or http/protobuf")
    return raw


def _exporter(name: str, env: dict[str, str] | os._Environ[str]) -> SpanExporter:
    """The exporter reads its endpoint, headers, certificates, compression and timeout
    from OTEL_EXPORTER_OTLP_[TRACES_]* itself."""
    if name == "console":
        from opentelemetry.sdk.trace.export import ConsoleSpanExporter

        # stderr, with the logs: stdout is the audit stream by default (audit_log: -).
        return ConsoleSpanExporter(out=sys.stderr)
    if _protocol(env) == "grpc":
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter

        return OTLPSpanExporter()
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import (
        OTLPSpanExporter as HttpExporter,
    )

    return HttpExporter()


def _resource(env: dict[str, str] | os._Environ[str]) -> Any:
    """OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES as given; "tokend" when unnamed."""
    from opentelemetry.sdk.resources import SERVICE_NAME, SERVICE_VERSION, Resource

    detected = Resource.create({SERVICE_VERSION: _version()})
    named = env.get("OTEL_SERVICE_NAME") or "service.name=" in env.get(
        "OTEL_RESOURCE_ATTRIBUTES", "")
    if named:
        return detected
    return detected.merge(Resource({SERVICE_NAME: "tokend"}))


def _version() -> str:
    try:
        return metadata.version("tokend")
    except metadata.PackageNotFoundError:
        return "unknown"


# -- the span of one RPC ------------------------------------------------------------------


class _MetadataGetter(Getter[Sequence[Any]]):
    """W3C traceparent/tracestate (and baggage) from a call's invocation metadata."""

    def get(self, carrier: Sequence[Any], key: str) -> list[str] | None:
        values = [value for name, value in carrier if name == key and isinstance(value, str)]
        return values or None

    def keys(self, carrier: Sequence[Any]) -> list[str]:
        return [name for name, _ in carrier]


_GETTER = _MetadataGetter()


class RpcSpan:
    """The SERVER span of one call, current (so store and signing spans nest under it)
    until `end`. Made only when tracing is on."""

    __slots__ = ("_span", "_token")

    def __init__(self, tracer: trace.Tracer, method: str,
                 context: grpc.aio.ServicerContext) -> None:
        # The caller's trace context (W3C Trace Context, as OTEL_PROPAGATORS says).
        parent = propagate.extract(context.invocation_metadata() or (), getter=_GETTER)
        self._span = tracer.start_span(
            f"{SERVICE}/{method}", context=parent, kind=SpanKind.SERVER,
            attributes={"rpc.system": "grpc", "rpc.service": SERVICE, "rpc.method": method})
        self._token = otel_context.attach(trace.set_span_in_context(self._span, parent))

    def end(self, code: grpc.StatusCode, call: CallContext | None) -> None:
        """Records the status code, the caller and the outcome, then ends the span."""
        span = self._span
        if not span.is_recording():  # not sampled: nothing to describe, nothing to export
            otel_context.detach(self._token)
            return
        try:
            # One set_attributes: each call takes the span's lock.
            attributes: dict[str, str | int] = {"rpc.grpc.status_code": code.value[0]}
            if call is None:  # refused at admission, before any handler ran
                attributes["tokend.outcome"] = "refused"
            else:
                _describe_call(attributes, call, code)
            if code in _SERVER_ERRORS:
                attributes["error.type"] = code.name
                span.set_status(Status(StatusCode.ERROR))
            span.set_attributes(attributes)
        finally:
            otel_context.detach(self._token)
            span.end()


def _describe_call(attributes: dict[str, str | int], call: CallContext,
                   code: grpc.StatusCode) -> None:
    audit = call.audit
    # The audit's label (spiffe://…, dns:…, cn:… or the local default) and its kind.
    attributes["tokend.caller"] = call.caller
    try:
        attributes["tokend.caller.kind"] = call.identity.kind.value
    except UnusableCertificate:
        attributes["tokend.caller.kind"] = "unusable"
    outcome = audit.get("outcome") or ("ok" if code is grpc.StatusCode.OK else "error")
    attributes["tokend.outcome"] = str(outcome)
    for key, attribute in _AUDIT_ATTRIBUTES:
        value = audit.get(key)
        if (isinstance(value, str) and value) or isinstance(value, int):
            attributes[attribute] = value


# -- signing batches ----------------------------------------------------------------------


def member_span() -> trace.Span:
    """The span of the caller asking for a signature (its RPC's span)."""
    return trace.get_current_span()


def start_batch_span(tracer: trace.Tracer, members: Sequence[trace.Span], *, size: int,
                     kid: str) -> tuple[trace.Span, object]:
    """The span of one signing batch: a child of its first member's RPC span, linked to
    every other member's (and they to it), so each RPC's trace shows the batch it rode
    in. Returns the span and the context token to `detach` once its task is created."""
    first, others = members[0], members[1:]
    links = [Link(m.get_span_context(), {"tokend.link": "sign_batch_member"})
             for m in others if m.get_span_context().is_valid]
    span = tracer.start_span(
        "tokend.sign_batch", context=trace.set_span_in_context(first),
        kind=SpanKind.INTERNAL, links=links,
        attributes={"tokend.sign.batch_size": size, "tokend.sign.kid": kid,
                    "tokend.sign.rpc_spans": len(members)})
    batch = span.get_span_context()
    for member in others:
        if member.is_recording():
            member.add_link(batch, {"tokend.link": "sign_batch"})
    return span, otel_context.attach(trace.set_span_in_context(span))


def detach(token: object) -> None:
    otel_context.detach(token)  # type: ignore[arg-type]


def end_batch_span(span: trace.Span, error: BaseException | None, failed_items: int) -> None:
    if error is not None:
        span.set_attribute("error.type", type(error).__name__)
        span.set_status(Status(StatusCode.ERROR))
    elif failed_items:
        span.set_attribute("tokend.sign.failed_items", failed_items)
    span.end()


# -- client spans (Vault, store) ----------------------------------------------------------


def client_span(tracer: trace.Tracer, name: str, attributes: dict[str, Any], *,
                only_in_trace: bool = False) -> trace.Span | None:
    """A CLIENT span under the current one. `only_in_trace`: none outside a recording
    span, so background polls (the revocation follower) do not start a trace each."""
    if only_in_trace and not trace.get_current_span().is_recording():
        return None
    return tracer.start_span(name, kind=SpanKind.CLIENT, attributes=attributes)


def use(span: trace.Span) -> Any:
    """`with use(span):` makes `span` current and ends it, recording an error's type
    (never its message: a driver's message may quote a value)."""
    return trace.use_span(span, end_on_exit=True, record_exception=False,
                          set_status_on_exception=False)


def failed(span: trace.Span, error: BaseException) -> None:
    span.set_attribute("error.type", type(error).__name__)
    span.set_status(Status(StatusCode.ERROR))

