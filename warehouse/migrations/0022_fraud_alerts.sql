-- Alerts from fraud.alerts.v1: score, ring, members, verification evidence and
-- the top reasons in words. A ring that grows re-alerts with a higher version.
CREATE TABLE IF NOT EXISTS fraud_alerts
(
    alert_id String,
    claim_id String,
    ring_id String,
    created_ts_ms Int64,
    claim_ts_ms Int64,
    created_at DateTime64(3, 'UTC') DEFAULT fromUnixTimestamp64Milli(created_ts_ms),
    claim_reported_at DateTime64(3, 'UTC') DEFAULT fromUnixTimestamp64Milli(claim_ts_ms),
    score Float32,
    amount_eur Float64,
    expected_saving_eur Float64,
    verdict LowCardinality(String),
    members Array(String),
    evidence Array(String),
    reasons Array(String),
    version UInt64
)
ENGINE = ReplacingMergeTree(version)
ORDER BY alert_id;
