-- Version 13: a REST job counts the malformed items it skipped (no id, no update time), so
-- `hookyard sources show`, the API and the console show a source that loses records.
ALTER TABLE rest_jobs ADD COLUMN skipped INTEGER NOT NULL DEFAULT 0;
UPDATE schema_version SET version = 13;
