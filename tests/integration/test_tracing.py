"""OpenTelemetry: a delivery attempt is a child of the ingest span, and the receiver gets the
trace context."""

from __future__ import annotations

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from tests.conftest import basic_config

EXPORTER = InMemorySpanExporter()


@pytest.fixture(scope="module", autouse=True)
def _provider() -> None:
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(EXPORTER))
    trace.set_tracer_provider(provider)


async def test_delivery_continues_the_ingest_trace(hookyard_factory, receiver):
    EXPORTER.clear()
    config = basic_config(receiver.url).replace(
        'listen = "127.0.0.1:0"', 'listen = "127.0.0.1:0"\ntracing = true', 1
    )
    async with hookyard_factory(config) as hy:
        event_id = (await hy.client.post("/in/open", content=b"traced")).json()["id"]
        await receiver.wait_for(1)
    spans = {span.name: span for span in EXPORTER.get_finished_spans()}
    ingest, deliver = spans["hookyard.ingest"], spans["hookyard.deliver"]
    assert deliver.context.trace_id == ingest.context.trace_id
    assert deliver.parent is not None and deliver.parent.span_id == ingest.context.span_id
    assert deliver.attributes["hookyard.event_id"] == event_id
    traceparent = receiver.received[0].headers["traceparent"]
    assert traceparent.split("-")[1] == f"{ingest.context.trace_id:032x}"


async def test_no_spans_when_tracing_is_off(hookyard_factory, receiver):
    EXPORTER.clear()
    async with hookyard_factory(basic_config(receiver.url)) as hy:
        await hy.client.post("/in/open", content=b"quiet")
        await receiver.wait_for(1)
    assert EXPORTER.get_finished_spans() == ()
    assert "traceparent" not in receiver.received[0].headers
