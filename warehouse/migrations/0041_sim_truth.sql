-- Simulator ground truth, never used as features: which claims are fraud, which
-- entities and claims belong to which ring, each vehicle's true crash rate.
-- run_id names the simulation (e.g. sim-7, book-7) so several runs can coexist.
-- Vehicle ids are pseudonymous (the gate's HMAC), like everywhere in the warehouse.
CREATE TABLE IF NOT EXISTS ring_truth
(
    run_id String,
    ring_id String,
    kind LowCardinality(String),
    value String
)
ENGINE = ReplacingMergeTree
ORDER BY (run_id, ring_id, kind, value);

CREATE TABLE IF NOT EXISTS claim_truth
(
    run_id String,
    claim_id String,
    is_fraud UInt8,
    ring_id String,
    fraud_type LowCardinality(String)
)
ENGINE = ReplacingMergeTree
ORDER BY (run_id, claim_id);

CREATE TABLE IF NOT EXISTS driver_truth
(
    run_id String,
    vehicle_id String,
    true_rate Float64,
    latent_risk Float64,
    home_cell UInt64,
    work_cell UInt64
)
ENGINE = ReplacingMergeTree
ORDER BY (run_id, vehicle_id);
