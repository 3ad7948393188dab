-- Version 6: the W3C trace context of the ingest span (tracing enabled), so that deliveries
-- continue the trace of the request that brought their event.
ALTER TABLE events ADD COLUMN trace_context TEXT;

UPDATE schema_version SET version = 6;
