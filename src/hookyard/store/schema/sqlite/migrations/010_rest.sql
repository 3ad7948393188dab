-- Version 10: the REST side (pollers/): a source's poll, reconcile and backfill jobs. One
-- process at a time holds a job's lease; its checkpoint is written in the same transaction
-- as the events a page produced, fenced by run_id: a crash neither skips nor repeats a change.
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

UPDATE schema_version SET version = 10;
