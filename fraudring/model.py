"""Fraud classifier: XGBoost on claim and ring features, time-based evaluation,
ring-level queue metrics and plain-word reasons from ``pred_contribs``."""

from __future__ import annotations

import json
import math
from collections import Counter, defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

PARAMS = {
    "objective": "binary:logistic",
    "eval_metric": "aucpr",
    "max_depth": 4,
    "eta": 0.08,
    "subsample": 0.9,
    "colsample_bytree": 0.9,
    "min_child_weight": 2.0,
    "nthread": 2,  # the machine is shared: never more than two threads
}
ROUNDS = 300


def matrix(rows: Sequence[Mapping[str, float]], names: Sequence[str]) -> np.ndarray:
    return np.array([[r.get(n, math.nan) for n in names] for r in rows], dtype=np.float32).reshape(len(rows), len(names))


@dataclass
class FraudModel:
    """A trained booster with the feature names and table spec it expects."""

    booster: object  # xgboost.Booster (imported lazily)
    features: list[str]
    meta: dict

    def __post_init__(self) -> None:
        # scoring is small batches: one thread avoids OpenMP hand-offs, which cost
        # ~30 ms a call (vs ~1 ms) when the two cores are busy with other work
        self.booster.set_param({"nthread": 1})

    def predict(self, rows: Sequence[Mapping[str, float]]) -> np.ndarray:
        if not rows:
            return np.zeros(0)
        return self.booster.inplace_predict(matrix(rows, self.features))

    def contributions(self, rows: Sequence[Mapping[str, float]]) -> np.ndarray:
        """SHAP contributions (log-odds) per feature; last column is the bias."""
        import xgboost as xgb

        return self.booster.predict(xgb.DMatrix(matrix(rows, self.features), feature_names=self.features),
                                    pred_contribs=True)

    def save(self, path: Path) -> None:
        doc = {"features": self.features, "meta": self.meta,
               "booster": bytes(self.booster.save_raw("json")).decode()}
        Path(path).write_text(json.dumps(doc))

    @classmethod
    def load(cls, path: Path) -> FraudModel:
        import xgboost as xgb

        try:
            doc = json.loads(Path(path).read_text())
            booster = xgb.Booster(params={"nthread": 2})
            booster.load_model(bytearray(doc["booster"].encode()))
        except (OSError, ValueError, KeyError) as exc:
            raise ValueError(f"{path}: not a fraud model written by `voltrisk fraud train` ({exc})") from exc
        return cls(booster, doc["features"], doc["meta"])


def train(rows: Sequence[Mapping[str, float]], labels: Sequence[int], features: Sequence[str], *,
          seed: int = 7, meta: dict | None = None) -> FraudModel:
    import xgboost as xgb

    y = np.asarray(labels, dtype=np.float32)
    if len(set(y.tolist())) < 2:
        raise ValueError("training claims need both fraud and genuine labels; the training period has only one class")
    dtrain = xgb.DMatrix(matrix(rows, features), label=y, feature_names=list(features))
    booster = xgb.train({**PARAMS, "seed": seed}, dtrain, num_boost_round=ROUNDS)
    return FraudModel(booster, list(features), dict(meta or {}))


def time_split(ts_ms: Sequence[int], test_share: float = 0.3) -> int:
    """Report time that splits the claims: later claims (the last ``test_share``) are the hold-out."""
    ordered = sorted(ts_ms)
    return ordered[min(len(ordered) - 1, int(len(ordered) * (1 - test_share)))] - 1


def claim_metrics(y: Sequence[int], p: Sequence[float]) -> dict[str, float]:
    """ROC-AUC, PR-AUC (average precision), base rate, recall at the top 1/5/10 %, precision at 5 %."""
    from sklearn.metrics import average_precision_score, roc_auc_score

    y_arr, p_arr = np.asarray(y), np.asarray(p)
    order = np.argsort(-p_arr, kind="stable")
    positives = max(int(y_arr.sum()), 1)
    out = {
        "roc_auc": float(roc_auc_score(y_arr, p_arr)) if 0 < y_arr.sum() < len(y_arr) else math.nan,
        "pr_auc": float(average_precision_score(y_arr, p_arr)) if y_arr.sum() > 0 else math.nan,
        "base_rate": float(y_arr.mean()) if len(y_arr) else math.nan,
    }
    for pct in (1, 5, 10):
        k = max(1, math.ceil(len(y_arr) * pct / 100))
        top = y_arr[order[:k]]
        out[f"recall_at_{pct}pct"] = float(top.sum() / positives)
        if pct == 5:
            out["precision_at_5pct"] = float(top.mean())
    return out


