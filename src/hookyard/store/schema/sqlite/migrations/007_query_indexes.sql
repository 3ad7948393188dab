-- Version 7: indexes for the event list's rare-match filters (measured on a million events by
-- bench/query.py): a provider's event id, and dead deliveries (few, so a partial index is
-- cheap to keep).
CREATE INDEX events_provider_event_id ON events (provider_event_id)
    WHERE provider_event_id IS NOT NULL;
CREATE INDEX deliveries_dead ON deliveries (event_id) WHERE status = 'dead';

UPDATE schema_version SET version = 7;
