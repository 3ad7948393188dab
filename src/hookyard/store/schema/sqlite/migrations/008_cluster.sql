-- Version 8: state that several processes share, so that limits hold across nodes.
-- A destination's rate-limit bucket (the claim that takes tokens updates it).
CREATE TABLE destination_pace (
    name        TEXT PRIMARY KEY,
    tokens      REAL NOT NULL,
    refilled_at REAL NOT NULL
);

-- Scheduled jobs (dedup expiry, statistics): the process that moves next_run_at runs the job,
-- so each runs once per interval across the cluster, not once per process.
CREATE TABLE jobs (
    name        TEXT PRIMARY KEY,
    next_run_at REAL NOT NULL,
    last_run_by TEXT
);

UPDATE schema_version SET version = 8;
