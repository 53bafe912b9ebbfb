"""The book: contract columns, exposure, crash counts consistent with the true
Poisson model, and a claims book with rings and consistent verification facts."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
import time

import numpy as np
import pandas as pd
import pytest

from simulators import book, claims, drivers
from stream.features.windows import DAILY_SUMS, feature_names, features_from_sums

FEATURES = [
    "distance_km",
    "driving_hours",
    "trips",
    "mean_speed_kmh",
    "hard_brake_per_100km",
    "harsh_accel_per_100km",
    "harsh_turn_per_100km",
    "unsafe_following_share",
    "fcw_per_1000km",
    "unbuckled_share",
    "night_share",
    "speeding_share",
    "regen_share",
    "thermal_alarms_per_1000km",
    "soc_trip_start_mean",
    "cell_risk_exposure_weighted",
]
CONTRACT_VEHICLE = [
    "vehicle_id",
    "period",
    "exposure_years",
    "true_rate",
    "crash_count",
    "DrivAge",
    "VehPower",
    "VehAge",
    "BonusMalus",
    "Density",
    "Area",
    "Region",
    "VehBrand",
    "VehGas",
] + [f"{f}_by_vehicle_30d" for f in FEATURES]


@pytest.fixture(scope="module")
def small_book(tmp_path_factory):
    out = tmp_path_factory.mktemp("book")
    manifest = book.write_book(out, book.BookConfig(vehicle_years=3_000, seed=5, claims=4_000))
    return out, manifest, pd.read_parquet(out / "vehicles.parquet"), pd.read_parquet(out / "claims.parquet")


def test_vehicle_book_columns_exposure_and_frequency(small_book):
    _, manifest, vb, _ = small_book
    assert sorted(vb.columns) == sorted(CONTRACT_VEHICLE)
    assert vb["exposure_years"].sum() == pytest.approx(3_000, rel=0.03)
    assert vb["period"].between(0, 11).all() and (vb["exposure_years"] <= 30 / 365.25 + 1e-5).all()
    freq = vb["crash_count"].sum() / vb["exposure_years"].sum()
    assert 0.05 <= freq <= 0.10  # freMTPL2: 0.1007 claims per vehicle-year
    # crash counts are Poisson with mean true_rate x exposure: totals within 4 sd
    mu = float((vb["true_rate"] * vb["exposure_years"]).sum())
    assert abs(vb["crash_count"].sum() - mu) < 4 * np.sqrt(mu)
    assert manifest["vehicle_periods"] == len(vb)


def test_riskier_drivers_crash_more_and_features_carry_the_signal(small_book):
    _, _, vb, _ = small_book
    per = vb.groupby("vehicle_id").agg(
        rate=("true_rate", "mean"),
        crashes=("crash_count", "sum"),
        hb=("hard_brake_per_100km_by_vehicle_30d", "mean"),
        sp=("speeding_share_by_vehicle_30d", "mean"),
    )
    top = per["rate"] >= per["rate"].quantile(0.8)
    assert per.loc[top, "crashes"].mean() > 2 * per.loc[~top, "crashes"].mean()
    assert np.corrcoef(np.log(per["hb"] + 0.1), np.log(per["rate"]))[0, 1] > 0.3
    assert np.corrcoef(per["sp"], np.log(per["rate"]))[0, 1] > 0.2


def test_feature_ranges_are_plausible(small_book):
    _, _, vb, _ = small_book
    active = vb[vb["distance_km_by_vehicle_30d"] > 0]
    assert 500 < active["distance_km_by_vehicle_30d"].median() < 1_500  # 6,000-18,000 km a year
    assert 20 < active["mean_speed_kmh_by_vehicle_30d"].median() < 40
    for share in ("unsafe_following_share", "unbuckled_share", "night_share", "speeding_share", "regen_share"):
        assert active[f"{share}_by_vehicle_30d"].between(0, 1).all()


@pytest.fixture(scope="module")
def garaged_book(policies):
    """A book where every other car mostly stays in the garage (a trip every few years),
    so most of its periods hold no driving."""
    pop = drivers.build_population(60, seed=9, policies=policies)
    garaged = np.arange(pop.n) % 2 == 0

    def rare(a):
        return np.where(garaged, a * 1e-4, a)

    pop = dataclasses.replace(pop, commute_p=rare(pop.commute_p), errand_rate=rare(pop.errand_rate),
                              night_p=rare(pop.night_p))
    return book.vehicle_book(pop, book.BookConfig(vehicle_years=60, seed=9))


def test_a_period_without_driving_has_the_features_the_stream_computes_for_it(garaged_book):
    """Training rows of periods without driving equal what the stream serves for a window
    without driving: ``features_from_sums`` of zero sums, NaN where it gives NaN."""
    idle = garaged_book[garaged_book["distance_km_by_vehicle_30d"] == 0]
    assert len(idle) > 300
    served = features_from_sums({c: np.zeros(1) for c in DAILY_SUMS}, 30)
    assert list(served) == feature_names(30)
    for name, value in served.items():
        np.testing.assert_array_equal(idle[name].to_numpy(), np.full(len(idle), value[0]), err_msg=name)


def test_driving_periods_hold_values_the_stream_can_produce(garaged_book):
    """Whole trips and events over the period's km, mean speed = km / hours, shares in
    [0, 1], SOC in percent, a positive cell risk index, nothing missing."""
    drove = garaged_book[garaged_book["distance_km_by_vehicle_30d"] > 0]
    assert len(drove) > 300
    assert not drove[feature_names(30)].isna().any().any()

    def f(name):
        return drove[book.col(name)].to_numpy()

    assert (f("trips") >= 1).all() and (f("trips") == np.round(f("trips"))).all()
    assert (f("driving_hours") > 0).all()
    # within the book's rounding to 5 decimals (a car out of the garage may drive a few minutes)
    np.testing.assert_allclose(f("distance_km") / f("mean_speed_kmh"), f("driving_hours"), rtol=1e-4, atol=2e-5)
    assert (f("mean_speed_kmh") <= 250).all()  # the contract's speed bound
    for rate, per_km in (("hard_brake_per_100km", 100), ("harsh_accel_per_100km", 100), ("harsh_turn_per_100km", 100),
                         ("fcw_per_1000km", 1000), ("thermal_alarms_per_1000km", 1000)):
        events = f(rate) * f("distance_km") / per_km
        np.testing.assert_allclose(events, np.round(events), atol=1e-3, err_msg=rate)
    for share in ("unsafe_following_share", "unbuckled_share", "night_share", "speeding_share", "regen_share"):
        assert ((f(share) >= 0) & (f(share) <= 1)).all(), share
    assert ((f("soc_trip_start_mean") >= 0) & (f("soc_trip_start_mean") <= 100)).all()
    assert (f("cell_risk_exposure_weighted") > 0).all()


def test_claims_book_contract_and_truth(small_book):
    out, manifest, _, cb = small_book
    assert list(cb.columns) == list(claims.CLAIM_COLUMNS)
    assert len(cb) == 4_000 and cb["claim_id"].is_unique
    assert set(cb["fraud_type"]) == set(claims.FRAUD_TYPES)
    assert (cb["is_fraud"] == (cb["fraud_type"] != "genuine")).all()
    assert (cb["ring_id"] != "").sum() == manifest["ring_claims"] > 20
    rings = [json.loads(x) for x in (out / "truth" / "rings.jsonl").read_text().splitlines()]
    assert len(rings) == manifest["rings"] == 3
    assert {c for r in rings for c in r["claim_ids"]} == set(cb.loc[cb["ring_id"] != "", "claim_id"])
    assert (cb["cell_h3"] > 0).all() and cb["amount_eur"].gt(0).all()


def test_verification_facts_tell_fraud_from_genuine(small_book):
    _, _, _, cb = small_book
    tel = cb[cb["telematics_available"]]
    pulse = tel.groupby("fraud_type")["crash_pulse_found"].mean()
    assert pulse["genuine"] > 0.75 and pulse["staged_ring"] < 0.2 and pulse["cycle_ring"] < 0.2
    assert pulse["phantom_ring"] == 0
    in_cell = tel.groupby("fraud_type")["insured_in_cell"].mean()
    assert in_cell["genuine"] > 0.9 and in_cell["phantom_ring"] < 0.25
    # no telematics -> no verification facts
    assert cb.loc[~cb["telematics_available"], "insured_in_cell"].isna().all()
    # ring claims cost more (inflated amounts) than genuine ones
    assert (
        cb.loc[cb["ring_id"] != "", "amount_eur"].median()
        > cb.loc[cb["fraud_type"] == "genuine", "amount_eur"].median()
    )


def test_same_seed_same_book(small_book, tmp_path):
    out, _, vb, cb = small_book
    book.write_book(tmp_path, book.BookConfig(vehicle_years=3_000, seed=5, claims=4_000))
    pd.testing.assert_frame_equal(vb, pd.read_parquet(tmp_path / "vehicles.parquet"))
    pd.testing.assert_frame_equal(cb, pd.read_parquet(tmp_path / "claims.parquet"))


@pytest.mark.slow
def test_full_book_in_under_two_minutes(tmp_path):
    t0 = time.perf_counter()
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "voltrisk",
            "simulate",
            "book",
            "--vehicle-years",
            "50000",
            "--seed",
            "7",
            "--out",
            str(tmp_path),
            "--json",
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    elapsed = time.perf_counter() - t0
    manifest = json.loads(done.stdout)
    assert elapsed < 120
    assert manifest["vehicle_years"] == pytest.approx(50_000, rel=0.01)
    assert manifest["claims"] >= 30_000 and manifest["rings"] >= 20
    assert 0.05 <= manifest["crash_frequency_per_vehicle_year"] <= 0.10
    assert drivers.BASE_RATE > 0
