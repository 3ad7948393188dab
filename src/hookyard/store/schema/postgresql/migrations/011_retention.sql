-- Version 11: retention (retention.py).
-- A request row goes when the last of its events does (retention.py): found by this index.
CREATE INDEX events_request ON events (request_id) WHERE request_id IS NOT NULL;
-- Hints whose fetch failed for good have no event to go with: retention finds them here.
CREATE INDEX requests_failed ON requests (id) WHERE state = 'failed';

-- How far each source's payload retention has gone: the ids up to `swept_to` were examined,
-- so a sweep does not walk again the rows whose payload it already removed.
CREATE TABLE retention_marks (
    source   TEXT NOT NULL,
    kind     TEXT NOT NULL,             -- payloads
    swept_to TEXT NOT NULL,
    PRIMARY KEY (source, kind)
);

-- The last sweeps: what each removed, and what was left (per source: events, oldest, bytes).
CREATE TABLE sweeps (
    id          TEXT PRIMARY KEY,
    started_at  DOUBLE PRECISION NOT NULL,
    finished_at DOUBLE PRECISION,
    removed     TEXT NOT NULL,          -- JSON {"events": n, "payloads": n, ...}
    usage       TEXT,                   -- JSON, measured after the sweep
    error       TEXT
);

UPDATE schema_version SET version = 11;
