"""What the live fraud agent lost by never reading the third party's car: the fraud model
on a simulated claims book's hold-out, scored with the facts the book holds and again
with ``third_party_in_cell`` left empty, as the live agent gave it before it read the
third party's window (``fraudring.lookup.facts_for``).

The model is trained once, with ``voltrisk fraud evaluate``'s split and features (all
of them, facts included); only the hold-out's inputs differ between the two scorings.
Prints one JSON object:

    .venv/bin/python bench/bench_fraud_third_party.py --vehicle-years 20000 --json
"""

from __future__ import annotations

import argparse
import json
import math
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def main() -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--vehicle-years", type=int, default=20_000, help="size of the simulated book")
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--queue-pct", type=float, default=5.0)
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args()

    import pandas as pd

    from fraudring import model as m
    from fraudring.cli import BOOK_ENTITY_COLS, _cols, _read, _spec
    from fraudring.evaluate import _label, queue_indices, train_and_evaluate
    from fraudring.features import table_features

    with tempfile.TemporaryDirectory(prefix="voltrisk-tp-") as tmp:
        t0 = time.perf_counter()
        subprocess.run([sys.executable, "-m", "voltrisk", "simulate", "book", "--vehicle-years", str(a.vehicle_years),
                        "--seed", str(a.seed), "--out", tmp], check=True, capture_output=True)
        print(f"simulated {a.vehicle_years:,} vehicle-years in {time.perf_counter() - t0:.0f} s", file=sys.stderr)
        cols = _cols(BOOK_ENTITY_COLS)
        claims = Path(tmp) / "claims.parquet"
        records = _read(claims, cols)
        book = pd.read_parquet(claims)
    spec = _spec(records, cols, "ts_ms", "claim_id")
    split_ms = m.time_split([int(r["ts_ms"]) for r in records], 0.3)
    table = table_features(records, spec, snapshot_ms=[split_ms])
    run = train_and_evaluate(records, spec, "is_fraud", feature_set="both", test_share=0.3, seed=a.seed,
                             ring_col="ring_id", queue_pct=a.queue_pct, table=table)
    labels = [_label(r["is_fraud"], "is_fraud", i) for i, r in enumerate(records)]
    true_ring = ["" if r["ring_id"] is None or r["ring_id"] != r["ring_id"] else str(r["ring_id"]) for r in records]

    def scored(rows: list[dict]) -> dict:
        scores = run.model.predict(rows).tolist()
        out = m.claim_metrics([labels[i] for i in run.test], scores)
        queue = queue_indices(table.amount_eur, scores, run.test, a.queue_pct)
        return out | m.ring_metrics(true_ring, table.ring_ids, dict(zip(run.test, scores)), queue, labels)

    rows = [table.rows[i] for i in run.test]
    with_tp = scored(rows)
    without_tp = scored([{**r, "third_party_in_cell": math.nan} for r in rows])
    test = book.iloc[run.test]
    keys = ("roc_auc", "pr_auc", "recall_at_5pct", "precision_at_5pct", "ring_recall", "ring_precision")
    out = {
        "bench": "fraud_third_party", "date_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "vehicle_years": a.vehicle_years, "seed": a.seed, "claims": len(records), "hold_out": len(run.test),
        "hold_out_with_third_party_fact": int(test["third_party_in_cell"].notna().sum()),
        "hold_out_fraud": int(test["is_fraud"].sum()),
        "with_third_party_fact": {k: round(float(with_tp[k]), 4) for k in keys if k in with_tp},
        "third_party_fact_empty": {k: round(float(without_tp[k]), 4) for k in keys if k in without_tp},
    }
    print(json.dumps(out) if a.json else json.dumps(out, indent=2))
    return out


if __name__ == "__main__":
    main()
