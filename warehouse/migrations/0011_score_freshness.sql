-- scores.ubi.v1 carries the newest event time a score reflects (its data freshness):
-- pricing sees how current a score is, and the benchmark measures event -> score latency.
ALTER TABLE scores ADD COLUMN IF NOT EXISTS through_ts_ms Int64 DEFAULT 0 AFTER version_ts_ms;
