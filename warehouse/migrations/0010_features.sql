-- Feature tables written by the streaming feature functions (stream/features/).
-- Column names are the field names of the records in stream/features/outputs.py.
-- Rows that grow while data arrives (daily rows, cell visits, features, scores) are
-- re-emitted with cumulative values and a larger version_ts_ms: ReplacingMergeTree
-- keeps the latest version per key, so re-deliveries and re-emissions change nothing.
-- Readers use FINAL. Days are local days (UTC+8) numbered from 1970-01-01; times
-- are epoch milliseconds UTC.
CREATE TABLE IF NOT EXISTS trips (
    vehicle_id LowCardinality(String),
    start_ts_ms Int64,
    end_ts_ms Int64,
    end_reason LowCardinality(String),
    samples_n UInt32,
    duration_s Float64,
    distance_km Float64,
    mean_speed_kmh Float64,
    max_speed_kmh Float64,
    night_share Float64,
    speeding_share Float64,
    unsafe_following_share Float64,
    unbuckled_share Float64,
    regen_share Float64,
    soc_start_pct Nullable(Float64),
    hard_brake_n UInt32,
    harsh_accel_n UInt32,
    harsh_turn_n UInt32,
    fcw_n UInt32,
    version_ts_ms Int64
) ENGINE = ReplacingMergeTree(version_ts_ms)
PARTITION BY toYYYYMM(fromUnixTimestamp64Milli(start_ts_ms))
ORDER BY (vehicle_id, start_ts_ms)
SETTINGS non_replicated_deduplication_window = 10000;

-- Per-vehicle partial aggregates of one local day: the input of every window
-- feature (stream.features.windows.vehicle_features_from_daily), for training too.
CREATE TABLE IF NOT EXISTS vehicle_daily (
    vehicle_id LowCardinality(String),
    day Int32,
    distance_km Float64,
    driving_s Float64,
    night_s Float64,
    speeding_s Float64,
    unsafe_following_s Float64,
    unbuckled_s Float64,
    brake_s Float64,
    regen_brake_s Float64,
    cell_risk_s Float64,
    hard_brake_n Float64,
    harsh_accel_n Float64,
    harsh_turn_n Float64,
    fcw_n Float64,
    trips_n Float64,
    soc_start_sum_pct Float64,
    soc_start_n Float64,
    thermal_alarm_n Float64,
    crash_n Float64,
    version_ts_ms Int64
) ENGINE = ReplacingMergeTree(version_ts_ms)
PARTITION BY intDiv(day, 30)
ORDER BY (vehicle_id, day)
SETTINGS non_replicated_deduplication_window = 10000;

-- A vehicle's run of samples in one H3 res-8 cell within a trip; every cell
-- aggregate (stream.features.cells.cell_aggregates) is a group-by over these.
CREATE TABLE IF NOT EXISTS cell_visits (
    vehicle_id LowCardinality(String),
    cell UInt64,
    day Int32,
    start_ts_ms Int64,
    distance_km Float64,
    driving_s Float64,
    hard_brake_n Float64,
    harsh_accel_n Float64,
    harsh_turn_n Float64,
    speed_hist_s Array(Float64),
    version_ts_ms Int64
) ENGINE = ReplacingMergeTree(version_ts_ms)
PARTITION BY intDiv(day, 30)
ORDER BY (cell, vehicle_id, start_ts_ms)
SETTINGS non_replicated_deduplication_window = 10000;

CREATE TABLE IF NOT EXISTS cell_crashes (
    event_id String,
    vehicle_id LowCardinality(String),
    ts_ms Int64,
    cell UInt64
) ENGINE = ReplacingMergeTree
ORDER BY event_id
SETTINGS non_replicated_deduplication_window = 10000;

-- features.vehicle.v1: rolling 7 d and 30 d window features (contract names).
CREATE TABLE IF NOT EXISTS vehicle_features (
    vehicle_id LowCardinality(String),
    as_of_day Int32,
    distance_km_by_vehicle_7d Float64,
    driving_hours_by_vehicle_7d Float64,
    trips_by_vehicle_7d Float64,
    mean_speed_kmh_by_vehicle_7d Float64,
    hard_brake_per_100km_by_vehicle_7d Float64,
    harsh_accel_per_100km_by_vehicle_7d Float64,
    harsh_turn_per_100km_by_vehicle_7d Float64,
    unsafe_following_share_by_vehicle_7d Float64,
    fcw_per_1000km_by_vehicle_7d Float64,
    unbuckled_share_by_vehicle_7d Float64,
    night_share_by_vehicle_7d Float64,
    speeding_share_by_vehicle_7d Float64,
    regen_share_by_vehicle_7d Float64,
    thermal_alarms_per_1000km_by_vehicle_7d Float64,
    soc_trip_start_mean_by_vehicle_7d Nullable(Float64),
    cell_risk_exposure_weighted_by_vehicle_7d Float64,
    distance_km_by_vehicle_30d Float64,
    driving_hours_by_vehicle_30d Float64,
    trips_by_vehicle_30d Float64,
    mean_speed_kmh_by_vehicle_30d Float64,
    hard_brake_per_100km_by_vehicle_30d Float64,
    harsh_accel_per_100km_by_vehicle_30d Float64,
    harsh_turn_per_100km_by_vehicle_30d Float64,
    unsafe_following_share_by_vehicle_30d Float64,
    fcw_per_1000km_by_vehicle_30d Float64,
    unbuckled_share_by_vehicle_30d Float64,
    night_share_by_vehicle_30d Float64,
    speeding_share_by_vehicle_30d Float64,
    regen_share_by_vehicle_30d Float64,
    thermal_alarms_per_1000km_by_vehicle_30d Float64,
    soc_trip_start_mean_by_vehicle_30d Nullable(Float64),
    cell_risk_exposure_weighted_by_vehicle_30d Float64,
    version_ts_ms Int64
) ENGINE = ReplacingMergeTree(version_ts_ms)
ORDER BY (vehicle_id, as_of_day)
SETTINGS non_replicated_deduplication_window = 10000;

-- scores.ubi.v1: one row per vehicle, day and scorer ("reference" or a model version).
CREATE TABLE IF NOT EXISTS scores (
    vehicle_id LowCardinality(String),
    as_of_day Int32,
    scorer LowCardinality(String),
    score Float64,
    version_ts_ms Int64
) ENGINE = ReplacingMergeTree(version_ts_ms)
ORDER BY (vehicle_id, as_of_day, scorer)
SETTINGS non_replicated_deduplication_window = 10000;
