"""Scorers: claim-frequency and severity models behind one interface.

Every scorer honours the same contract (tested for all of them in
``tests/pricing/test_pricing_scorers.py``):

- ``fit(frame, y, exposure=None, weight=None)``: ``y`` is a claim count over ``exposure``
  years (frequency) or an average claim amount with ``weight`` = claim count (severity);
- ``predict_rate(frame)``: expected value per unit of exposure (claims per year, or
  amount per claim);
- ``predict(frame, exposure)``: expected value over ``exposure`` (``exposure × rate``);
- ``explain(frame)``: one column per feature plus ``bias``, in log space; each row sums
  to ``log(predict_rate)`` — reason codes are read from it;
- ``to_state()`` / ``scorer_from_state(state)``: a JSON-able artefact for the registry.

Missing numerics and missing or unseen categories never raise: the GLM uses the
training median and the reference level, the trees their learnt default branch.
"""

from __future__ import annotations

import base64
import math
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

import numpy as np
import pandas as pd


class Scorer(ABC):
    """A model of a non-negative target per unit of exposure, with a log link."""

    kind: ClassVar[str]

    def __init__(self, features: Sequence[str], categorical: Sequence[str] = (), seed: int = 0) -> None:
        unknown = set(categorical) - set(features)
        if unknown:
            raise ValueError(f"categorical columns {sorted(unknown)} are not among the features {list(features)}")
        self.features = tuple(features)
        self.categorical = tuple(categorical)
        self.seed = seed

    @abstractmethod
    def fit(self, frame: pd.DataFrame, y: np.ndarray, exposure: np.ndarray | None = None, weight: np.ndarray | None = None) -> Scorer:
        """Fit on ``frame[self.features]``; returns self."""

    @abstractmethod
    def explain(self, frame: pd.DataFrame) -> pd.DataFrame:
        """Log-space contribution of each feature, plus ``bias``; rows sum to ``log(predict_rate)``."""

    @abstractmethod
    def to_state(self) -> dict[str, Any]:
        """Everything needed to rebuild the fitted scorer, JSON-able."""

    def predict_rate(self, frame: pd.DataFrame) -> np.ndarray:
        return np.exp(self.explain(frame).to_numpy().sum(axis=1))

    def predict(self, frame: pd.DataFrame, exposure: np.ndarray | None = None) -> np.ndarray:
        rate = self.predict_rate(frame)
        return rate if exposure is None else rate * np.asarray(exposure, dtype=float)

    def _check_frame(self, frame: pd.DataFrame) -> pd.DataFrame:
        missing = [c for c in self.features if c not in frame.columns]
        if missing:
            raise KeyError(f"{self.kind} scorer needs columns {missing}, absent from the frame (it has {list(frame.columns)})")
        return frame

    def _base_state(self) -> dict[str, Any]:
        return {"kind": self.kind, "features": list(self.features), "categorical": list(self.categorical), "seed": self.seed}


def _labels(values: pd.Series) -> np.ndarray:
    """Category labels as strings (so 3, "3" and a CSV's 3 are one level); missing stays None."""
    out = values.astype(str).to_numpy(dtype=object)
    out[values.isna().to_numpy()] = None
    return out


