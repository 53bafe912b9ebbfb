"""Warehouse rows (JSONEachRow lines) for the fraud tables of migrations 0020-0027.

Same shape as ``warehouse.sink`` routes: ``row(msg, now_ms) -> bytes`` for the
``fraud.alerts.v1`` and ``fraud.decisions.v1`` topics, plus plain builders for
claims and their resolved entities.
"""

from __future__ import annotations

import msgspec

from fraudring.graph import ClaimLinks
from fraudring.verify import Verification
from stream.records import DecisionV1, FnolV1

_ALERT_COLUMNS = ("alert_id", "claim_id", "ring_id", "created_ts_ms", "claim_ts_ms", "score", "amount_eur",
                  "expected_saving_eur", "verdict", "members", "ring_claims", "ring_confirmed", "evidence", "reasons",
                  "version")
_ALERT_OPTIONAL = ("created_ts_ms", "ring_claims", "ring_confirmed")
_decision = msgspec.json.Decoder(DecisionV1)


def alert_row(msg, now_ms: int) -> bytes:
    """``fraud_alerts`` row from a ``fraud.alerts.v1`` message (the engine's alert dict as JSON)."""
    alert = msgspec.json.decode(msg.value)
    missing = [c for c in _ALERT_COLUMNS if c not in alert and c not in _ALERT_OPTIONAL]
    if missing:
        raise ValueError(f"fraud.alerts.v1 offset {msg.offset}: alert lacks {', '.join(missing)}")
    row = {c: alert.get(c, now_ms) for c in _ALERT_COLUMNS}
    if "ring_claims" not in alert:  # the first engines' alerts: no ring size, the whole ring in members
        row["ring_claims"] = len(alert["members"])
    if "ring_confirmed" not in alert:  # engines from before investigators' decisions
        row["ring_confirmed"] = 0
    return msgspec.json.encode(row)


def decision_row(msg, now_ms: int) -> bytes:
    """``fraud_decisions`` row from a ``fraud.decisions.v1`` message; the decision
    time is its version, so a replayed decision collapses onto itself."""
    d = _decision.decode(msg.value)
    return msgspec.json.encode({"event_id": d.event_id, "alert_id": d.alert_id, "ts_ms": d.ts_ms, "status": d.status,
                                "investigator": d.investigator, "note": d.note, "alert_version": d.alert_version,
                                "version": d.ts_ms})


def claim_row(claim: FnolV1, check: Verification, ring_id: str, cell_h3: int, version: int) -> dict:
    """``fraud_claims`` row for a claim and its telematics verification."""
    f = check.facts
    known = f.telematics_available
    return {
        "claim_id": claim.claim_id, "policy_id": claim.policy_id, "ts_ms": claim.ts_ms,
        "loss_ts_ms": claim.loss_ts_ms, "lat": claim.lat, "lon": claim.lon, "cell_h3": cell_h3,
        "amount_eur": claim.amount_eur, "ring_id": ring_id, "verdict": check.verdict, "telematics_available": known,
        "insured_in_cell": f.insured_in_cell if known else None, "third_party_in_cell": f.third_party_in_cell,
        "crash_pulse_found": f.crash_pulse_found if known else None,
        "crash_delta_v_kmh": f.crash_delta_v_kmh if known else None,
        "speed_at_loss_kmh": f.speed_at_loss_kmh if known else None,
        "parked_or_charging_at_loss": f.parked_or_charging_at_loss if known else None,
        "evidence": check.evidence, "version": version,
    }


def entity_rows(links: ClaimLinks, version: int) -> list[dict]:
    """``fraud_claim_entities`` rows: one per resolved entity of a claim."""
    return [{"kind": kind, "entity_key": key, "claim_id": links.claim_id, "ts_ms": links.ts_ms,
             "version": version} for kind, key in links.entities]
