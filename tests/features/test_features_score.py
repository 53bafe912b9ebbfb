"""The reference score and the scorer contract every scorer plugged into the stream honours."""

from __future__ import annotations

import doctest

import numpy as np
import pytest

import stream.features.windows
import stream.score
from stream.features import feature_names
from stream.score import BASE_PCF, CREDIBILITY_K, DISTANCE, HOURS, ReferenceScorer, Scorer, matrix

SCORERS = [ReferenceScorer()]


@pytest.mark.parametrize("scorer", SCORERS)
def test_scorer_contract_shape_names_and_batch_independence(scorer):
    assert isinstance(scorer, Scorer)
    assert set(scorer.feature_names) <= set(feature_names(30))
    rng = np.random.default_rng(0)
    X = rng.uniform(0, 2, size=(1000, len(scorer.feature_names)))
    s = scorer.score(X)
    assert s.shape == (1000,) and np.isfinite(s).all()
    np.testing.assert_allclose(scorer.score(X[:10]), s[:10])  # a row's score does not depend on its batch
    name, versioned = scorer.score_versioned(X)  # the score rows' ``scorer``: what computed them
    assert isinstance(name, str) and name
    np.testing.assert_array_equal(versioned, s)


def test_reference_score_is_100_at_baseline_and_bounded():
    s = ReferenceScorer()
    base = np.zeros((1, len(s.feature_names)))
    base[0, s.feature_names.index("cell_risk_exposure_weighted_by_vehicle_30d")] = 1.0
    assert s.score(base).tolist() == [100.0]
    assert s.pcf(base).tolist() == pytest.approx([BASE_PCF])
    worst = np.full((1, len(s.feature_names)), 1e6)
    assert s.score(worst).tolist() == [0.0]


def test_reference_score_never_improves_when_a_risk_factor_grows():
    s = ReferenceScorer()
    rng = np.random.default_rng(1)
    X = rng.uniform(0, 1, size=(200, len(s.feature_names)))
    X[:, len(s.factors):] = rng.uniform(0, 1000, size=(200, len(s.exposures)))
    for j in range(len(s.factors)):
        worse = X.copy()
        worse[:, j] += rng.uniform(0, 1, size=200)
        assert (s.score(worse) <= s.score(X)).all(), s.feature_names[j]


def test_known_driver_loses_the_documented_points():
    s = ReferenceScorer()
    feats = {n: np.zeros(1) for n in feature_names(30)}
    feats["cell_risk_exposure_weighted_by_vehicle_30d"][:] = 1.0
    feats["hard_brake_per_100km_by_vehicle_30d"][:] = 4.0  # 0.15 * 4 = 0.6
    feats["night_share_by_vehicle_30d"][:] = 0.2  # 1.5 * 0.2 = 0.3
    feats[DISTANCE][:], feats[HOURS][:] = 900.0, 18.0  # credibility 900 / (900 + 100) = 18 / (18 + 2) = 0.9
    X = matrix(feats, s.feature_names)
    assert s.pcf(X)[0] == pytest.approx(BASE_PCF * np.exp(0.81))
    assert s.score(X)[0] == pytest.approx(100 - 40 * 0.81)
    contrib = s.log_relative_pcf(X)[0]
    assert contrib[s.feature_names.index("hard_brake_per_100km_by_vehicle_30d")] == pytest.approx(0.54)


def test_a_rate_over_a_few_kilometres_costs_little_and_full_weight_comes_with_exposure():
    """One hard brake in 20 m is 5,000 per 100 km: without credibility it took the factor's
    whole cap (60 points) however little was driven. The term grows with the exposure
    behind it, Z = e / (e + k), and reaches the plain formula's as the exposure grows."""
    s = ReferenceScorer()
    hb = s.feature_names.index("hard_brake_per_100km_by_vehicle_30d")

    def score(rate: float, km: float, hours: float) -> float:
        feats = {n: np.zeros(1) for n in feature_names(30)}
        feats["cell_risk_exposure_weighted_by_vehicle_30d"][:] = 1.0
        feats["hard_brake_per_100km_by_vehicle_30d"][:] = rate
        feats[DISTANCE][:], feats[HOURS][:] = km, hours
        X = matrix(feats, s.feature_names)
        assert s.log_relative_pcf(X)[0, hb] == pytest.approx(0.15 * min(rate, 10.0) * km / (km + CREDIBILITY_K[DISTANCE]))
        return float(s.score(X)[0])

    assert score(5_000.0, 0.02, 0.01) > 99.9
    assert score(20.0, 5.0, 0.1) == pytest.approx(100 - 40 * 0.15 * 10 * 5 / 105)
    assert score(4.0, 1e9, 1e9) == pytest.approx(100 - 40 * 0.6)  # a long record: the plain formula
    assert score(4.0, 50.0, 1.0) > score(4.0, 500.0, 10.0) > score(4.0, 5_000.0, 100.0)


def test_missing_values_count_as_baseline_and_bad_shapes_are_named():
    s = ReferenceScorer()
    X = np.full((1, len(s.feature_names)), np.nan)
    assert s.score(X).tolist() == [100.0]
    with pytest.raises(ValueError, match="expected \\(rows, 11\\)"):
        s.score(np.zeros((3, 4)))
    with pytest.raises(KeyError, match="missing"):
        matrix({"distance_km_by_vehicle_30d": np.zeros(1)}, s.feature_names)


@pytest.mark.parametrize("module", [stream.score, stream.features.windows])
def test_docstring_examples_run(module):
    result = doctest.testmod(module)
    assert result.attempted > 0 and result.failed == 0
