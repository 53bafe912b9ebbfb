-- vehicle_activity (0002) kept a uniqExact state of every event id per vehicle: on
-- each telemetry insert its views hashed every id, the largest share of an insert's
-- cost. A vehicle's exact count now reads that vehicle's rows in the telemetry tables
-- themselves (vehicle_id leads their sort key, so only its granules are read);
-- fleet-wide views keep reading vehicle_rollup (0040).
DROP VIEW IF EXISTS vehicle_activity_dynamics_mv;

DROP VIEW IF EXISTS vehicle_activity_state_mv;

DROP TABLE IF EXISTS vehicle_activity;
