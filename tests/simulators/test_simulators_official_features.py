"""The platform's own feature functions (``stream/features``: the code the streaming
worker and the training job share), applied to the simulated event stream, agree
with the simulator's reference computations and with the book.

The stream learns each cell's speed limit and risk index from data (``CellTable``);
here it is given the simulator's city (its road map and true risk), so both sides
use the same limits. Window counts (distance, hours, trips) cover the 7 simulated
days; the reference scales them to 30, so they are compared after scaling."""

from __future__ import annotations

import numpy as np
import pytest

from simulators import book, city, drivers, fleet, reference

START_MS = 1_793_462_400_000  # 2026-11-01 00:00 Shanghai
DAYS = 7
TELEMETRY = ("ev.dynamics.v1", "ev.state.v1", "ev.alarm.v1", "ev.crash.v1")
COUNTS = ("distance_km", "driving_hours", "trips")
# official vs reference: same definitions, so only segmentation details may differ
SAME = {
    "distance_km": 0.01,
    "driving_hours": 0.01,
    "mean_speed_kmh": 0.01,
    "hard_brake_per_100km": 0.05,
    "harsh_accel_per_100km": 0.05,
    "harsh_turn_per_100km": 0.1,
    "regen_share": 0.05,
    "speeding_share": 0.05,
    "night_share": 0.05,
    "soc_trip_start_mean": 0.02,
    "cell_risk_exposure_weighted": 0.01,
    "trips": 0.1,
}


@pytest.fixture(scope="module")
def three_ways(policies):
    from stream.features.batch import Batch
    from stream.features.cells import CellTable
    from stream.features.outputs import as_columns
    from stream.features.pipeline import features_offline
    from stream.features.windows import local_day, vehicle_features_from_daily

    pop = drivers.build_population(24, seed=3, policies=policies)
    events = list(fleet.simulate(pop, fleet.FleetConfig(start_ms=START_MS, days=DAYS)))
    ref = reference.fleet_features(events, hz=1, window_days=DAYS)
    dyn = [e.record for e in events if e.topic == "ev.dynamics.v1"]
    cells = np.unique(city.cells_of(np.array([d.lat for d in dyn]), np.array([d.lon for d in dyn])))
    table = CellTable.from_aggregates(
        {
            "cell": cells,
            "risk_index": np.array([city.cell_risk_index(int(c)) for c in cells]),
            "speed_limit_kmh": np.array([city.speed_limit_kmh(int(c)) for c in cells]),
        }
    )
    replay = features_offline(Batch.from_records((e.key, e.record) for e in events if e.topic in TELEMETRY), table)
    daily = as_columns(list(replay.daily.values()))
    last_day = int(local_day(START_MS + DAYS * fleet.DAY_MS + 6 * 3_600_000))  # night drives end by 06:00
    out = vehicle_features_from_daily(daily, as_of_day=last_day)
    official = {
        str(v): {k: float(out[book.col(k)][j]) * (30 / DAYS if k in COUNTS else 1.0) for k in ref[str(v)]}
        for j, v in enumerate(out["vehicle_id"])
    }
    vb = book.vehicle_book(pop, book.BookConfig(vehicle_years=24, seed=3, periods=12))
    return pop, ref, official, vb


@pytest.mark.parametrize("name", sorted(SAME))
def test_official_features_match_the_reference(three_ways, name):
    _, ref, official, _ = three_ways
    vins = sorted(set(ref) & set(official))
    assert len(vins) >= 20
    a = np.array([official[v][name] for v in vins])
    b = np.array([ref[v][name] for v in vins])
    ok = np.isfinite(a) & np.isfinite(b)
    assert abs(a[ok].mean() / b[ok].mean() - 1) <= SAME[name], (
        f"{name}: official {a[ok].mean():.4g} vs reference {b[ok].mean():.4g}"
    )


@pytest.mark.parametrize(
    "name",
    ["hard_brake_per_100km", "regen_share", "speeding_share", "distance_km", "soc_trip_start_mean", "mean_speed_kmh"],
)
def test_official_features_agree_with_the_book(three_ways, name):
    _, _, official, vb = three_ways
    per_driver = vb.groupby("vehicle_id")[book.col(name)].mean()
    vins = sorted(set(official) & set(per_driver.index))
    a = np.array([official[v][name] for v in vins])
    b = per_driver.loc[vins].to_numpy()
    ok = np.isfinite(a) & np.isfinite(b)
    assert abs(a[ok].mean() / b[ok].mean() - 1) <= 0.25, (
        f"{name}: official {a[ok].mean():.4g} vs book {b[ok].mean():.4g}"
    )
    assert np.corrcoef(a[ok], b[ok])[0, 1] > 0.3
