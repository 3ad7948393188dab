"""Optional OpenTelemetry traces from ingest to delivery (`pip install 'hookyard[otel]'` and
`[server] tracing = true`).

Hookyard creates spans through the OpenTelemetry API; where they go is the SDK's business
(configure a TracerProvider and exporter, for example with `opentelemetry-instrument`). The
ingest span's context is stored with the event, so each delivery attempt is a child of the
request that brought its event, however much later it runs, and the destination receives a
`traceparent` header to continue the trace.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

try:
    from opentelemetry import propagate, trace
except ImportError:  # the optional extra is not installed
    propagate = trace = None  # type: ignore[assignment]

AVAILABLE = trace is not None


class Tracing:
    """Spans when enabled; nothing at all (not even no-op spans) when not."""

    def __init__(self, enabled: bool) -> None:
        if enabled and not AVAILABLE:
            raise RuntimeError("tracing needs the otel extra: pip install 'hookyard[otel]'")
        self.enabled = enabled
        self._tracer = trace.get_tracer("hookyard") if enabled else None

    @contextlib.contextmanager
    def span(
        self, name: str, attributes: dict[str, Any], parent: str | None = None
    ) -> Iterator[dict[str, str]]:
        """Run the block in a span (child of the `parent` traceparent, if given); yields a
        carrier holding the span's own traceparent, to store or to send on."""
        if self._tracer is None:
            yield {}
            return
        context = propagate.extract({"traceparent": parent}) if parent else None
        with self._tracer.start_as_current_span(name, context=context, attributes=attributes):
            carrier: dict[str, str] = {}
            propagate.inject(carrier)
            yield carrier
