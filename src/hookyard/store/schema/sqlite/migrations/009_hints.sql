-- Version 9: hints to fetch (Mollie's "id=tr_..."): a request kept as `pending` until the
-- worker has fetched the resource it names, then `accepted` (its event stored) or `failed`.
ALTER TABLE requests ADD COLUMN attempts INTEGER NOT NULL DEFAULT 0;
ALTER TABLE requests ADD COLUMN next_attempt_at REAL;
ALTER TABLE requests ADD COLUMN last_error TEXT;
CREATE INDEX requests_pending ON requests (next_attempt_at) WHERE state = 'pending';

UPDATE schema_version SET version = 9;
