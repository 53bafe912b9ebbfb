-- The investigators' queue: latest version of each alert with its latest
-- decision ('new' until someone decides), ranked by expected saving.
CREATE VIEW IF NOT EXISTS fraud_queue AS
SELECT
    a.alert_id AS alert_id,
    a.claim_id AS claim_id,
    a.ring_id AS ring_id,
    a.score AS score,
    a.amount_eur AS amount_eur,
    a.expected_saving_eur AS expected_saving_eur,
    a.verdict AS verdict,
    a.members AS members,
    a.evidence AS evidence,
    a.reasons AS reasons,
    a.created_at AS created_at,
    if(d.alert_id = '', 'new', d.status) AS status,
    d.investigator AS investigator
FROM (SELECT * FROM fraud_alerts FINAL) AS a
LEFT JOIN
(
    SELECT alert_id, argMax(status, decided_at) AS status, argMax(investigator, decided_at) AS investigator
    FROM fraud_decisions FINAL
    GROUP BY alert_id
) AS d ON a.alert_id = d.alert_id
ORDER BY expected_saving_eur DESC;
