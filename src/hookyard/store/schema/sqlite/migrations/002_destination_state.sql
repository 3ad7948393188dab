-- Version 2: destination states (paused by an operator, disabled after a 410 or failing too
-- long). A destination without a row is active. Deliveries of a destination that is not
-- active are shown as `held` and are not claimed; nothing is dropped.
CREATE TABLE destination_state (
    name          TEXT PRIMARY KEY,
    state         TEXT NOT NULL,        -- active | paused | disabled
    reason        TEXT,
    changed_at    REAL NOT NULL,
    failing_since REAL                  -- first failure since the last success
);

UPDATE schema_version SET version = 2;
