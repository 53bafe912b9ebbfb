"""Two fidelities, one model: the features the event-level fleet produces for a
driver agree with the book's features for the same driver.

The event-level side is computed by ``simulators.reference`` (plain numpy over the
DynamicsV1/StateV1/AlarmV1 records). Tolerances (see docs/simulators.md) are set
by sampling noise: a week of driving holds ~20 trips and ~250 km per vehicle, so
rare events (thermal alarms, FCW, unbuckled trips) are only checked pooled."""

from __future__ import annotations

import numpy as np
import pytest

from simulators import book, drivers, fleet, reference

START_MS = 1_793_462_400_000  # 2026-11-01 00:00 Shanghai

# feature: (max relative gap between fleet means, min correlation across drivers or None
# where a week of one driver is too little to rank drivers: trips are Poisson, ~20 a week)
PER_DRIVER = {
    "regen_share": (0.05, 0.9),
    "speeding_share": (0.2, 0.75),
    "hard_brake_per_100km": (0.25, 0.35),
    "harsh_accel_per_100km": (0.25, 0.5),
    "soc_trip_start_mean": (0.06, 0.4),
    "mean_speed_kmh": (0.1, 0.2),
    "distance_km": (0.2, 0.6),
    "driving_hours": (0.2, 0.6),
    "trips": (0.2, None),
    "cell_risk_exposure_weighted": (0.06, 0.2),
}
# rare or trip-level features: pooled over the fleet only
POOLED = {
    "harsh_turn_per_100km": 0.35,
    "fcw_per_1000km": 0.4,
    "night_share": 0.5,
    "unsafe_following_share": 0.6,
    "thermal_alarms_per_1000km": 0.8,
    "unbuckled_share": 0.8,
}


@pytest.fixture(scope="module")
def both(policies):
    pop = drivers.build_population(24, seed=3, policies=policies)
    events = list(fleet.simulate(pop, fleet.FleetConfig(start_ms=START_MS, days=7)))
    measured = reference.fleet_features(events, hz=1, window_days=7)
    vb = book.vehicle_book(pop, book.BookConfig(vehicle_years=24, seed=3, periods=12))
    return pop, measured, vb


def _pair(both, name):
    pop, measured, vb = both
    vins = [str(v) for v in pop.vin if str(v) in measured]
    event = np.array([measured[v][name] for v in vins])
    per_driver_book = vb.groupby("vehicle_id")[book.col(name)].mean()
    bk = per_driver_book.loc[vins].to_numpy()
    ok = np.isfinite(event) & np.isfinite(bk)
    return event[ok], bk[ok]


@pytest.mark.parametrize("name", sorted(PER_DRIVER))
def test_per_driver_features_agree(both, name):
    rel, corr = PER_DRIVER[name]
    event, bk = _pair(both, name)
    assert len(event) >= 20
    assert abs(event.mean() / bk.mean() - 1) <= rel, f"{name}: event {event.mean():.4g} vs book {bk.mean():.4g}"
    if corr is not None:
        assert np.corrcoef(event, bk)[0, 1] >= corr


@pytest.mark.parametrize("name", sorted(POOLED))
def test_pooled_rare_features_agree(both, name):
    event, bk = _pair(both, name)
    assert abs(event.mean() / bk.mean() - 1) <= POOLED[name], (
        f"{name}: event {event.mean():.4g} vs book {bk.mean():.4g}"
    )


def test_book_has_every_contract_feature(both):
    _, measured, vb = both
    first = next(iter(measured.values()))
    assert {book.col(k) for k in first} <= set(vb.columns)


@pytest.mark.slow
def test_agreement_over_more_drivers_and_weeks(policies):
    """80 drivers x 14 days: every per-driver feature ranks drivers like the book."""
    pop = drivers.build_population(80, seed=21, policies=policies)
    events = list(fleet.simulate(pop, fleet.FleetConfig(start_ms=START_MS, days=14)))
    measured = reference.fleet_features(events, hz=1, window_days=14)
    vb = book.vehicle_book(pop, book.BookConfig(vehicle_years=80, seed=21, periods=12))
    pair = (pop, measured, vb)
    for name, (rel, _) in PER_DRIVER.items():
        event, bk = _pair(pair, name)
        assert abs(event.mean() / bk.mean() - 1) <= rel * 0.75, name
        assert np.corrcoef(event, bk)[0, 1] >= 0.5, name
    for name, rel in POOLED.items():
        event, bk = _pair(pair, name)
        assert abs(event.mean() / bk.mean() - 1) <= rel * 0.6, name
