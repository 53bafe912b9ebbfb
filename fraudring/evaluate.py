"""Train and judge the fraud classifier on a claims table with a time-based hold-out."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from fraudring import model as m
from fraudring.features import FEATURE_SETS, TableFeatures, TableSpec, facts_from_row, table_features
from stream.records import FnolV1, Party


@dataclass
class Run:
    model: m.FraudModel
    metrics: dict
    scores: list[float]  # hold-out claims' fraud probabilities, by table index in ``test``
    test: list[int]
    table: TableFeatures


def _label(v: object, col: str, i: int) -> int:
    try:
        y = int(float(v))  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise ValueError(f"claims row {i}: label column {col!r} is {v!r}; expected 0 or 1") from None
    if y not in (0, 1):
        raise ValueError(f"claims row {i}: label column {col!r} is {y}; expected 0 or 1")
    return y


def queue_indices(amount_eur: Sequence[float], scores: Sequence[float], scope: Sequence[int],
                  queue_pct: float) -> list[int]:
    """Top ``queue_pct`` % of ``scope`` by expected saving (p(fraud) x amount): the investigators' queue."""
    k = max(1, math.ceil(len(scope) * queue_pct / 100))
    saving = {i: s * amount_eur[i] for i, s in zip(scope, scores)}
    return sorted(scope, key=lambda i: -saving[i])[:k]


def train_and_evaluate(records: Sequence[Mapping[str, object]], spec: TableSpec, label_col: str, *,
                       feature_set: str = "both", test_share: float = 0.3, seed: int = 7,
                       ring_col: str | None = None, queue_pct: float = 5.0,
                       table: TableFeatures | None = None) -> Run:
    """Train on the earliest ``1 - test_share`` of claims (by report time), score
    the rest. Features of training claims are taken as of the split time, so the
    model never sees the hold-out period. With ``ring_col`` (true ring ids) the
    metrics add ring recall/precision of the top ``queue_pct`` % queue."""
    if not records:
        raise ValueError("claims table is empty")
    if label_col not in records[0]:
        raise ValueError(f"claims table has no label column {label_col!r}; pass --label with one of: "
                         f"{', '.join(map(str, records[0]))}")
    labels = [_label(r[label_col], label_col, i) for i, r in enumerate(records)]
    split_ms = m.time_split([int(r[spec.time_col]) for r in records], test_share)
    if table is None:
        table = table_features(records, spec, snapshot_ms=[split_ms])
    features = FEATURE_SETS[feature_set]
    if not (spec.use_facts and "telematics_available" in records[0]):
        features = [f for f in features if f in FEATURE_SETS["graph"]]
    train_idx = [i for i, t in enumerate(table.ts_ms) if t <= split_ms]
    test_idx = [i for i, t in enumerate(table.ts_ms) if t > split_ms]
    if not test_idx or not train_idx:
        raise ValueError(f"time split at {split_ms} leaves an empty train or test set; need claims at several times")
    model = m.train([table.rows[i] for i in train_idx], [labels[i] for i in train_idx], features, seed=seed,
                    meta={"spec": spec.__dict__ | {"entity_cols": list(spec.entity_cols)}, "label": label_col,
                          "feature_set": feature_set, "split_ms": split_ms})
    scores = model.predict([table.rows[i] for i in test_idx]).tolist()
    metrics = m.claim_metrics([labels[i] for i in test_idx], scores)
    metrics |= {"n_train": len(train_idx), "n_test": len(test_idx), "feature_set": feature_set,
                "n_features": len(features)}
    if ring_col is not None:
        if ring_col not in records[0]:
            raise ValueError(f"claims table has no ring column {ring_col!r}")
        true_ring = ["" if r[ring_col] is None or r[ring_col] != r[ring_col] else str(r[ring_col]) for r in records]
        queue = queue_indices(table.amount_eur, scores, test_idx, queue_pct)
        metrics |= m.ring_metrics(true_ring, table.ring_ids, dict(zip(test_idx, scores)), queue, labels)
        metrics["queue_pct"] = queue_pct
    model.meta["metrics"] = metrics
    return Run(model, metrics, scores, test_idx, table)


def _text(v: object) -> str | None:
    if v is None or (isinstance(v, float) and v != v):
        return None
    s = str(v).strip()
    return s or None


