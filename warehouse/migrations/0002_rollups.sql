-- Rollups the dashboard reads, so no page scans raw rows. AggregatingMergeTree
-- states merge correctly however often a batch is retried upstream only if the
-- insert is deduplicated: the sink's insert_deduplication_token covers that.
CREATE TABLE IF NOT EXISTS vehicle_activity (
    vehicle_id LowCardinality(String),
    carmaker LowCardinality(String),
    topic LowCardinality(String),
    events AggregateFunction(uniqExact, String),
    last_ts_ms SimpleAggregateFunction(max, Int64),
    last_stored_ts_ms SimpleAggregateFunction(max, Int64)
) ENGINE = AggregatingMergeTree
ORDER BY (vehicle_id, topic, carmaker);

CREATE MATERIALIZED VIEW IF NOT EXISTS vehicle_activity_dynamics_mv TO vehicle_activity AS
SELECT vehicle_id, carmaker, 'dynamics' AS topic, uniqExactState(event_id) AS events,
       max(ts_ms) AS last_ts_ms, max(stored_ts_ms) AS last_stored_ts_ms
FROM telemetry_dynamics GROUP BY vehicle_id, carmaker;

CREATE MATERIALIZED VIEW IF NOT EXISTS vehicle_activity_state_mv TO vehicle_activity AS
SELECT vehicle_id, carmaker, 'state' AS topic, uniqExactState(event_id) AS events,
       max(ts_ms) AS last_ts_ms, max(stored_ts_ms) AS last_stored_ts_ms
FROM telemetry_state GROUP BY vehicle_id, carmaker;

-- Pipeline health per topic per minute: events, end-to-end latency (sent -> stored).
CREATE TABLE IF NOT EXISTS pipeline_minute (
    minute DateTime,
    topic LowCardinality(String),
    events SimpleAggregateFunction(sum, UInt64),
    latency_ms AggregateFunction(quantiles(0.5, 0.95, 0.99), Int64)
) ENGINE = AggregatingMergeTree
ORDER BY (topic, minute);

CREATE MATERIALIZED VIEW IF NOT EXISTS pipeline_minute_dynamics_mv TO pipeline_minute AS
SELECT toStartOfMinute(fromUnixTimestamp64Milli(stored_ts_ms)) AS minute, 'ev.dynamics.v1' AS topic,
       count() AS events, quantilesState(0.5, 0.95, 0.99)(stored_ts_ms - if(sent_ts_ms > 0, sent_ts_ms, ingest_ts_ms)) AS latency_ms
FROM telemetry_dynamics GROUP BY minute;

CREATE MATERIALIZED VIEW IF NOT EXISTS pipeline_minute_state_mv TO pipeline_minute AS
SELECT toStartOfMinute(fromUnixTimestamp64Milli(stored_ts_ms)) AS minute, 'ev.state.v1' AS topic,
       count() AS events, quantilesState(0.5, 0.95, 0.99)(stored_ts_ms - if(sent_ts_ms > 0, sent_ts_ms, ingest_ts_ms)) AS latency_ms
FROM telemetry_state GROUP BY minute;
