"""Reference safety score: a transparent, published-formula-style score beside the
pricing model (formula, coefficients and their reasons in ``docs/scoring.md``).

    PCF   = BASE_PCF * prod_i exp(beta_i * Z_i * x_i)     predicted collisions per vehicle-year
    score = clip(100 - 40 * ln(PCF / BASE_PCF), 0, 100)

``x_i`` are 30-day window features clipped to ``[0, cap_i]`` (cell risk enters as
``index - 1``, clipped to ``[-0.5, 2]``); a missing value counts as the baseline
(``x_i = 0``). ``Z_i = e / (e + k)`` is the credibility of the factor's exposure ``e``
in the window: kilometres for the rates per distance (``k`` = 100 km), driving hours
for the shares of driving time and the cell risk (``k`` = 2 h); one hard brake in a
5 km month is then a small term, not the cap. The score is 100 for a driver with every
factor at baseline and loses 40 points each time the predicted frequency is multiplied
by e (2.72).

Pricing plugs its model in through ``Scorer``: anything with ``feature_names``, a
vectorised ``score(X)`` (X: rows × features, in that order) returning one value
per row, and ``score_versioned(X)`` returning the same values with the name of the
exact model version that computed them (the ``scorer`` of the score rows). The
streaming agent calls it on a few thousand rows at a time.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import numpy as np


@runtime_checkable
class Scorer(Protocol):
    feature_names: list[str]

    def score(self, X: np.ndarray) -> np.ndarray:
        """One score per row of ``X`` (rows × ``feature_names``)."""
        ...

    def score_versioned(self, X: np.ndarray) -> tuple[str, np.ndarray]:
        """``score(X)`` and the model version that computed it, taken in the same call
        (e.g. ``"reference"``, ``"telematics@v3"``): a model promoted meanwhile must not
        lend its name to the previous one's scores."""
        ...


@dataclass(frozen=True)
class Factor:
    feature: str
    beta: float  # log-frequency per unit of the (clipped) feature
    cap: float  # clip at this value: beyond it the data say little and one factor must not dominate
    offset: float = 0.0  # baseline value subtracted before clipping
    floor: float = 0.0
    exposure: str = "distance_km_by_vehicle_30d"  # the window's exposure the factor's credibility grows with


DISTANCE, HOURS = "distance_km_by_vehicle_30d", "driving_hours_by_vehicle_30d"
# exposure at which a factor's observed value counts half (Buhlmann's Z = e / (e + k))
CREDIBILITY_K = {DISTANCE: 100.0, HOURS: 2.0}


BASE_PCF = 0.05  # collisions per vehicle-year with every factor at baseline (illustrative, see docs)
POINTS_PER_E = 40.0

FACTORS = (
    Factor("hard_brake_per_100km_by_vehicle_30d", 0.15, 10.0),
    Factor("harsh_accel_per_100km_by_vehicle_30d", 0.05, 10.0),
    Factor("harsh_turn_per_100km_by_vehicle_30d", 0.10, 10.0),
    Factor("unsafe_following_share_by_vehicle_30d", 3.0, 0.5, exposure=HOURS),
    Factor("fcw_per_1000km_by_vehicle_30d", 0.02, 50.0),
    Factor("night_share_by_vehicle_30d", 1.5, 0.5, exposure=HOURS),
    Factor("speeding_share_by_vehicle_30d", 2.0, 0.5, exposure=HOURS),
    Factor("unbuckled_share_by_vehicle_30d", 1.0, 1.0, exposure=HOURS),
    Factor("cell_risk_exposure_weighted_by_vehicle_30d", 0.5, 2.0, offset=1.0, floor=-0.5, exposure=HOURS),
)


