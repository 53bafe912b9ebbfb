"""Fit the book's expected-feature mapping to what the event-level fleet produces.

Some features are realised exactly by construction (harsh-event rates per km, FCW,
thermal alarms, trips, distance); others emerge from the kinematics (mean speed,
speeding share behind red lights, following at >= 80 km/h, night share by time).
For those the book uses linear maps from latent driver attributes whose
coefficients (``drivers.EXPECTED_COEF``) come from this script:

    python -m simulators.calibrate --vehicles 150 --days 10 --seed 11

The agreement test (tests/simulators/test_simulators_agreement.py) fails if the
kinematics drift away from the pinned coefficients.
"""

from __future__ import annotations

import argparse
import json
import sys

import numpy as np

from simulators import drivers, fleet, reference


def fit(vehicles: int, days: int, seed: int) -> dict[str, list[float]]:
    pop = drivers.build_population(vehicles, seed)
    cfg = fleet.FleetConfig(start_ms=1_790_784_000_000, days=days)
    events = list(fleet.simulate(pop, cfg))
    feats = reference.fleet_features(events, hz=1, window_days=days)
    idx = {str(v): k for k, v in enumerate(pop.vin)}
    rows = sorted(feats.items(), key=lambda kv: idx[kv[0]])
    keep = np.array([idx[vin] for vin, _ in rows])
    coef = {}
    for name in drivers.EXPECTED_COEF:
        y = np.array([f[name] for _, f in rows])
        x = drivers.feature_design(pop, name)[keep]
        ok = np.isfinite(y)
        coef[name] = [round(float(c), 5) for c in np.linalg.lstsq(x[ok], y[ok], rcond=None)[0]]
    return coef


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--vehicles", type=int, default=150)
    ap.add_argument("--days", type=int, default=10)
    ap.add_argument("--seed", type=int, default=11)
    a = ap.parse_args(argv)
    json.dump(fit(a.vehicles, a.days, a.seed), sys.stdout, indent=1)
    print()


if __name__ == "__main__":
    main()
