-- Version 5: when a destination last failed, so that "failing continuously" restarts after a
-- quiet spell instead of counting from a failure weeks ago.
ALTER TABLE destination_state ADD COLUMN last_failure_at REAL;

UPDATE schema_version SET version = 5;
