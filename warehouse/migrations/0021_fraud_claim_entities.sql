-- Claim-to-entity links after entity resolution (canonical keys, see
-- fraudring/resolve.py): the ring graph an investigator browses. Ordered by entity
-- so "which other claims use this phone" reads one key range.
CREATE TABLE IF NOT EXISTS fraud_claim_entities
(
    kind LowCardinality(String),
    entity_key String,
    claim_id String,
    ts_ms Int64,
    reported_at DateTime64(3, 'UTC') DEFAULT fromUnixTimestamp64Milli(ts_ms),
    version UInt64
)
ENGINE = ReplacingMergeTree(version)
ORDER BY (kind, entity_key, claim_id);
