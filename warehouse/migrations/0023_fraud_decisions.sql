-- Investigator decisions from fraud.decisions.v1, one row per decision event.
CREATE TABLE IF NOT EXISTS fraud_decisions
(
    event_id String,
    alert_id String,
    ts_ms Int64,
    decided_at DateTime64(3, 'UTC') DEFAULT fromUnixTimestamp64Milli(ts_ms),
    status LowCardinality(String),
    investigator String,
    note String,
    version UInt64
)
ENGINE = ReplacingMergeTree(version)
ORDER BY event_id;
