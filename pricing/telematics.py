"""Telematics multiplier: XGBoost Poisson on the per-vehicle 30-day driving features.

Trained on the simulated book (one row per vehicle and period, ``crash_count`` over
``exposure_years``; columns per the shared feature contract). Directions known from
road-safety evidence are imposed as monotone constraints, so more hard braking,
speeding, night driving … never lowers the price. The multiplier is the predicted
rate relative to the book's exposure-weighted mean rate, bounded to [0.6, 1.5].
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from pricing.scorers import Scorer, XGBScorer

WINDOW = "30d"
# (signal column stem, plain-words label, unit, monotone direction: +1 never lowers the price, 0 unknown)
SIGNALS: tuple[tuple[str, str, str, int], ...] = (
    ("distance_km_by_vehicle", "distance driven", "km in 30 days", 1),
    ("driving_hours_by_vehicle", "driving time", "h in 30 days", 1),
    ("trips_by_vehicle", "trips", "in 30 days", 0),
    ("mean_speed_kmh_by_vehicle", "mean speed", "km/h", 0),
    ("hard_brake_per_100km_by_vehicle", "hard braking", "per 100 km", 1),
    ("harsh_accel_per_100km_by_vehicle", "harsh acceleration", "per 100 km", 1),
    ("harsh_turn_per_100km_by_vehicle", "harsh turning", "per 100 km", 1),
    ("unsafe_following_share_by_vehicle", "tailgating at speed", "share of time", 1),
    ("fcw_per_1000km_by_vehicle", "forward-collision warnings", "per 1,000 km", 1),
    ("unbuckled_share_by_vehicle", "driving unbuckled", "share of time", 1),
    ("night_share_by_vehicle", "night driving (23:00–04:00)", "share of time", 1),
    ("speeding_share_by_vehicle", "speeding (>10 % over limit)", "share of time", 1),
    ("regen_share_by_vehicle", "regenerative braking", "share of braking", 0),
    ("thermal_alarms_per_1000km_by_vehicle", "battery thermal alarms", "per 1,000 km", 1),
    ("soc_trip_start_mean_by_vehicle", "charge at trip start", "% SOC", 0),
    ("cell_risk_exposure_weighted_by_vehicle", "risk of the roads driven", "cell risk index", 1),
)
FEATURES: tuple[str, ...] = tuple(f"{stem}_{WINDOW}" for stem, *_ in SIGNALS)
LABELS: dict[str, tuple[str, str]] = {f"{stem}_{WINDOW}": (label, unit) for stem, label, unit, _ in SIGNALS}
MONOTONE: dict[str, int] = {f"{stem}_{WINDOW}": d for stem, _, _, d in SIGNALS if d}
TARGET, EXPOSURE = "crash_count", "exposure_years"
# Few crashes per vehicle-year: shallow trees and many claims per leaf keep the fit stable.
PARAMS: dict[str, Any] = {"eta": 0.05, "max_depth": 3, "min_child_weight": 20, "max_delta_step": 0.7, "subsample": 0.9}
MULTIPLIER_BOUNDS = (0.6, 1.5)


class TelematicsMultiplier(Scorer):
    """The telematics frequency model, its book reference rate and the fleet medians.

    A scorer like the others (``fit`` on ``crash_count`` over ``exposure_years``); on top,
    ``multiplier = clip(rate / reference_rate, *bounds)`` with the reference set so the
    book's exposure-weighted mean multiplier is 1 (revenue neutral), and ``medians`` for
    the "fleet median" of reason codes.
    """

    kind = "telematics"

    def __init__(self, features: Sequence[str] = FEATURES, categorical: Sequence[str] = (), seed: int = 0, nthread: int = 2,
                 bounds: tuple[float, float] = MULTIPLIER_BOUNDS) -> None:
        super().__init__(features, categorical, seed)
        if not 0 < bounds[0] <= 1 <= bounds[1]:
            raise ValueError(f"multiplier bounds {bounds} must satisfy 0 < low ≤ 1 ≤ high")
        monotone = {c: d for c, d in MONOTONE.items() if c in self.features}
        self.model = XGBScorer(self.features, categorical, seed, "count:poisson", PARAMS, monotone, max_rounds=2000,
                               early_stopping_rounds=50, valid_fraction=0.2, nthread=nthread)
        self.bounds = (float(bounds[0]), float(bounds[1]))
        self.reference_rate: float | None = None
        self.medians: dict[str, float] = {}

    def fit(self, frame, y, exposure=None, weight=None):
        self.model.fit(frame, y, exposure, weight)
        exposure = np.ones(len(frame)) if exposure is None else np.asarray(exposure, dtype=float)
        self.reference_rate = revenue_neutral_reference(self.model.predict_rate(frame), exposure, self.bounds)
        self.medians = {c: float(pd.to_numeric(frame[c], errors="coerce").median()) for c in self.features}
        return self

    @classmethod
    def fit_book(cls, book: pd.DataFrame, seed: int = 0, nthread: int = 2) -> TelematicsMultiplier:
        """Fit on a book with the contract columns, ``crash_count`` and ``exposure_years``."""
        missing = [c for c in (*FEATURES, TARGET, EXPOSURE) if c not in book.columns]
        if missing:
            raise KeyError(f"the book lacks contract columns {missing} (see the shared feature contract)")
        return cls(seed=seed, nthread=nthread).fit(book, book[TARGET], book[EXPOSURE])

    def predict_margin(self, frame: pd.DataFrame) -> np.ndarray:
        return self.model.predict_margin(frame)

    def predict_rate(self, frame):
        return self.model.predict_rate(frame)

    def explain(self, frame):
        return self.model.explain(frame)

    def multiplier(self, frame: pd.DataFrame) -> np.ndarray:
        if self.reference_rate is None:
            raise RuntimeError("telematics model is not fitted: call fit() first")
        return np.clip(self.predict_rate(frame) / self.reference_rate, *self.bounds)

    def to_state(self):
        return {**self._base_state(), "model": self.model.to_state(), "reference_rate": self.reference_rate,
                "medians": self.medians, "bounds": list(self.bounds)}

    @classmethod
    def from_state(cls, state):
        out = cls(state["features"], state["categorical"], state["seed"], bounds=tuple(state["bounds"]))
        out.model = XGBScorer.from_state(state["model"])
        out.reference_rate, out.medians = state["reference_rate"], state["medians"]
        return out


def revenue_neutral_reference(rate: np.ndarray, exposure: np.ndarray, bounds: tuple[float, float]) -> float:
    """The reference rate r with Σ exposure × clip(rate / r, *bounds) = Σ exposure (bisection in log r).

    >>> r = revenue_neutral_reference(np.array([0.05, 0.1, 0.4]), np.ones(3), (0.6, 1.5))
    >>> round(float(np.mean(np.clip(np.array([0.05, 0.1, 0.4]) / r, 0.6, 1.5))), 6)
    1.0
    """
    low, high = np.log(np.min(rate) / bounds[1]), np.log(np.max(rate) / bounds[0])
    for _ in range(100):  # the mean multiplier falls as r grows
        mid = (low + high) / 2
        mean = np.sum(exposure * np.clip(rate / np.exp(mid), *bounds)) / np.sum(exposure)
        low, high = (mid, high) if mean > 1 else (low, mid)
    return float(np.exp((low + high) / 2))


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    """Spearman rank correlation (average ranks for ties).

    >>> round(spearman(np.array([1, 2, 3, 4]), np.array([10, 20, 30, 25])), 6)
    0.8
    """
    ranks = [pd.Series(np.asarray(x, dtype=float)).rank().to_numpy() for x in (a, b)]
    return float(np.corrcoef(*ranks)[0, 1])


def ranking_against_truth(book: pd.DataFrame, predicted_rate: np.ndarray) -> dict[str, float]:
    """How well a score ranks vehicles by the simulator's latent ``true_rate``.

    Spearman against the true rate, and the exposure-weighted Gini of expected
    crashes (``true_rate × exposure``) ordered by the score, against the Gini the true
    rate itself reaches (the ceiling).
    """
    from pricing.metrics import gini_exposure_weighted

    truth = book["true_rate"].to_numpy(float)
    exposure = book[EXPOSURE].to_numpy(float)
    return {
        "spearman_vs_true_rate": spearman(predicted_rate, truth),
        "gini_of_true_expected_crashes": gini_exposure_weighted(truth * exposure, predicted_rate, exposure),
        "gini_ceiling_true_rate": gini_exposure_weighted(truth * exposure, truth, exposure),
    }


def evaluate_on_book(book: pd.DataFrame, seed: int = 0, test_share: float = 0.2, nthread: int = 2) -> tuple[dict[str, Any], TelematicsMultiplier]:
    """Fit the multiplier on a book's learn vehicles and judge it on the others.

    Vehicles (all their periods) go to learn or test at random with ``seed``, so no
    driver is seen on both sides. Reports Poisson deviance ×100 of the telematics model
    and the homogeneous model on test, and how each score — telematics model, the
    stream's reference safety score (``stream.score.ReferenceScorer``) — ranks test
    periods by the simulator's ``true_rate``.
    """
    from pricing.metrics import poisson_deviance_x100
    from stream.score import ReferenceScorer

    vehicles = book["vehicle_id"].unique()
    test_vehicles = set(np.random.default_rng(seed).choice(vehicles, int(round(test_share * len(vehicles))), replace=False))
    is_test = book["vehicle_id"].isin(test_vehicles).to_numpy()
    learn, test = book[~is_test], book[is_test]
    model = TelematicsMultiplier.fit_book(learn, seed, nthread)
    y, exposure = test[TARGET].to_numpy(float), test[EXPOSURE].to_numpy(float)
    rate = model.predict_rate(test)
    homogeneous_rate = learn[TARGET].sum() / learn[EXPOSURE].sum()
    reference = ReferenceScorer()
    reference_pcf = reference.pcf(test[reference.feature_names].to_numpy(float))
    multiplier = model.multiplier(test)
    report = {
        "n_learn_rows": int(len(learn)), "n_test_rows": int(len(test)),
        "learn_vehicle_years": round(float(learn[EXPOSURE].sum()), 1), "learn_crashes": int(learn[TARGET].sum()),
        "n_rounds": model.model.best_iteration + 1,
        "test_poisson_deviance_x100": {
            "homogeneous": poisson_deviance_x100(y, np.full(len(y), homogeneous_rate) * exposure),
            "telematics": poisson_deviance_x100(y, rate * exposure),
            "true_rate": poisson_deviance_x100(y, test["true_rate"].to_numpy(float) * exposure),
        },
        "ranking_vs_true_rate": {
            "telematics": ranking_against_truth(test, rate),
            "reference_score": ranking_against_truth(test, reference_pcf),
        },
        "multiplier": {
            "bounds": list(model.bounds),
            "quantiles": {f"p{q}": round(float(np.quantile(multiplier, q / 100)), 4) for q in (1, 10, 50, 90, 99)},
            "share_at_floor": round(float(np.mean(multiplier <= model.bounds[0])), 4),
            "share_at_cap": round(float(np.mean(multiplier >= model.bounds[1])), 4),
            "exposure_weighted_mean": round(float(np.sum(multiplier * exposure) / exposure.sum()), 4),
        },
    }
    return report, model
