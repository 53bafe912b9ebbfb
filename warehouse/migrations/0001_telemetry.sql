-- Pseudonymised telemetry as delivered by the gate (clean.* topics).
-- Times are stored in UTC (chDB returns DateTime64 naive: read them as UTC).
-- ReplacingMergeTree on event_id: a re-delivered event collapses on merge; readers
-- that count use FINAL or the rollup views. Raw positions expire by TTL; the H3
-- cell (res 8, computed in Python with h3 v4) stays.
CREATE TABLE IF NOT EXISTS telemetry_dynamics (
    event_id String,
    vehicle_id LowCardinality(String),
    key_version UInt16,
    ts_ms Int64,
    ts DateTime64(3, 'UTC') DEFAULT fromUnixTimestamp64Milli(ts_ms),
    speed_kmh Float32,
    accel_long_mps2 Float32,
    accel_lat_mps2 Float32,
    yaw_rate_dps Float32,
    heading_deg Float32,
    motor_power_kw Float32,
    adas_state LowCardinality(String),
    fcw Bool,
    headway_s Nullable(Float32),
    seatbelt_driver Bool,
    lat Float64 TTL toDateTime(ts) + INTERVAL {raw_position_ttl_days} DAY,
    lon Float64 TTL toDateTime(ts) + INTERVAL {raw_position_ttl_days} DAY,
    h3_r8 UInt64,
    carmaker LowCardinality(String),
    kafka_partition UInt16,
    kafka_offset UInt64,
    sent_ts_ms Int64,
    ingest_ts_ms Int64,
    stored_ts_ms Int64
) ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMMDD(ts)
ORDER BY (vehicle_id, ts_ms, event_id)
SETTINGS non_replicated_deduplication_window = 10000;

CREATE TABLE IF NOT EXISTS telemetry_state (
    event_id String,
    vehicle_id LowCardinality(String),
    key_version UInt16,
    ts_ms Int64,
    ts DateTime64(3, 'UTC') DEFAULT fromUnixTimestamp64Milli(ts_ms),
    vehicle_status LowCardinality(String),
    charging_state LowCardinality(String),
    speed_kmh Float32,
    odometer_km Float64,
    pack_voltage_v Float32,
    pack_current_a Float32,
    soc_pct Float32,
    gear LowCardinality(String),
    insulation_resistance_kohm Float32,
    lat Float64 TTL toDateTime(ts) + INTERVAL {raw_position_ttl_days} DAY,
    lon Float64 TTL toDateTime(ts) + INTERVAL {raw_position_ttl_days} DAY,
    h3_r8 UInt64,
    cell_voltage_max_v Float32,
    cell_voltage_min_v Float32,
    cell_temp_max_c Float32,
    cell_temp_min_c Float32,
    alarm_level UInt8,
    alarm_flags UInt32,
    carmaker LowCardinality(String),
    kafka_partition UInt16,
    kafka_offset UInt64,
    sent_ts_ms Int64,
    ingest_ts_ms Int64,
    stored_ts_ms Int64
) ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMMDD(ts)
ORDER BY (vehicle_id, ts_ms, event_id)
SETTINGS non_replicated_deduplication_window = 10000;

CREATE TABLE IF NOT EXISTS telemetry_alarm (
    event_id String,
    vehicle_id LowCardinality(String),
    key_version UInt16,
    ts_ms Int64,
    ts DateTime64(3, 'UTC') DEFAULT fromUnixTimestamp64Milli(ts_ms),
    alarm_code LowCardinality(String),
    alarm_level UInt8,
    active Bool,
    cell_temp_max_c Nullable(Float32),
    lat Float64 TTL toDateTime(ts) + INTERVAL {raw_position_ttl_days} DAY,
    lon Float64 TTL toDateTime(ts) + INTERVAL {raw_position_ttl_days} DAY,
    h3_r8 UInt64,
    carmaker LowCardinality(String),
    kafka_partition UInt16,
    kafka_offset UInt64,
    sent_ts_ms Int64,
    ingest_ts_ms Int64,
    stored_ts_ms Int64
) ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMM(ts)
ORDER BY (vehicle_id, ts_ms, event_id)
SETTINGS non_replicated_deduplication_window = 10000;

CREATE TABLE IF NOT EXISTS telemetry_crash (
    event_id String,
    vehicle_id LowCardinality(String),
    key_version UInt16,
    ts_ms Int64,
    ts DateTime64(3, 'UTC') DEFAULT fromUnixTimestamp64Milli(ts_ms),
    peak_accel_g Float32,
    delta_v_kmh Float32,
    principal_direction_deg Float32,
    airbag_deployed Bool,
    speed_before_kmh Float32,
    pre_speed_kmh Array(Float32),
    post_speed_kmh Array(Float32),
    lat Float64 TTL toDateTime(ts) + INTERVAL {raw_position_ttl_days} DAY,
    lon Float64 TTL toDateTime(ts) + INTERVAL {raw_position_ttl_days} DAY,
    h3_r8 UInt64,
    carmaker LowCardinality(String),
    kafka_partition UInt16,
    kafka_offset UInt64,
    sent_ts_ms Int64,
    ingest_ts_ms Int64,
    stored_ts_ms Int64
) ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMM(ts)
ORDER BY (vehicle_id, ts_ms, event_id)
SETTINGS non_replicated_deduplication_window = 10000;

-- Claims as reported (parties kept as the JSON array the gate produced, VINs pseudonymised).
CREATE TABLE IF NOT EXISTS claims_fnol (
    event_id String,
    claim_id String,
    policy_id String,
    ts_ms Int64,
    ts DateTime64(3, 'UTC') DEFAULT fromUnixTimestamp64Milli(ts_ms),
    loss_ts_ms Int64,
    lat Float64,
    lon Float64,
    h3_r8 UInt64,
    amount_eur Float64,
    parties String,
    garage Nullable(String),
    tow_company Nullable(String),
    lawyer Nullable(String),
    clinic Nullable(String),
    description String,
    kafka_partition UInt16,
    kafka_offset UInt64,
    sent_ts_ms Int64,
    ingest_ts_ms Int64,
    stored_ts_ms Int64
) ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMM(ts)
ORDER BY (claim_id, event_id)
SETTINGS non_replicated_deduplication_window = 10000;

-- Every refused record, with why. The payload is kept (truncated) for the carmaker's engineers.
CREATE TABLE IF NOT EXISTS dlq (
    source_topic LowCardinality(String),
    source_partition UInt16,
    source_offset UInt64,
    error_class LowCardinality(String),
    reason LowCardinality(String),
    message String,
    key String,
    payload String,
    dlq_partition UInt16,
    dlq_offset UInt64,
    stored_ts_ms Int64,
    ts DateTime64(3, 'UTC') DEFAULT fromUnixTimestamp64Milli(stored_ts_ms)
) ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMM(ts)
ORDER BY (source_topic, source_partition, source_offset, dlq_partition, dlq_offset)
SETTINGS non_replicated_deduplication_window = 10000;
