"""The reference score and the scorer contract every scorer plugged into the stream honours."""

from __future__ import annotations

import doctest

import numpy as np
import pytest

import stream.features.windows
import stream.score
from stream.features import feature_names
from stream.score import BASE_PCF, ReferenceScorer, Scorer, matrix

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
    for j in range(len(s.feature_names)):
        worse = X.copy()
        worse[:, j] += rng.uniform(0, 1, size=200)
        assert (s.score(worse) <= s.score(X)).all(), s.feature_names[j]


def test_known_driver_loses_the_documented_points():
    s = ReferenceScorer()
    feats = {n: np.zeros(1) for n in feature_names(30)}
    feats["cell_risk_exposure_weighted_by_vehicle_30d"][:] = 1.0
    feats["hard_brake_per_100km_by_vehicle_30d"][:] = 4.0  # 0.15 * 4 = 0.6
    feats["night_share_by_vehicle_30d"][:] = 0.2  # 1.5 * 0.2 = 0.3
    X = matrix(feats, s.feature_names)
    assert s.pcf(X)[0] == pytest.approx(BASE_PCF * np.exp(0.9))
    assert s.score(X)[0] == pytest.approx(100 - 40 * 0.9)
    contrib = s.log_relative_pcf(X)[0]
    assert contrib[s.feature_names.index("hard_brake_per_100km_by_vehicle_30d")] == pytest.approx(0.6)


def test_missing_values_count_as_baseline_and_bad_shapes_are_named():
    s = ReferenceScorer()
    X = np.full((1, len(s.feature_names)), np.nan)
    assert s.score(X).tolist() == [100.0]
    with pytest.raises(ValueError, match="expected \\(rows, 9\\)"):
        s.score(np.zeros((3, 4)))
    with pytest.raises(KeyError, match="missing"):
        matrix({"distance_km_by_vehicle_30d": np.zeros(1)}, s.feature_names)


@pytest.mark.parametrize("module", [stream.score, stream.features.windows])
def test_docstring_examples_run(module):
    result = doctest.testmod(module)
    assert result.attempted > 0 and result.failed == 0
