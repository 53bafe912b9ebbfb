-- How many of the ring's claims investigators had confirmed as fraud when the engine
-- made the alert (fraudring.engine: such a ring's alerts come first). Alerts stored
-- before, and alerts of engines that do not send it, read 0.
ALTER TABLE fraud_alerts ADD COLUMN IF NOT EXISTS ring_confirmed UInt32 DEFAULT 0 AFTER ring_claims;

-- The investigators' queue (replaces 0026, same columns and status rules, plus
-- ring_confirmed): alerts of rings holding confirmed fraud first, as the engine ranks
-- them, then by expected saving.
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
    a.ring_confirmed AS ring_confirmed,
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
ORDER BY ring_confirmed > 0 DESC, expected_saving_eur DESC;
