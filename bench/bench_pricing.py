"""Throughput of the rating engine's telematics multiplier: batches against one row at a time.

Fits the telematics multiplier on a simulated book (``simulators.book``), then, in
the same run, times:

- ``batch``: ``TelematicsMultiplier.multiplier`` on DataFrame chunks of ``--batch`` rows
  (column selection → float32 array → ``inplace_predict`` → bound), what the stream scorer does;
- ``batch_with_reasons``: the same plus up to five plain-words reason codes per row
  (``pred_contribs`` SHAP values and the text), on fewer rows;
- ``per_row``: the same call with one row at a time (the baseline DESIGN §6 warns about);
- ``per_row_array``: the leanest one-row path, ``inplace_predict`` on a prepared 1-row array.

Rates are rows per wall-clock second and per CPU second of this process (the machine is
shared, so both are printed). Prints one JSON object on stdout. Example:

    .venv/bin/python bench/bench_pricing.py --rows 200000 --batch 5000
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time

import numpy as np

from pricing.rating import reason_codes
from pricing.scorers import SCORING_NTHREAD
from pricing.settings import PricingSettings
from pricing.telematics import TelematicsMultiplier
from simulators import book as simulated
from simulators import drivers


def timed(fn) -> tuple[float, float]:
    cpu, wall = time.process_time(), time.perf_counter()
    fn()
    return time.perf_counter() - wall, time.process_time() - cpu


def rates(rows: int, wall_s: float, cpu_s: float) -> dict:
    return {"rows": rows, "wall_s": round(wall_s, 3), "rows_per_s": round(rows / wall_s), "rows_per_cpu_s": round(rows / max(cpu_s, 1e-9))}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=200_000, help="rows scored in batches")
    parser.add_argument("--batch", type=int, default=5_000, help="rows per batch")
    parser.add_argument("--reason-rows", type=int, default=20_000, help="rows quoted with reason codes")
    parser.add_argument("--per-row", type=int, default=2_000, help="rows scored one at a time")
    parser.add_argument("--vehicle-years", type=float, default=5_000.0, help="size of the simulated training book")
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    nthread = PricingSettings().pricing_nthread

    cfg = simulated.BookConfig(vehicle_years=args.vehicle_years, seed=args.seed)
    book = simulated.vehicle_book(drivers.build_population(cfg.n_vehicles, cfg.seed), cfg)
    start = time.perf_counter()
    model = TelematicsMultiplier.fit_book(book, seed=args.seed, nthread=nthread)
    fit_wall = time.perf_counter() - start
    frame = book.iloc[np.resize(np.arange(len(book)), args.rows)].reset_index(drop=True)
    chunks = [frame.iloc[i:i + args.batch] for i in range(0, len(frame), args.batch)]
    model.multiplier(chunks[0])  # warm-up: first call builds XGBoost's predictor

    out: list[np.ndarray] = []
    batch = rates(args.rows, *timed(lambda: out.extend(model.multiplier(c) for c in chunks)))
    multipliers = np.concatenate(out)
    reasons = rates(args.reason_rows, *timed(lambda: [reason_codes(model, c) for c in chunks[: max(1, args.reason_rows // args.batch)]]))
    single = [frame.iloc[i:i + 1] for i in range(args.per_row)]
    per_row_out: list[np.ndarray] = []
    per_row = rates(args.per_row, *timed(lambda: per_row_out.extend(model.multiplier(r) for r in single)))
    np.testing.assert_allclose(np.concatenate(per_row_out), multipliers[: args.per_row], rtol=1e-6)
    arrays = [model.model.matrix(r) for r in single]
    margin = np.array([model.model.log_intercept])
    booster = model.model.booster
    per_row_array = rates(args.per_row, *timed(lambda: [booster.inplace_predict(a, predict_type="margin", base_margin=margin) for a in arrays]))

    print(json.dumps({
        "bench": "pricing.telematics_multiplier",
        "python": platform.python_version(), "train_nthread": nthread, "score_nthread": SCORING_NTHREAD, "batch_rows": args.batch,
        "book_rows": len(book), "features": len(model.features), "n_rounds": model.model.best_iteration + 1,
        "fit_wall_s": round(fit_wall, 2),
        "batch": batch, "batch_with_reasons": reasons, "per_row": per_row, "per_row_array": per_row_array,
        "batch_speedup_vs_per_row": round(batch["rows_per_s"] / per_row["rows_per_s"], 1),
        "multiplier_mean": round(float(multipliers.mean()), 4),
    }))


if __name__ == "__main__":
    sys.exit(main())