def _targets(y: np.ndarray, exposure: np.ndarray | None, weight: np.ndarray | None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    y = np.asarray(y, dtype=float)
    exposure = np.ones_like(y) if exposure is None else np.asarray(exposure, dtype=float)
    weight = np.ones_like(y) if weight is None else np.asarray(weight, dtype=float)
    if not (len(y) == len(exposure) == len(weight)):
        raise ValueError(f"y, exposure and weight differ in length: {len(y)}, {len(exposure)}, {len(weight)}")
    if np.any(~np.isfinite(y)) or np.any(y < 0):
        raise ValueError("the target must be finite and ≥ 0 (claim counts or claim amounts)")
    if np.any(~(exposure > 0)):
        raise ValueError(f"exposure must be > 0 on every row; {int(np.sum(~(exposure > 0)))} rows are not")
    return y, exposure, weight


class Homogeneous(Scorer):
    """The null model: one rate for everybody (Σ weight·y / Σ weight·exposure)."""

    kind = "homogeneous"

    def __init__(self, features: Sequence[str] = (), categorical: Sequence[str] = (), seed: int = 0) -> None:
        super().__init__(features, categorical, seed)
        self.rate: float | None = None

    def fit(self, frame, y, exposure=None, weight=None):
        y, exposure, weight = _targets(y, exposure, weight)
        self.rate = float(np.sum(weight * y) / np.sum(weight * exposure))
        return self

    def explain(self, frame):
        if self.rate is None:
            raise RuntimeError("homogeneous scorer is not fitted: call fit() first")
        out = pd.DataFrame(0.0, index=frame.index, columns=list(self.features))
        out["bias"] = math.log(self.rate)
        return out

    def to_state(self):
        return {**self._base_state(), "rate": self.rate}

    @classmethod
    def from_state(cls, state: Mapping[str, Any]) -> Homogeneous:
        scorer = cls(state["features"], state["categorical"], state["seed"])
        scorer.rate = state["rate"]
        return scorer


class PoissonGLM(Scorer):
    """Log-link GLM (Poisson deviance, exact MLE by Newton–Cholesky), numerics as given, categoricals one-hot.

    With ``y`` = claim count and ``exposure`` this is the Poisson GLM with offset
    ``log(exposure)``: fitting the rate ``y/exposure`` with weight ``exposure`` has the same
    likelihood equations. A categorical's reference level is ``reference[col]`` or
    its most common level; missing and unseen levels score as the reference.
    """

    kind = "glm"

    def __init__(self, features, categorical=(), seed=0, reference: Mapping[str, str] | None = None) -> None:
        super().__init__(features, categorical, seed)
        self.reference = dict(reference or {})
        self.levels: dict[str, list[str]] = {}
        self.medians: dict[str, float] = {}
        self.coef: dict[str, float] = {}
        self.intercept: float | None = None

    def _design(self, frame: pd.DataFrame) -> tuple[np.ndarray, list[tuple[str, str | None]]]:
        blocks, names = [], []
        for col in self.features:
            if col in self.categorical:
                values = _labels(frame[col])
                for level in self.levels[col]:
                    blocks.append((values == level).astype(float))
                    names.append((col, level))
            else:
                values = pd.to_numeric(frame[col], errors="coerce").to_numpy(dtype=float)
                blocks.append(np.where(np.isfinite(values), values, self.medians[col]))
                names.append((col, None))
        matrix = np.column_stack(blocks) if blocks else np.empty((len(frame), 0))
        return matrix, names

    def fit(self, frame, y, exposure=None, weight=None):
        from sklearn.linear_model import PoissonRegressor

        self._check_frame(frame)
        y, exposure, weight = _targets(y, exposure, weight)
        for col in self.features:
            if col in self.categorical:
                counts = pd.Series(_labels(frame[col])).dropna().value_counts()
                ref = self.reference.get(col, counts.index[0] if len(counts) else None)
                self.levels[col] = sorted(level for level in counts.index if level != ref)
                self.reference[col] = ref
            else:
                self.medians[col] = float(np.nanmedian(pd.to_numeric(frame[col], errors="coerce").to_numpy(dtype=float)))
        matrix, names = self._design(frame)
        model = PoissonRegressor(alpha=0.0, solver="newton-cholesky", max_iter=100, tol=1e-10)
        model.fit(matrix, y / exposure, sample_weight=weight * exposure)
        self.intercept = float(model.intercept_)
        self.coef = {f"{col}={level}" if level is not None else col: float(b) for (col, level), b in zip(names, model.coef_)}
        return self

    def explain(self, frame):
        if self.intercept is None:
            raise RuntimeError("GLM is not fitted: call fit() first")
        self._check_frame(frame)
        matrix, names = self._design(frame)
        coef = np.array([self.coef[f"{col}={level}" if level is not None else col] for col, level in names])
        parts = matrix * coef
        out = pd.DataFrame(0.0, index=frame.index, columns=list(self.features))
        for j, (col, _) in enumerate(names):
            out[col] += parts[:, j]
        out["bias"] = self.intercept
        return out

    def to_state(self):
        return {**self._base_state(), "reference": self.reference, "levels": self.levels, "medians": self.medians,
                "coef": self.coef, "intercept": self.intercept}

    @classmethod
    def from_state(cls, state):
        scorer = cls(state["features"], state["categorical"], state["seed"], state["reference"])
        scorer.levels, scorer.medians = state["levels"], state["medians"]
        scorer.coef, scorer.intercept = state["coef"], state["intercept"]
        return scorer


# Tuned on an inner validation split of the Noll learn set (see docs/pricing.md).
FREQUENCY_PARAMS: dict[str, Any] = {"eta": 0.05, "max_depth": 4, "min_child_weight": 50, "max_delta_step": 0.7}
SEVERITY_PARAMS: dict[str, Any] = {"eta": 0.05, "max_depth": 2, "min_child_weight": 100}
# Scoring batches of a few thousand rows is faster on one thread than with thread hand-offs
# (measured in bench/bench_pricing.py); scale scoring out with stream partitions instead.
SCORING_NTHREAD = 1


class XGBScorer(Scorer):
    """XGBoost with a log link: ``count:poisson`` for frequency, ``reg:gamma`` for severity.

    Exposure enters as ``base_margin = log(exposure × portfolio rate)``, so the trees
    model the log-rate relative to the portfolio mean. The number of rounds is set by
    early stopping on ``valid_fraction`` of the rows given to ``fit`` (seeded) — never on
    a test set. After fitting, the intercept is rebalanced so predictions sum to the
    observed total on the fit rows. ``monotone`` maps a feature to +1 (rate never falls as it grows) or −1.
    """

    kind = "xgboost"
    objectives = ("count:poisson", "reg:gamma")

    def __init__(self, features, categorical=(), seed=0, objective: str = "count:poisson", params: Mapping[str, Any] | None = None,
                 monotone: Mapping[str, int] | None = None, max_rounds: int = 5000, early_stopping_rounds: int = 100,
                 valid_fraction: float = 0.1, nthread: int = 2) -> None:
        super().__init__(features, categorical, seed)
        if objective not in self.objectives:
            raise ValueError(f"objective {objective!r} is not one of {self.objectives}")
        unknown = set(monotone or {}) - set(features)
        if unknown:
            raise ValueError(f"monotone constraints name {sorted(unknown)}, which are not features")
        self.objective = objective
        default = FREQUENCY_PARAMS if objective == "count:poisson" else SEVERITY_PARAMS
        self.params = dict(params if params is not None else default)
        self.monotone = dict(monotone or {})
        self.max_rounds, self.early_stopping_rounds = max_rounds, early_stopping_rounds
        self.valid_fraction, self.nthread = valid_fraction, nthread
        self.categories: dict[str, list[str]] = {}
        self.log_intercept: float | None = None
        self.best_iteration: int | None = None
        self.booster = None

    def matrix(self, frame: pd.DataFrame) -> pd.DataFrame | np.ndarray:
        """What XGBoost sees: numerics as float, categoricals on the training categories (unseen → missing).

        An all-numeric model gets one float32 array: the cheapest input for ``inplace_predict``.
        """
        self._check_frame(frame)
        if not self.categorical and all(pd.api.types.is_numeric_dtype(frame[c]) for c in self.features):
            return frame[list(self.features)].to_numpy(dtype=np.float32)
        cols = {}
        for col in self.features:
            if col in self.categorical:
                cols[col] = pd.Categorical(_labels(frame[col]), categories=self.categories[col])
            else:
                cols[col] = pd.to_numeric(frame[col], errors="coerce").astype(float)
        return pd.DataFrame(cols, index=frame.index)

    def _dmatrix(self, features: pd.DataFrame | np.ndarray, margin: np.ndarray, y=None, weight=None):
        import xgboost as xgb

        names = list(self.features) if isinstance(features, np.ndarray) else None
        return xgb.DMatrix(features, label=y, weight=weight, base_margin=margin, feature_names=names,
                           enable_categorical=True, nthread=self.nthread)

    def fit(self, frame, y, exposure=None, weight=None):
        import xgboost as xgb

        y, exposure, weight = _targets(y, exposure, weight)
        self.categories = {c: sorted(pd.Series(_labels(frame[c])).dropna().unique()) for c in self.categorical}
        features = self.matrix(frame)
        self.log_intercept = float(np.log(np.sum(weight * y) / np.sum(weight * exposure)))
        margin = np.log(exposure) + self.log_intercept
        rng = np.random.default_rng(self.seed)
        valid = rng.random(len(y)) < self.valid_fraction
        if valid.sum() == 0 or valid.all():
            raise ValueError(f"valid_fraction={self.valid_fraction} leaves no rows for training or validation ({len(y)} rows)")
        train_set = self._dmatrix(features[~valid], margin[~valid], y[~valid], weight[~valid])
        valid_set = self._dmatrix(features[valid], margin[valid], y[valid], weight[valid])
        params = {
            "objective": self.objective, "tree_method": "hist", "nthread": self.nthread, "seed": self.seed,
            "max_cat_to_onehot": 1, **self.params,
        }
        if self.monotone:
            params["monotone_constraints"] = "(" + ",".join(str(self.monotone.get(c, 0)) for c in self.features) + ")"
        self.booster = xgb.train(params, train_set, self.max_rounds, evals=[(valid_set, "valid")],
                                 early_stopping_rounds=self.early_stopping_rounds, verbose_eval=False)
        self.best_iteration = int(self.booster.best_iteration)
        # keep only the trees early stopping chose: no iteration_range slicing on every batch
        self.booster = self.booster[: self.best_iteration + 1]
        self.booster.set_param({"nthread": SCORING_NTHREAD})
        # Balance property (as a GLM with canonical link has it): Σ weight × prediction equals
        # Σ weight × observed on the fit rows. Gamma deviance otherwise under-predicts heavy-tailed amounts.
        fitted = self.predict_rate(frame) * exposure
        self.log_intercept += float(np.log(np.sum(weight * y) / np.sum(weight * fitted)))
        return self

    def _fitted(self):
        if self.booster is None:
            raise RuntimeError("XGBoost scorer is not fitted: call fit() first")
        return self.booster

    def predict_margin(self, frame: pd.DataFrame) -> np.ndarray:
        """Log-rate per row, batch-scored with ``inplace_predict`` (no DMatrix copy)."""
        booster = self._fitted()
        features = self.matrix(frame)
        # base_margin replaces XGBoost's own base_score, exactly as in training
        return booster.inplace_predict(features, predict_type="margin", base_margin=np.full(len(features), self.log_intercept))

    def predict_rate(self, frame):
        return np.exp(self.predict_margin(frame))

    def explain(self, frame):
        booster = self._fitted()
        features = self.matrix(frame)
        contribs = booster.predict(self._dmatrix(features, np.full(len(features), self.log_intercept)), pred_contribs=True)
        return pd.DataFrame(contribs, index=frame.index, columns=[*self.features, "bias"])

    def to_state(self):
        booster = self._fitted()
        return {**self._base_state(), "objective": self.objective, "params": self.params, "monotone": self.monotone,
                "categories": self.categories, "log_intercept": self.log_intercept, "best_iteration": self.best_iteration,
                "nthread": self.nthread, "booster_ubj_b64": base64.b64encode(bytes(booster.save_raw("ubj"))).decode()}

    @classmethod
    def from_state(cls, state):
        import xgboost as xgb

        scorer = cls(state["features"], state["categorical"], state["seed"], state["objective"], state["params"],
                     state["monotone"], nthread=state["nthread"])
        scorer.categories, scorer.log_intercept = state["categories"], state["log_intercept"]
        scorer.best_iteration = state["best_iteration"]
        booster = xgb.Booster()
        booster.load_model(bytearray(base64.b64decode(state["booster_ubj_b64"])))
        booster.set_param({"nthread": SCORING_NTHREAD})
        scorer.booster = booster
        return scorer


_KINDS: dict[str, type[Scorer]] = {cls.kind: cls for cls in (Homogeneous, PoissonGLM, XGBScorer)}


def scorer_from_state(state: Mapping[str, Any]) -> Scorer:
    """Rebuild a fitted scorer from ``Scorer.to_state()``."""
    from pricing.telematics import TelematicsMultiplier

    kinds = {**_KINDS, TelematicsMultiplier.kind: TelematicsMultiplier}
    try:
        cls = kinds[state["kind"]]
    except KeyError:
        raise ValueError(f"unknown scorer kind {state.get('kind')!r}; known: {sorted(kinds)}") from None
    return cls.from_state(state)
