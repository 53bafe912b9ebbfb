"""Fraud-ring benchmark: graph build throughput, live-engine latency per claim and
per batch, and the evaluation (ring recall/precision, PR-AUC, ablation) on a claims book.

    .venv/bin/python bench/bench_fraud.py --claims .voltrisk/book/claims.parquet
    .venv/bin/python bench/bench_fraud.py --synthetic 20000   # the tests' generator, scaled up

Prints one JSON object on stdout; paste the figures into bench/RESULTS.md.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def _book(args) -> Path:
    if args.claims:
        return Path(args.claims)
    sys.path.insert(0, str(REPO / "tests" / "fraud"))
    import pandas as pd
    from fraud_synth import make_book

    n = args.synthetic
    rows = make_book(seed=11, genuine=n, staged=n // 500, phantom=n // 800, cycles=n // 800, opportunistic=n // 70)
    path = Path(tempfile.mkdtemp()) / "synthetic_book.csv"
    pd.DataFrame(rows).to_csv(path, index=False)
    return path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--claims", help="claims book (CSV/Parquet, claims-book columns)")
    ap.add_argument("--synthetic", type=int, default=20_000, help="genuine claims in a generated book (no --claims)")
    ap.add_argument("--latency-claims", type=int, default=300, help="hold-out claims sent one at a time")
    args = ap.parse_args()
    path = _book(args)

    from fraudring.cli import BOOK_ENTITY_COLS, _read, _spec
    from fraudring.engine import FraudEngine
    from fraudring.evaluate import fnol_from_row, train_and_evaluate
    from fraudring.features import facts_from_row, table_features
    from fraudring.model import time_split

    cols = BOOK_ENTITY_COLS.split(",")
    records = _read(path, cols)
    spec = _spec(records, cols, "ts_ms", "claim_id")
    split = time_split([int(r["ts_ms"]) for r in records])
    t0 = time.perf_counter()
    table = table_features(records, spec, snapshot_ms=[split])
    build_s = time.perf_counter() - t0
    run = train_and_evaluate(records, spec, "is_fraud", table=table, ring_col="ring_id")

    # live engine: load the training period, then send hold-out claims one by one
    rows = sorted(records, key=lambda r: int(r["ts_ms"]))
    facts = {str(r["claim_id"]): facts_from_row(r) for r in rows}
    with tempfile.TemporaryDirectory() as tmp:
        engine = FraudEngine(Path(tmp) / "state.bin", model=run.model)
        t0 = time.perf_counter()
        engine.process([fnol_from_row(r) for r in rows if int(r["ts_ms"]) <= split], facts)
        load_s = time.perf_counter() - t0
        single = []
        for r in [r for r in rows if int(r["ts_ms"]) > split][: args.latency_claims]:
            t0 = time.perf_counter()
            engine.process([fnol_from_row(r)], facts)
            single.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        engine.save()
        snapshot_s = time.perf_counter() - t0
        state_mb = engine.state_path.stat().st_size / 1e6

    evaluate = subprocess.run([sys.executable, "-m", "voltrisk", "fraud", "evaluate", "--claims", str(path), "--json"],
                              cwd=REPO, capture_output=True, text=True, check=True)
    out = {
        "claims": len(records),
        "graph_build_claims_per_s": round(len(records) / build_s),
        "engine_load_training_period_s": round(load_s, 2),
        "engine_single_claim_p50_ms": round(float(np.percentile(single, 50)) * 1000, 2),
        "engine_single_claim_p95_ms": round(float(np.percentile(single, 95)) * 1000, 2),
        "engine_snapshot_s": round(snapshot_s, 3),
        "engine_state_mb": round(state_mb, 1),
        "evaluate": json.loads(evaluate.stdout),
    }
    print(json.dumps(out))


if __name__ == "__main__":
    main()
