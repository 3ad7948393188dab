-- Version 3: in-order delivery per ordering key, for destinations that ask for it. A delivery
-- with a key waits while an earlier delivery with the same key is not finished.
ALTER TABLE deliveries ADD COLUMN ordering_key TEXT;
CREATE INDEX deliveries_ordered ON deliveries (destination, ordering_key, id)
    WHERE ordering_key IS NOT NULL AND status IN ('pending', 'retrying', 'in_flight');

UPDATE schema_version SET version = 3;
