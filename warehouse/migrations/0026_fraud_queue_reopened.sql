-- The investigators' queue (replaces 0024): latest version of each alert with its latest
-- decision, ranked by expected saving. Status 'new' until someone decides; 'reopened'
-- when the last decision closed the alert (confirmed or dismissed) and a newer version
-- came after it (the engine re-alerts a claim once its ring grew by a quarter), so the
-- new evidence is looked at. last_decision, investigator and decided_at keep the last
-- decision visible; ring_claims is the ring's size, members at most 200 of its claims.
-- A decision names the alert version the investigator saw (alert_version); one without
-- it (0: recorded before it existed) is compared by time, the engine's clock against
-- the dashboard's.
ALTER TABLE fraud_decisions ADD COLUMN IF NOT EXISTS alert_version UInt64 DEFAULT 0;

DROP VIEW IF EXISTS fraud_queue;

CREATE VIEW fraud_queue AS
SELECT
    a.alert_id AS alert_id,
    a.claim_id AS claim_id,
    a.ring_id AS ring_id,
    a.score AS score,
    a.amount_eur AS amount_eur,
    a.expected_saving_eur AS expected_saving_eur,
    a.verdict AS verdict,
    a.members AS members,
    a.ring_claims AS ring_claims,
    a.evidence AS evidence,
    a.reasons AS reasons,
    a.created_at AS created_at,
    a.version AS version,
    multiIf(d.alert_id = '', 'new',
            d.status IN ('confirmed', 'dismissed')
                AND if(d.alert_version > 0, a.version > d.alert_version, a.created_at > d.last_decided_at), 'reopened',
            d.status) AS status,
    d.status AS last_decision,
    d.investigator AS investigator,
    d.last_decided_at AS decided_at
FROM (SELECT * FROM fraud_alerts FINAL) AS a
LEFT JOIN
(
    SELECT alert_id, argMax(status, decided_at) AS status, argMax(investigator, decided_at) AS investigator,
           argMax(alert_version, decided_at) AS alert_version, max(decided_at) AS last_decided_at
    FROM fraud_decisions FINAL
    GROUP BY alert_id
) AS d ON a.alert_id = d.alert_id
ORDER BY expected_saving_eur DESC;