class ReferenceScorer:
    """Safety score 0-100 (higher is safer) from the 30-day window features.

    ``feature_names``: the factors, then the two exposures their credibility uses.

    >>> s = ReferenceScorer()
    >>> X = np.zeros((3, len(s.feature_names)))
    >>> X[:, 8] = 1.0                              # average cell risk
    >>> X[:, 9:] = [900.0, 18.0]                   # 900 km in 18 h: Z = 0.9
    >>> X[1, 0] = 2.0                              # 2 hard brakes per 100 km
    >>> X[2, 0], X[2, 9:] = 20.0, [5.0, 0.1]       # one hard brake in 5 km
    >>> np.round(s.score(X), 2).tolist()
    [100.0, 89.2, 97.14]
    >>> s.score_versioned(X)[0]
    'reference'
    """

    name = "reference"

    def __init__(self, factors: tuple[Factor, ...] = FACTORS, base_pcf: float = BASE_PCF) -> None:
        self.factors = factors
        self.base_pcf = base_pcf
        self.exposures = sorted({f.exposure for f in factors})
        self.feature_names = [f.feature for f in factors] + self.exposures
        self._k = np.array([CREDIBILITY_K[e] for e in self.exposures])
        self._exposure_of = np.array([self.exposures.index(f.exposure) for f in factors])
        self._beta = np.array([f.beta for f in factors])
        self._offset = np.array([f.offset for f in factors])
        self._floor = np.array([f.floor for f in factors])
        self._cap = np.array([f.cap for f in factors])

    def _x(self, X: np.ndarray) -> np.ndarray:
        X = np.asarray(X, np.float64)
        if X.ndim != 2 or X.shape[1] != len(self.feature_names):
            raise ValueError(f"ReferenceScorer.score: X has shape {X.shape}; expected (rows, {len(self.feature_names)}) "
                             f"with columns {self.feature_names}")
        n = len(self.factors)
        exposure = np.maximum(np.nan_to_num(X[:, n:], nan=0.0), 0.0)
        credibility = (exposure / (exposure + self._k))[:, self._exposure_of]
        return credibility * np.clip(np.nan_to_num(X[:, :n] - self._offset, nan=0.0), self._floor, self._cap)

    def log_relative_pcf(self, X: np.ndarray) -> np.ndarray:
        """Per row and factor: ``beta_i * Z_i * x_i`` (the factor's share of ln(PCF / BASE_PCF)); reason codes."""
        return self._x(X) * self._beta

    def pcf(self, X: np.ndarray) -> np.ndarray:
        """Predicted collision frequency per vehicle-year."""
        return self.base_pcf * np.exp(self.log_relative_pcf(X).sum(axis=1))

    def score(self, X: np.ndarray) -> np.ndarray:
        return np.clip(100.0 - POINTS_PER_E * self.log_relative_pcf(X).sum(axis=1), 0.0, 100.0)

    def score_versioned(self, X: np.ndarray) -> tuple[str, np.ndarray]:
        return self.name, self.score(X)


def score_records(features: Mapping[str, np.ndarray], scorer: Scorer, version_ts_ms: int,
                  through_ts_ms: Mapping[str, int] | None = None) -> list:
    """``ScoreV1`` records (``scores.ubi.v1``) for every vehicle of ``features``
    (``vehicle_features_from_states`` / ``_from_daily`` output), scored in one call
    and named after the model version that computed them; ``through_ts_ms`` gives per
    vehicle the newest event time the features include."""
    from stream.features.outputs import ScoreV1

    through = through_ts_ms or {}
    name, scores = scorer.score_versioned(matrix(features, scorer.feature_names))
    rows = zip(features["vehicle_id"].tolist(), features["as_of_day"].tolist(), scores.tolist(), strict=True)
    return [ScoreV1(vehicle_id=v, as_of_day=int(day), scorer=name, score=sc, version_ts_ms=version_ts_ms,
                    through_ts_ms=int(through.get(v, 0)))
            for v, day, sc in rows]


def matrix(features: Mapping[str, np.ndarray], names: list[str]) -> np.ndarray:
    """Rows × ``names`` matrix from column arrays (e.g. ``vehicle_features_from_daily`` output)."""
    missing = [n for n in names if n not in features]
    if missing:
        raise KeyError(f"feature columns {missing} are missing; have {sorted(features)}")
    return np.column_stack([np.asarray(features[n], np.float64) for n in names])
