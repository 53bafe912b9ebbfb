"""The latent driver model: valid VINs, real policy factors, a known crash model."""

from __future__ import annotations

import numpy as np
import pytest

from simulators import city, drivers

VIN_ALPHABET = set("0123456789ABCDEFGHJKLMNPRSTUVWXYZ")


def test_vins_are_valid_and_unique(policies):
    pop = drivers.build_population(2_000, seed=3, policies=policies)
    assert len(set(pop.vin)) == pop.n
    for vin in pop.vin[:500]:
        assert len(vin) == 17 and set(vin) <= VIN_ALPHABET  # no I, O, Q
        assert vin[8] == drivers.vin_check_digit(vin)


def test_known_vin_check_digit():
    # the worked example of the North American / ISO 3779 check digit
    assert drivers.vin_check_digit("1M8GDM9AXKP042788") == "X"


def test_same_seed_same_population(policies):
    a = drivers.build_population(300, seed=11, policies=policies)
    b = drivers.build_population(300, seed=11, policies=policies)
    c = drivers.build_population(300, seed=12, policies=policies)
    assert list(a.vin) == list(b.vin) and np.array_equal(a.true_rate(), b.true_rate())
    assert not np.array_equal(a.true_rate(), c.true_rate())


def test_policy_factors_are_real_fremtpl2_rows(policies):
    pop = drivers.build_population(500, seed=2, policies=policies)
    import pandas as pd

    drawn = pd.DataFrame(pop.policy).drop_duplicates()
    found = drawn.merge(policies.drop_duplicates(), on=list(drivers.POLICY_COLUMNS), how="inner")
    assert len(found) == len(drawn)


def test_homes_and_work_are_res8_cells_in_shanghai(policies):
    pop = drivers.build_population(500, seed=2, policies=policies)
    import h3

    for cell in list(pop.home_cell[:50]) + list(pop.work_cell[:50]):
        lat, lon = h3.cell_to_latlng(h3.int_to_str(int(cell)))
        assert h3.get_resolution(h3.int_to_str(int(cell))) == 8
        assert 30.9 < lat < 31.5 and 121.1 < lon < 121.9


def test_crash_frequency_is_realistic(policies):
    """Mean true rate 5-10 % per vehicle-year (freMTPL2: 36,102 claims / 358,499 years = 0.1007)."""
    pop = drivers.build_population(4_000, seed=7, policies=policies)
    rate = pop.true_rate()
    assert 0.05 <= rate.mean() <= 0.10
    # riskier latent drivers crash more, and the spread is that of a real book (top decile a few x the bottom)
    assert np.corrcoef(pop.z, np.log(rate))[0, 1] > 0.5
    d10, d90 = np.percentile(rate, [10, 90])
    assert 2.5 < d90 / d10 < 10


def test_true_rate_is_the_stated_poisson_formula(policies):
    pop = drivers.build_population(50, seed=1, policies=policies)
    terms = pop.log_rate_terms()
    by_hand = drivers.BASE_RATE * np.exp(sum(drivers.BETA[k] * terms[k] for k in drivers.BETA))
    assert np.allclose(pop.true_rate(), by_hand)
    # a young driver on the same profile is exp(beta_young) times riskier
    assert drivers.BETA["young"] == pytest.approx(0.45)


def test_speed_limits_by_road_class():
    assert city.road_class_at(0.0, 0.0) == "arterial"  # on the grid through the centre
    assert city.road_class_at(1_500.0, 1_500.0) == "local"
    assert city.road_class_at(5_000.0 * 0.6, 5_000.0 * 0.8) == "expressway"  # Inner Ring radius
    assert city.road_class_at(15_000.0, 0.0) == "highway"  # Outer Ring
    cell = city.cell_of(31.2304, 121.4737)
    assert city.speed_limit_kmh(cell) in (40.0, 60.0, 80.0, 100.0)
