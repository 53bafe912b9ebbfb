-- Claims as the fraud engine saw them: one row per claim, with the telematics
-- verification verdict and facts. Times are UTC (chDB returns DateTime64 naive).
-- Raw position expires by TTL (PIPL/GDPR minimisation); the res-8 H3 cell stays.
CREATE TABLE IF NOT EXISTS fraud_claims
(
    claim_id String,
    policy_id String,
    ts_ms Int64,
    loss_ts_ms Int64,
    reported_at DateTime64(3, 'UTC') DEFAULT fromUnixTimestamp64Milli(ts_ms),
    loss_at DateTime64(3, 'UTC') DEFAULT fromUnixTimestamp64Milli(loss_ts_ms),
    lat Nullable(Float64) TTL toDateTime(reported_at) + INTERVAL {raw_position_ttl_days} DAY,
    lon Nullable(Float64) TTL toDateTime(reported_at) + INTERVAL {raw_position_ttl_days} DAY,
    cell_h3 UInt64,
    amount_eur Float64,
    ring_id String,
    verdict LowCardinality(String),
    telematics_available Bool,
    insured_in_cell Nullable(Bool),
    third_party_in_cell Nullable(Bool),
    crash_pulse_found Nullable(Bool),
    crash_delta_v_kmh Nullable(Float32),
    speed_at_loss_kmh Nullable(Float32),
    parked_or_charging_at_loss Nullable(Bool),
    evidence Array(String),
    version UInt64
)
ENGINE = ReplacingMergeTree(version)
ORDER BY claim_id;
