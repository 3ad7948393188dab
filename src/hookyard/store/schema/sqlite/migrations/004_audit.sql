-- Version 4: the audit log of administrative actions (who, what, when).
CREATE TABLE audit (
    id         TEXT PRIMARY KEY,
    at         REAL NOT NULL,
    token_id   TEXT,
    token_name TEXT,
    action     TEXT NOT NULL,          -- e.g. destination.pause, events.replay, token.create
    target     TEXT,
    detail     TEXT                    -- JSON
);

UPDATE schema_version SET version = 4;