def ring_metrics(true_ring: Sequence[str], predicted_ring: Sequence[str], scores: Mapping[int, float],
                 queue: Sequence[int], is_fraud: Sequence[int], *, min_claims: int = 3,
                 threshold: float = 0.5) -> dict[str, float]:
    """Ring-level quality of the alerts on the hold-out.

    ``scores``: hold-out claim index -> p(fraud). A *ring alert* is a predicted
    component (entity-graph ring) with at least ``min_claims`` claims whose
    hold-out claims score ``threshold`` or more on average; the ring queue is the
    alerted rings ranked by that mean. A true ring with a hold-out claim is
    *caught* when at least one of its claims sits in an alerted ring:
    ``ring_recall`` is the caught share. An alerted ring is *correct* when most of
    its claims belong to one true ring: ``ring_precision`` is the correct share.
    ``queue``: the claim-level queue (top-k claims by expected saving);
    ``ring_recall_claim_queue`` counts a ring caught when one of its hold-out
    claims is in it, and ``queue_precision`` is that queue's fraud share."""
    members: dict[str, list[int]] = defaultdict(list)
    for i, ring in enumerate(predicted_ring):
        members[ring].append(i)
    ring_score = {}
    for ring, idx in members.items():
        held = [scores[i] for i in idx if i in scores]
        if len(idx) >= min_claims and held:
            ring_score[ring] = float(np.mean(held))
    alerted = {r for r, sc in ring_score.items() if sc >= threshold}
    in_scope = {true_ring[i] for i in scores if true_ring[i]}
    caught = {true_ring[i] for r in alerted for i in members[r] if true_ring[i]}
    correct = 0
    for ring in alerted:
        counts = Counter(true_ring[i] for i in members[ring] if true_ring[i])
        correct += int(bool(counts) and max(counts.values()) * 2 > len(members[ring]))
    in_queue = {true_ring[i] for i in queue if true_ring[i]}
    return {
        "ring_recall": len(caught & in_scope) / len(in_scope) if in_scope else math.nan,
        "ring_precision": correct / len(alerted) if alerted else math.nan,
        "rings_in_test": len(in_scope),
        "rings_caught": len(caught & in_scope),
        "rings_alerted": len(alerted),
        "ring_candidates": len(ring_score),
        "ring_recall_claim_queue": len(in_queue & in_scope) / len(in_scope) if in_scope else math.nan,
        "queue_size": len(queue),
        "queue_precision": float(np.mean([is_fraud[i] for i in queue])) if queue else math.nan,
    }


# --- plain-word reasons ---------------------------------------------------------------

def _n(x: float) -> str:
    return f"{int(round(x)):,}"


