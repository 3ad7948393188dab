-- Version 12: events are partitioned by id range, which is time (ids sort by creation time).
-- Retention (store/partitions.py) adds a partition per span (a day by default) ahead of time
-- and drops a span whole once everything in it is past retention: no row-by-row deletes, no
-- dead rows for vacuum, and the disk space back at once. The rows stored before this version,
-- and any that find no partition of their own, live in events_default.
ALTER TABLE events RENAME TO events_default;
-- The names PostgreSQL gives a partition's copies of the parent's indexes, so that the indexes
-- below adopt these instead of building new ones (and match a new database's).
ALTER INDEX events_pkey RENAME TO events_default_pkey;
ALTER INDEX events_source RENAME TO events_default_source_id_idx;
ALTER INDEX events_provider_event_id RENAME TO events_default_provider_event_id_idx;
ALTER INDEX events_request RENAME TO events_default_request_id_idx;
-- Payload field indexes ([server] indexed_fields) likewise: at the next start the parent's index
-- of each field still configured adopts its copy, and the others are dropped
-- (queries.sync_field_indexes).
DO $$
DECLARE found record;
BEGIN
    FOR found IN SELECT indexname FROM pg_indexes
        WHERE schemaname = current_schema() AND tablename = 'events_default'
        AND indexname LIKE 'events\_field\_%'
    LOOP
        EXECUTE format('ALTER INDEX %I RENAME TO %I', found.indexname,
                       'events_default_' || substr(found.indexname, 8));
    END LOOP;
END
$$;

CREATE TABLE events (
    id                TEXT PRIMARY KEY,
    source            TEXT NOT NULL,
    origin            TEXT NOT NULL,    -- webhook | poll | reconcile | backfill | fetch-back | publish
    request_id        TEXT,
    received_at       DOUBLE PRECISION NOT NULL,
    provider_event_id TEXT,
    event_type        TEXT,
    dedup_key         TEXT,
    content_type      TEXT,
    payload           BYTEA,
    payload_size      INTEGER NOT NULL,
    trace_context     TEXT              -- W3C traceparent of the ingest span, when tracing
) PARTITION BY RANGE (id);
ALTER TABLE events ATTACH PARTITION events_default DEFAULT;
CREATE INDEX events_source ON events (source, id);
CREATE INDEX events_provider_event_id ON events (provider_event_id)
    WHERE provider_event_id IS NOT NULL;
CREATE INDEX events_request ON events (request_id) WHERE request_id IS NOT NULL;

UPDATE schema_version SET version = 12;
