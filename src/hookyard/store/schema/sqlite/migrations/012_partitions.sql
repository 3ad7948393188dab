-- Version 12: PostgreSQL partitions its events by time (see that backend's 012); SQLite keeps
-- one table, and retention gives its space back with incremental vacuum.
UPDATE schema_version SET version = 12;
