-- Hookyard schema, version 13 (SQLite): what migrations/*.sql build step by step. A new
-- database gets this file; an older one gets the migrations it lacks (a test checks both agree).
-- Ids are time-sortable text (see hookyard/ids.py); times are unix seconds (REAL).

CREATE TABLE schema_version (version INTEGER NOT NULL);

-- What arrived over HTTP, for accepted requests and pending hints. The body is NULL when it
-- is exactly the payload of the request's single event (stored once, in events.payload).
CREATE TABLE requests (
    id          TEXT PRIMARY KEY,
    source      TEXT NOT NULL,
    received_at REAL NOT NULL,
    method      TEXT NOT NULL,
    path        TEXT NOT NULL,
    query       TEXT NOT NULL,
    headers     BLOB NOT NULL,          -- JSON [[name, value], ...], credentials redacted
    peer        TEXT,
    body        BLOB,
    state       TEXT NOT NULL,          -- accepted | pending (a hint to fetch) | failed
    attempts    INTEGER NOT NULL DEFAULT 0,  -- fetches of a hint
    next_attempt_at REAL,                -- when a pending hint is fetched (next)
    last_error  TEXT
);
CREATE INDEX requests_pending ON requests (next_attempt_at) WHERE state = 'pending';

-- Accepted facts. Never changed after commit; retention may drop the payload or the row.
CREATE TABLE events (
    id                TEXT PRIMARY KEY,
    source            TEXT NOT NULL,
    origin            TEXT NOT NULL,    -- webhook | poll | reconcile | backfill | fetch-back | publish
    request_id        TEXT,
    received_at       REAL NOT NULL,
    provider_event_id TEXT,
    event_type        TEXT,
    dedup_key         TEXT,
    content_type      TEXT,
    payload           BLOB,
    payload_size      INTEGER NOT NULL,
    trace_context     TEXT              -- W3C traceparent of the ingest span, when tracing
);
CREATE INDEX events_source ON events (source, id);
CREATE INDEX events_provider_event_id ON events (provider_event_id)
    WHERE provider_event_id IS NOT NULL;

-- Dedup keys outlive their events for the window, so retention does not weaken them. The
-- readable form of an event's first key is events.dedup_key.
CREATE TABLE dedup (
    source     TEXT NOT NULL,
    key        BLOB NOT NULL,           -- 16-byte BLAKE2b digest of the key text
    event_id   TEXT NOT NULL,
    first_seen REAL NOT NULL,
    hits       INTEGER NOT NULL DEFAULT 0,   -- duplicates acknowledged and not delivered
    PRIMARY KEY (source, key)
) WITHOUT ROWID;
CREATE INDEX dedup_first_seen ON dedup (first_seen);

-- The queue: one row per (event, destination) per dispatch.
CREATE TABLE deliveries (
    id               TEXT PRIMARY KEY,
    event_id         TEXT NOT NULL,
    destination      TEXT NOT NULL,
    status           TEXT NOT NULL,     -- pending | in_flight | retrying | held | succeeded | dead
    attempts         INTEGER NOT NULL DEFAULT 0,
    next_attempt_at  REAL NOT NULL,
    lease_until      REAL,
    replay           INTEGER NOT NULL DEFAULT 0,
    created_at       REAL NOT NULL,
    updated_at       REAL NOT NULL,
    last_status_code INTEGER,
    last_error       TEXT,
    ordering_key     TEXT               -- set for destinations that deliver in order
);
CREATE INDEX deliveries_due ON deliveries (destination, next_attempt_at)
    WHERE status IN ('pending', 'retrying');
CREATE INDEX deliveries_leased ON deliveries (destination, lease_until) WHERE status = 'in_flight';
CREATE INDEX deliveries_event ON deliveries (event_id);
CREATE INDEX deliveries_dead ON deliveries (event_id) WHERE status = 'dead';
CREATE INDEX deliveries_ordered ON deliveries (destination, ordering_key, id)
    WHERE ordering_key IS NOT NULL AND status IN ('pending', 'retrying', 'in_flight');

CREATE TABLE attempts (
    id               TEXT PRIMARY KEY,
    delivery_id      TEXT NOT NULL,
    event_id         TEXT NOT NULL,
    destination      TEXT NOT NULL,
    number           INTEGER NOT NULL,
    started_at       REAL NOT NULL,
    duration_ms      REAL NOT NULL,
    status_code      INTEGER,
    response_excerpt TEXT,
    error            TEXT,
    replay           INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX attempts_delivery ON attempts (delivery_id);

-- Rejected requests: a bounded, sampled log written off the commit path.
CREATE TABLE rejected (
    id          TEXT PRIMARY KEY,
    source      TEXT NOT NULL,
    received_at REAL NOT NULL,
    status      INTEGER NOT NULL,
    code        TEXT NOT NULL,
    reason      TEXT NOT NULL,
    method      TEXT NOT NULL,
    path        TEXT NOT NULL,
    query       TEXT NOT NULL,
    headers     BLOB NOT NULL,
    peer        TEXT,
    body        BLOB,                  -- the first 64 KiB
    body_size   INTEGER NOT NULL
);

CREATE TABLE tokens (
    id         TEXT PRIMARY KEY,
    name       TEXT NOT NULL,
    hash       TEXT NOT NULL UNIQUE,   -- sha256 of the token; the token itself is never stored
    scope      TEXT NOT NULL,          -- admin | read | publish:SOURCE | relay:DESTINATION
    created_at REAL NOT NULL,
    revoked_at REAL
);

-- Deliveries of a destination that is not active are shown as `held` and are not claimed.
CREATE TABLE destination_state (
    name          TEXT PRIMARY KEY,
    state         TEXT NOT NULL,        -- active | paused | disabled
    reason        TEXT,
    changed_at    REAL NOT NULL,
    failing_since REAL,                 -- first failure since the last success
    last_failure_at REAL
);

-- The audit log of administrative actions (who, what, when).
CREATE TABLE audit (
    id         TEXT PRIMARY KEY,
    at         REAL NOT NULL,
    token_id   TEXT,
    token_name TEXT,
    action     TEXT NOT NULL,          -- e.g. destination.pause, events.replay, token.create
    target     TEXT,
    detail     TEXT                    -- JSON
);

-- A destination's rate-limit bucket, shared by every process that claims its deliveries.
CREATE TABLE destination_pace (
    name        TEXT PRIMARY KEY,
    tokens      REAL NOT NULL,
    refilled_at REAL NOT NULL
);

-- Scheduled jobs: the process that moves next_run_at runs the job (once per cluster).
CREATE TABLE jobs (
    name        TEXT PRIMARY KEY,
    next_run_at REAL NOT NULL,
    last_run_by TEXT
);

-- The REST side (pollers/): a source's poll, reconcile and backfill jobs. One process at a
-- time holds a job's lease; its checkpoint is written in the same transaction as the events
-- a page produced, fenced by run_id, so a crash neither skips nor repeats a change.
CREATE TABLE rest_jobs (
    source          TEXT NOT NULL,
    job             TEXT NOT NULL,      -- poll | reconcile | backfill
    checkpoint      TEXT,               -- JSON: where the next run, or this one resumed, goes on
    next_run_at     REAL,               -- NULL: not scheduled (a finished backfill)
    run_id          TEXT,               -- the run holding the lease
    holder          INTEGER,            -- PostgreSQL: the holder's backend pid (dead: lease void)
    lease_until     REAL,
    last_run_at     REAL,
    last_success_at REAL,
    last_error      TEXT,
    failures        INTEGER NOT NULL DEFAULT 0,  -- consecutive failed runs
    emitted         INTEGER NOT NULL DEFAULT 0,  -- events emitted, all runs
    checked         INTEGER NOT NULL DEFAULT 0,  -- items examined, all runs
    skipped         INTEGER NOT NULL DEFAULT 0,  -- malformed items skipped, all runs
    PRIMARY KEY (source, job)
);

-- Each polled item as last seen, to tell created from updated from unchanged.
CREATE TABLE rest_items (
    source      TEXT NOT NULL,
    item_id     TEXT NOT NULL,
    fingerprint TEXT NOT NULL,          -- its version, update time or content hash
    changes     INTEGER NOT NULL,       -- events emitted for it (part of their dedup keys)
    page        TEXT,                   -- the page that listed it (for 304 pages)
    PRIMARY KEY (source, item_id)
) WITHOUT ROWID;

-- Validators of each listed page, for conditional requests: a 304 has no body, so the
-- page's items and the next page's URL are taken from what was stored.
CREATE TABLE rest_pages (
    source        TEXT NOT NULL,
    url           TEXT NOT NULL,
    etag          TEXT,
    last_modified TEXT,
    next_url      TEXT,                 -- the page after it, as that response named it
    PRIMARY KEY (source, url)
) WITHOUT ROWID;

-- API calls per source and UTC day: the load polling costs, and what 304s saved.
CREATE TABLE api_calls (
    source       TEXT NOT NULL,
    day          TEXT NOT NULL,         -- YYYY-MM-DD
    calls        INTEGER NOT NULL DEFAULT 0,
    not_modified INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (source, day)
);

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
    started_at  REAL NOT NULL,
    finished_at REAL,
    removed     TEXT NOT NULL,          -- JSON {"events": n, "payloads": n, ...}
    usage       TEXT,                   -- JSON, measured after the sweep
    error       TEXT
);

INSERT INTO schema_version (version) VALUES (13);
