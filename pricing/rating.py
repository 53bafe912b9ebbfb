"""Rating engine: premium = base premium × bounded telematics multiplier, with reason codes.

Quotes are computed for a batch of vehicles at once (``inplace_predict`` on one array),
never one row per event. Reason codes come from the telematics model's ``pred_contribs``
(SHAP values in log-rate space): ``exp(contribution) − 1`` is how much that feature moves
the rate against a driver with average contributions, said in plain words beside the
vehicle's value and the fleet median.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from pricing import fremtpl2
from pricing.registry import ProductionModel, Registry, version_label
from pricing.scorers import Scorer
from pricing.telematics import LABELS, TelematicsMultiplier

MAX_REASONS = 5
MIN_REASON_EFFECT = 0.01  # effects under 1 % are noise to a customer


def base_columns(frame: pd.DataFrame) -> pd.DataFrame:
    """Add the tree models' engineered rating factors (AreaCode, LogDensity, VehGasRegular) if absent."""
    if {"Area", "Density", "VehGas"} <= set(frame.columns) and "AreaCode" not in frame.columns:
        return pd.concat([frame, fremtpl2.xgb_features(frame)], axis=1)
    return frame


def _percent(share: float) -> str:
    """A share in percent, with a second decimal below 1 % so small shares do not all read 0.0."""
    return f"{100 * share:.1f}" if abs(share) >= 0.01 else f"{100 * share:.2f}"


def describe(feature: str, value: float, median: float, effect: float) -> str:
    """One reason code in plain words.

    >>> describe("hard_brake_per_100km_by_vehicle_30d", 3.2, 1.1, 0.12)
    'hard braking 3.2 per 100 km, fleet median 1.1: +12 %'
    >>> describe("night_share_by_vehicle_30d", 0.031, 0.08, -0.04)
    'night driving (23:00–04:00) 3.1 % of driving time, fleet median 8.0 %: −4 %'
    >>> describe("unsafe_following_share_by_vehicle_30d", 0.0004, 0.0011, -0.06)
    'tailgating at speed 0.04 % of driving time, fleet median 0.11 %: −6 %'
    """
    label, unit = LABELS.get(feature, (feature, ""))
    sign = "+" if effect >= 0 else "−"
    if unit.startswith("share of"):
        of = "driving time" if unit == "share of time" else unit.removeprefix("share of ")
        shown = f"{label} {_percent(value)} % of {of}, fleet median {_percent(median)} %"
    else:
        shown = f"{label} {value:.1f} {unit}, fleet median {median:.1f}"
    return f"{shown}: {sign}{abs(100 * effect):.0f} %"


def reason_codes(model: TelematicsMultiplier, frame: pd.DataFrame, max_reasons: int = MAX_REASONS) -> list[list[str]]:
    """Up to ``max_reasons`` reason codes per row, largest effect on the rate first."""
    contribs = model.explain(frame)
    features = list(model.features)
    values = frame[features].to_numpy(dtype=float)
    effects = np.expm1(contribs[features].to_numpy())
    top = np.argsort(-np.abs(effects), axis=1)[:, :max_reasons]
    medians = [model.medians[f] for f in features]
    out = []
    for i, row in enumerate(top):
        out.append([describe(features[j], values[i, j], medians[j], effects[i, j]) for j in row
                    if abs(effects[i, j]) >= MIN_REASON_EFFECT and np.isfinite(values[i, j])])
    return out


@dataclass
class RatingEngine:
    """Quotes a batch: ``premium = base_premium × multiplier``.

    ``base_premium`` is the yearly pure premium of the classical factors: frequency rate
    × mean claim amount (``severity``), or the frequency rate alone when no severity
    model is given. The multiplier is bounded by the telematics model's ``bounds``.
    """

    frequency: Scorer
    telematics: TelematicsMultiplier
    severity: Scorer | None = None

    def quote(self, frame: pd.DataFrame, with_reasons: bool = True) -> pd.DataFrame:
        base_frame = base_columns(frame)
        base = self.frequency.predict_rate(base_frame)
        if self.severity is not None:
            base = base * self.severity.predict_rate(base_frame)
        multiplier = self.telematics.multiplier(frame)
        out = pd.DataFrame({"base_premium": base, "telematics_multiplier": multiplier, "premium": base * multiplier},
                           index=frame.index)
        if with_reasons:
            out["reason_codes"] = reason_codes(self.telematics, frame)
        return out


class LiveRatingEngine:
    """A rating engine on the registry's production models, reloaded when one is promoted.

    The stream scorer keeps one of these and calls ``engine()`` per batch: the check is
    a ``stat`` per model at most once per ``check_interval_s``.
    """

    def __init__(self, registry: Registry, frequency: str, telematics: str, severity: str | None = None,
                 frequency_features: tuple[str, ...] = fremtpl2.XGB_FEATURES,
                 telematics_features: tuple[str, ...] = tuple(LABELS), check_interval_s: float = 1.0) -> None:
        self._frequency = ProductionModel(registry, frequency, frequency_features, check_interval_s)
        self._telematics = ProductionModel(registry, telematics, telematics_features, check_interval_s)
        self._severity = ProductionModel(registry, severity, frequency_features, check_interval_s) if severity else None

    def engine(self) -> RatingEngine:
        telematics = self._telematics.get()
        if not isinstance(telematics, TelematicsMultiplier):
            raise TypeError(f"model {self._telematics.name} is a {telematics.kind} scorer, not a telematics multiplier")
        return RatingEngine(self._frequency.get(), telematics, self._severity.get() if self._severity else None)

    @property
    def versions(self) -> dict[str, int | None]:
        models = [self._frequency, self._telematics, *([self._severity] if self._severity else [])]
        return {m.name: m.version for m in models}


class StreamMultiplierScorer:
    """The stream's ``Scorer`` (``stream.score``): telematics multiplier of the production model.

    ``score(X)`` takes rows × ``feature_names`` (the contract's 30-day features) and
    returns the bounded multiplier per row; a newly promoted model is picked up on the
    next batch, and one with other features is refused (the running one stays).
    ``score_versioned(X)`` also names the version that computed them, e.g. ``ubi@v2``.
    """

    def __init__(self, registry: Registry, name: str, check_interval_s: float = 5.0) -> None:
        self.feature_names = list(LABELS)
        self._live = ProductionModel(registry, name, self.feature_names, check_interval_s, kind=TelematicsMultiplier.kind)

    def score(self, X: np.ndarray) -> np.ndarray:
        return self.score_versioned(X)[1]

    def score_versioned(self, X: np.ndarray) -> tuple[str, np.ndarray]:
        version, model = self._live.current()
        if not isinstance(model, TelematicsMultiplier):
            raise TypeError(f"model {self._live.name} is a {model.kind} scorer, not a telematics multiplier")
        rows = pd.DataFrame(np.asarray(X, dtype=np.float32), columns=self.feature_names)
        return version_label(self._live.name, version), model.multiplier(rows)
