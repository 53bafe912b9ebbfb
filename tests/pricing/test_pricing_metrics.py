"""Metric units and the doctests of the pricing package."""

import doctest
import importlib

import numpy as np
import pytest

from pricing.metrics import calibration_by_decile, gini_exposure_weighted, poisson_deviance_x100


@pytest.mark.parametrize("module", ["pricing.metrics", "pricing.fremtpl2", "pricing.registry", "pricing.telematics", "pricing.rating"])
def test_pricing_doctests(module):
    result = doctest.testmod(importlib.import_module(module), optionflags=doctest.ELLIPSIS)
    assert result.failed == 0 and result.attempted > 0


def test_deviance_is_zero_for_a_perfect_model_and_grows_with_error():
    y = np.array([0, 1, 3, 0, 2])
    assert poisson_deviance_x100(y[y > 0], y[y > 0]) == 0.0
    mu = np.array([0.2, 1.0, 2.5, 0.1, 2.0])
    assert poisson_deviance_x100(y, mu) < poisson_deviance_x100(y, mu * 1.5)


def test_deviance_refuses_non_positive_expectations():
    with pytest.raises(ValueError, match="expected counts must be > 0"):
        poisson_deviance_x100(np.array([0, 1]), np.array([0.0, 1.0]))


def test_gini_of_the_true_rate_beats_a_noisy_one_and_constant_is_zero():
    rng = np.random.default_rng(3)
    rate = rng.gamma(2.0, 0.05, 50_000)
    exposure = rng.uniform(0.1, 1.0, 50_000)
    y = rng.poisson(rate * exposure)
    true_gini = gini_exposure_weighted(y, rate, exposure)
    noisy_gini = gini_exposure_weighted(y, rate * rng.lognormal(0, 1.0, rate.size), exposure)
    assert 0.2 < true_gini and noisy_gini < true_gini - 0.05
    assert gini_exposure_weighted(y, np.full(rate.size, 0.1), exposure) == pytest.approx(0.0, abs=1e-12)


def test_calibration_deciles_carry_equal_exposure_and_all_claims():
    rng = np.random.default_rng(4)
    rate = rng.gamma(4.0, 0.1, 200_000)  # ~1,000 claims per decile: ratios within ±10 %
    exposure = rng.uniform(0.1, 1.0, 200_000)
    y = rng.poisson(rate * exposure)
    cal = calibration_by_decile(y, rate, exposure)
    assert list(cal["decile"]) == list(range(1, 11))
    assert cal["exposure_years"].sum() == pytest.approx(exposure.sum())
    assert cal["observed_claims"].sum() == y.sum()
    np.testing.assert_allclose(cal["exposure_years"], exposure.sum() / 10, rtol=0.01)
    assert cal["expected_frequency"].is_monotonic_increasing
    np.testing.assert_allclose(cal["ratio_observed_expected"], 1.0, atol=0.1)