_PHRASES = {
    "other_claims_by_phone_90d": lambda v: f"shares a phone with {_n(v)} other claim(s) within 90 days",
    "other_claims_by_address_90d": lambda v: f"shares an address with {_n(v)} other claim(s) within 90 days",
    "other_claims_by_bank_90d": lambda v: f"pays into a bank account used by {_n(v)} other claim(s) within 90 days",
    "other_claims_by_person_90d": lambda v: f"a party appears in {_n(v)} other claim(s) within 90 days",
    "other_claims_by_vehicle_90d": lambda v: f"a vehicle appears in {_n(v)} other claim(s) within 90 days",
    "other_claims_by_garage_90d": lambda v: f"the garage handled {_n(v)} other claim(s) within 90 days",
    "other_claims_by_tow_90d": lambda v: f"the tow company handled {_n(v)} other claim(s) within 90 days",
    "other_claims_by_lawyer_90d": lambda v: f"the lawyer appears on {_n(v)} other claim(s) within 90 days",
    "other_claims_by_clinic_90d": lambda v: f"the clinic appears on {_n(v)} other claim(s) within 90 days",
    "ring_claims": lambda v: f"linked by shared entities to {_n(v - 1)} other claim(s)",
    "ring_people": lambda v: f"its ring has {_n(v)} identified people",
    "ring_entities": lambda v: f"its ring has {_n(v)} shared-or-linked entities",
    "ring_density": lambda v: f"{v:.0%} of claim pairs in its ring share an entity",
    "ring_shared_entities": lambda v: f"its ring reuses {_n(v)} phone/address/account/person/vehicle entities",
    "ring_shared_services": lambda v: f"its ring's claims share {_n(v)} garage/tow/lawyer/clinic providers",
    "ring_span_days": lambda v: f"its ring's claims span {v:.0f} days",
    "ring_claims_per_30d": lambda v: f"its ring files {v:.1f} claims per 30 days",
    "ring_amount_eur": lambda v: f"its ring claims {v:,.0f} EUR in total",
    "ring_cycle_claims": lambda v: f"{_n(v)} claim(s) in its ring form a collision cycle (A hits B, B hits C, C hits A)",
    "collision_cycle_len": lambda v: (f"part of a {_n(v)}-vehicle collision cycle" if v else "not part of a collision cycle"),
    "telematics_available": lambda v: ("telemetry available around the loss" if v else
                                       "no telemetry from the insured vehicle around the claimed loss"),
    "insured_in_cell": lambda v: ("insured vehicle was at the claimed place" if v else
                                  "insured vehicle was not at the claimed place within 10 min of the loss"),
    "third_party_in_cell": lambda v: ("third-party vehicle was at the claimed place" if v else
                                      "third-party vehicle was not at the claimed place within 10 min of the loss"),
    "crash_pulse_found": lambda v: ("a crash pulse was recorded near the loss time" if v else
                                    "no crash pulse within 10 min of claimed loss"),
    "crash_delta_v_kmh": lambda v: f"crash delta-v {v:.0f} km/h",
    "speed_at_loss_kmh": lambda v: f"insured vehicle speed {v:.0f} km/h at the claimed loss time",
    "parked_or_charging_at_loss": lambda v: ("insured vehicle was parked or charging at the claimed loss time" if v
                                             else "insured vehicle was in use at the loss time"),
    "verdict_contradicted": lambda v: ("telemetry contradicts the claim" if v else "telemetry is consistent with the claim"),
    "amount_per_pulse_limit": lambda v: f"claimed amount is {v:.1f}x what the crash pulse explains",
    "ring_contradicted_share": lambda v: f"telemetry contradicts {v:.0%} of its ring's claims",
    "ring_no_telematics_share": lambda v: f"{v:.0%} of its ring's claims have no telemetry",
    "amount_eur": lambda v: f"claims {v:,.0f} EUR",
    "report_delay_h": lambda v: f"reported {v:.0f} h after the loss",
    "prior_claims_by_vehicle": lambda v: f"the vehicle had {_n(v)} earlier claim(s)",
    "prior_claims_by_person": lambda v: f"the insured person had {_n(v)} earlier claim(s)",
}


def phrase(feature: str, value: float) -> str:
    if value != value:  # NaN: the fact is unknown
        return f"{feature.replace('_', ' ')} unknown"
    fn = _PHRASES.get(feature)
    return fn(value) if fn else f"{feature.replace('_', ' ')} = {value:g}"


# contributions smaller than this do not move a score enough to be worth a sentence
MIN_REASON_LOGODDS = 0.05


def reasons(model: FraudModel, rows: Sequence[Mapping[str, float]], top: int = 3) -> list[list[dict]]:
    """The ``top`` features pushing each claim's score up, in plain words with their log-odds contribution."""
    if not rows:
        return []
    contribs = model.contributions(rows)
    ring_only = np.array([f.startswith("ring_") for f in model.features])
    out = []
    for row, c in zip(rows, contribs):
        c = c[:-1].copy()
        if row.get("ring_claims", 1) <= 1:
            c[ring_only] = 0.0  # a lone claim's "ring" facts only repeat its own
        order = np.argsort(-c)[:top]
        out.append([{"feature": model.features[j], "value": row.get(model.features[j], math.nan),
                     "contribution": round(float(c[j]), 3), "text": phrase(model.features[j], row.get(model.features[j], math.nan))}
                    for j in order if c[j] >= MIN_REASON_LOGODDS])
    return out
