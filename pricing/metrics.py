"""Model metrics for claim-frequency models: Poisson deviance, Gini (Lorenz) and calibration.

All functions take observed claim counts ``y``, expected counts ``mu`` (exposure × rate)
and, where a portfolio view needs it, ``exposure`` in years. They are pure numpy so the
benchmark, the CLI and the dashboard report the same figures.
"""

from __future__ import annotations

import numpy as np
import pandas as pd


def poisson_deviance_x100(y: np.ndarray, mu: np.ndarray) -> float:
    """Mean Poisson deviance × 100, as in Noll–Salzmann–Wüthrich (2020) and DESIGN §6.

    ``2/n Σ [y log(y/μ) − (y − μ)]``: an unweighted mean over policies, with
    ``y log(y/μ) = 0`` where ``y = 0`` and ``μ`` the expected count (exposure × rate).

    >>> round(poisson_deviance_x100(np.array([0, 1, 2]), np.array([0.1, 1.0, 1.0])), 4)  # 200/3 × (0.1 + 0 + 2 ln 2 − 1)
    32.4196
    >>> poisson_deviance_x100(np.array([1, 2]), np.array([1, 2]))
    0.0
    """
    y = np.asarray(y, dtype=float)
    mu = np.asarray(mu, dtype=float)
    if y.shape != mu.shape:
        raise ValueError(f"y has shape {y.shape} but mu has {mu.shape}: pass one expected count per policy")
    if not np.all(mu > 0):
        raise ValueError(f"expected counts must be > 0; got min {mu.min()} (check exposure and predicted rates)")
    y_log = np.where(y > 0, y * np.log(np.where(y > 0, y, 1.0) / mu), 0.0)
    return float(200.0 * np.mean(y_log - (y - mu)))


def gini_exposure_weighted(y: np.ndarray, rate: np.ndarray, exposure: np.ndarray) -> float:
    """Gini index of the Lorenz (concentration) curve, exposure-weighted.

    Policies are ordered from highest to lowest predicted rate; the curve plots the
    cumulative share of observed claims against the cumulative share of exposure.
    Gini = 2 × area under that curve − 1: 0 for a model that cannot rank, higher is better.
    Tied rates form one straight segment, so a constant rate scores exactly 0.

    >>> gini_exposure_weighted(np.array([0, 0, 1, 1]), np.array([1, 2, 3, 4]), np.ones(4))
    0.5
    >>> gini_exposure_weighted(np.array([1, 1, 0, 0]), np.array([1, 2, 3, 4]), np.ones(4))
    -0.5
    >>> gini_exposure_weighted(np.array([0, 3, 1, 0]), np.full(4, 0.1), np.array([1.0, 0.5, 0.2, 1.0]))
    0.0
    """
    y = np.asarray(y, dtype=float)
    exposure = np.asarray(exposure, dtype=float)
    levels, group = np.unique(-np.asarray(rate, dtype=float), return_inverse=True)
    claims_by_level = np.bincount(group, weights=y, minlength=len(levels))
    exposure_by_level = np.bincount(group, weights=exposure, minlength=len(levels))
    cum_exposure = np.concatenate([[0.0], np.cumsum(exposure_by_level) / exposure.sum()])
    cum_claims = np.concatenate([[0.0], np.cumsum(claims_by_level) / y.sum()])
    area = np.sum(np.diff(cum_exposure) * (cum_claims[1:] + cum_claims[:-1]) / 2.0)
    return float(np.round(2.0 * area - 1.0, 12)) + 0.0  # rounding drops float dust, + 0.0 turns −0.0 into 0.0


def calibration_by_decile(y: np.ndarray, rate: np.ndarray, exposure: np.ndarray, bins: int = 10) -> pd.DataFrame:
    """Observed against expected claims (exposure × rate) in exposure-weighted bins of predicted rate.

    Bin 1 holds the lowest predicted rates; each bin carries about 1/``bins`` of the
    exposure; tied rates are spread over bins in a seeded random order.
    ``ratio_observed_expected`` near 1 in every bin means a calibrated model.

    >>> cal = calibration_by_decile(np.array([0, 1, 0, 2]), np.array([0.4, 1.6, 0.8, 3.2]), np.full(4, 0.5), bins=2)
    >>> cal[["decile", "exposure_years", "observed_claims", "expected_claims"]].round(6).to_dict("records")
    [{'decile': 1, 'exposure_years': 1.0, 'observed_claims': 0.0, 'expected_claims': 0.6}, {'decile': 2, 'exposure_years': 1.0, 'observed_claims': 3.0, 'expected_claims': 2.4}]
    """
    y = np.asarray(y, dtype=float)
    rate = np.asarray(rate, dtype=float)
    exposure = np.asarray(exposure, dtype=float)
    mu = rate * exposure
    # tied rates (a constant model) are spread over bins at random, not in file order
    shuffle = np.random.default_rng(0).permutation(len(rate))
    order = shuffle[np.argsort(rate[shuffle], kind="stable")]
    cum_share = np.cumsum(exposure[order]) / exposure.sum()
    # a policy belongs to the bin its cumulative exposure midpoint falls into
    midpoint = cum_share - exposure[order] / exposure.sum() / 2.0
    decile = np.empty(len(y), dtype=int)
    decile[order] = np.minimum((midpoint * bins).astype(int), bins - 1) + 1
    frame = pd.DataFrame({"decile": decile, "exposure_years": exposure, "observed_claims": y, "expected_claims": mu})
    out = frame.groupby("decile", as_index=False).sum()
    out["observed_frequency"] = out["observed_claims"] / out["exposure_years"]
    out["expected_frequency"] = out["expected_claims"] / out["exposure_years"]
    out["ratio_observed_expected"] = out["observed_claims"] / out["expected_claims"]
    return out
