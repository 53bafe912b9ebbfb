"""A synthetic book with a known Poisson rate, for pricing tests and the scoring benchmark.

Not a simulator (the fleet book comes from ``simulators/book.py``): columns follow the
shared feature contract, and ``true_rate`` is a fixed log-linear function of a few of
them, so a model's ranking can be checked against the truth.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from pricing.telematics import EXPOSURE, FEATURES, TARGET

# log-rate effects per unit of feature (the rest of the features carry no signal)
TRUE_EFFECTS = {
    "hard_brake_per_100km_by_vehicle_30d": 0.35,
    "speeding_share_by_vehicle_30d": 2.0,
    "night_share_by_vehicle_30d": 1.5,
    "cell_risk_exposure_weighted_by_vehicle_30d": 0.8,
}
BASE_RATE = 0.08  # crashes per vehicle-year of a driver with all effects at zero


def synthetic_book(n_rows: int, seed: int = 0) -> pd.DataFrame:
    """``n_rows`` vehicle-periods with every contract feature, ``true_rate`` and Poisson ``crash_count``."""
    rng = np.random.default_rng(seed)
    distance = rng.gamma(4.0, 300.0, n_rows)
    cols = {
        "distance_km_by_vehicle_30d": distance,
        "driving_hours_by_vehicle_30d": distance / rng.uniform(25, 45, n_rows),
        "trips_by_vehicle_30d": rng.poisson(60, n_rows).astype(float),
        "mean_speed_kmh_by_vehicle_30d": rng.uniform(25, 45, n_rows),
        "hard_brake_per_100km_by_vehicle_30d": rng.gamma(2.0, 0.6, n_rows),
        "harsh_accel_per_100km_by_vehicle_30d": rng.gamma(2.0, 0.5, n_rows),
        "harsh_turn_per_100km_by_vehicle_30d": rng.gamma(2.0, 0.3, n_rows),
        "unsafe_following_share_by_vehicle_30d": rng.beta(1, 20, n_rows),
        "fcw_per_1000km_by_vehicle_30d": rng.gamma(1.5, 1.0, n_rows),
        "unbuckled_share_by_vehicle_30d": rng.beta(0.5, 50, n_rows),
        "night_share_by_vehicle_30d": rng.beta(1, 12, n_rows),
        "speeding_share_by_vehicle_30d": rng.beta(1.5, 10, n_rows),
        "regen_share_by_vehicle_30d": rng.beta(8, 3, n_rows),
        "thermal_alarms_per_1000km_by_vehicle_30d": rng.gamma(0.3, 0.5, n_rows),
        "soc_trip_start_mean_by_vehicle_30d": rng.uniform(30, 95, n_rows),
        "cell_risk_exposure_weighted_by_vehicle_30d": rng.gamma(4.0, 0.25, n_rows),
    }
    book = pd.DataFrame(cols)[list(FEATURES)]
    log_rate = np.log(BASE_RATE) + sum(effect * book[c].to_numpy() for c, effect in TRUE_EFFECTS.items())
    book.insert(0, "vehicle_id", [f"v{i:07d}" for i in range(n_rows)])
    book["period"] = 0
    book[EXPOSURE] = rng.uniform(0.25, 1.0, n_rows)
    book["true_rate"] = np.exp(log_rate)
    book[TARGET] = rng.poisson(book["true_rate"] * book[EXPOSURE])
    return book
