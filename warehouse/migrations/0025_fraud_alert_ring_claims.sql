-- An alert names at most 200 of its ring's claims (fraudring.engine.MAX_ALERT_MEMBERS,
-- the ones nearest to the alerted claim): the ring's true size is a column of its own.
-- Alerts stored before named their whole ring in members, which the default reads.
ALTER TABLE fraud_alerts ADD COLUMN IF NOT EXISTS ring_claims UInt32 DEFAULT length(members) AFTER members;