def fnol_from_row(row: Mapping[str, object]) -> FnolV1:
    """A ``claims.fnol.v1`` record from a claims-book row (what the claims system would send)."""
    parties = []
    for role, prefix in (("insured", "insured"), ("third_party", "third_party")):
        fields = {k: _text(row.get(f"{prefix}_{k}")) for k in ("name", "phone", "address", "bank_account", "vehicle_id")}
        if role == "insured" or any(fields.values()):
            parties.append(Party(role=role, name=fields.pop("name") or "", **fields))
    return FnolV1(
        event_id=str(row["claim_id"]), ts_ms=int(row["ts_ms"]), claim_id=str(row["claim_id"]),
        policy_id=_text(row.get("policy_id")) or str(row["claim_id"]), loss_ts_ms=int(row["loss_ts_ms"]),
        lat=float(row["lat"]), lon=float(row["lon"]), amount_eur=float(row["amount_eur"]), parties=parties,
        garage=_text(row.get("garage")), tow_company=_text(row.get("tow_company")), lawyer=_text(row.get("lawyer")),
        clinic=_text(row.get("clinic")),
    )


def replay_latency(records: Sequence[Mapping[str, object]], model: m.FraudModel, split_ms: int,
                   batch: int = 100) -> dict:
    """Replay the claims book through the live engine (no broker): training-period
    claims first, then hold-out claims in report-time order in ``batch``-claim
    calls, as a worker's ``take()`` batches would arrive. For each ring whose third
    claim falls in the hold-out: seconds from the start of the call carrying that
    third claim to the first alert on the ring at or after it (wall time, plus the
    simulated wait when the third claim alone does not raise an alert)."""
    import tempfile
    import time

    from fraudring.engine import FraudEngine

    rows = sorted(records, key=lambda r: (int(r["ts_ms"]), str(r["claim_id"])))
    third: dict[str, str] = {}
    seen: dict[str, int] = {}
    for r in rows:
        ring = _text(r.get("ring_id"))
        if ring:
            seen[ring] = seen.get(ring, 0) + 1
            if seen[ring] == 3 and int(r["ts_ms"]) > split_ms:
                third[str(r["claim_id"])] = ring
    ring_of = {str(r["claim_id"]): _text(r.get("ring_id")) for r in rows}
    facts = {str(r["claim_id"]): facts_from_row(r) for r in rows}
    with tempfile.TemporaryDirectory() as tmp:
        engine = FraudEngine(Path(tmp) / "state.bin", model=model)
        train_rows = [r for r in rows if int(r["ts_ms"]) <= split_ms]
        engine.process([fnol_from_row(r) for r in train_rows], facts)
        test_rows = [r for r in rows if int(r["ts_ms"]) > split_ms]
        waiting: dict[str, int] = {}  # ring -> its third claim's ts_ms, until the ring is alerted
        latency: dict[str, float] = {}
        call_s: list[float] = []
        for start in range(0, len(test_rows), batch):
            chunk = test_rows[start:start + batch]
            new = {third[str(r["claim_id"])]: int(r["ts_ms"]) for r in chunk if str(r["claim_id"]) in third}
            waiting.update(new)
            t0 = time.perf_counter()
            alerts = engine.process([fnol_from_row(r) for r in chunk], facts)
            wall_s = time.perf_counter() - t0
            call_s.append(wall_s)
            # an alert stands for its whole ring; its members list names only the nearest claims
            rings = engine.graph.members_by_ring(a["claim_id"] for a in alerts)
            alerted = {ring_of.get(c) for members in rings.values() for c in members}
            for ring in [r for r in waiting if r in alerted]:
                # same call: the claims of one take() batch arrive together; a later call
                # adds the simulated wait for the ring's next claim
                first_ts = min(int(r["ts_ms"]) for r in chunk)
                wait_s = 0.0 if ring in new else max(0, first_ts - waiting[ring]) / 1000
                latency[ring] = wall_s + wait_s
                del waiting[ring]
    vals = sorted(latency.values())
    measured = len(third)
    p95 = (float(np.percentile(vals, 95)) if vals and len(vals) >= 0.95 * measured else math.nan)
    return {
        "alert_latency_p95_s": p95,
        "rings_timed": measured,
        "rings_alerted_after_third_claim": len(vals),
        "rings_alerted_within_call": sum(1 for v in vals if v < 60),
        "engine_call_p95_s": float(np.percentile(call_s, 95)) if call_s else math.nan,
        "engine_batch_claims": batch,
    }
