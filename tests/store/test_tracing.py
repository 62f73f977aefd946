"""Store spans (OpsStore._run, both backends): one CLIENT span per transaction inside a
traced call, none for background work outside one, and a failure recorded by type only."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from tokend.store import ConflictError, Store
from tokend.store.postgres import PostgresStore
from tokend.store.sqlite import SqliteStore

from .conformance import family, token


@pytest.fixture
def exporter() -> InMemorySpanExporter:
    return InMemorySpanExporter()


@pytest.fixture
def tracer(exporter: InMemorySpanExporter) -> trace.Tracer:
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return provider.get_tracer("test")


@pytest.fixture(params=["sqlite", "postgresql"])
async def traced_store(request: pytest.FixtureRequest, tmp_path: Path, tracer: trace.Tracer
                       ) -> AsyncIterator[tuple[Store, str]]:
    if request.param == "sqlite":
        store: Store = SqliteStore(tmp_path / "tokend.db", tracer=tracer)
    else:
        store = PostgresStore(request.getfixturevalue("postgres_database"), max_size=2,
                              tracer=tracer)
    await store.open()
    try:
        yield store, request.param
    finally:
        await store.close()


async def test_a_transaction_in_a_traced_call_is_its_child(
        traced_store: tuple[Store, str], tracer: trace.Tracer,
        exporter: InMemorySpanExporter) -> None:
    store, system = traced_store
    await store.last_seq()  # no call span around it: a background poll starts no trace
    assert exporter.get_finished_spans() == ()
    with tracer.start_as_current_span("rpc") as rpc:
        await store.create_family(family(), token("first"))
        with pytest.raises(ConflictError):  # the same family again
            await store.create_family(family(), token("first"))
    spans = [s for s in exporter.get_finished_spans() if s.name == "create_family"]
    assert len(spans) == 2
    for span in spans:
        assert span.kind is SpanKind.CLIENT
        assert span.parent is not None
        assert span.parent.span_id == rpc.get_span_context().span_id
        assert span.attributes is not None
        assert span.attributes["db.system.name"] == system
        assert span.attributes["db.operation.name"] == "create_family"
    ok, failed = spans
    assert ok.status.status_code is StatusCode.UNSET
    assert failed.status.status_code is StatusCode.ERROR
    assert failed.attributes is not None and failed.attributes["error.type"] == "ConflictError"
    assert not failed.events  # no exception event: a driver's message may quote a value
