"""H3 cell aggregates: exposure, harsh rate, crashes, speed profile, risk index,
resolution-7 rollup with a k-vehicle threshold, and each vehicle's exposure-weighted risk."""

from __future__ import annotations

import h3
import numpy as np
import pytest

from stream.features import Batch, CellTable, as_columns, cell_aggregates, rollup_for_display
from stream.features.cells import SPEED_BINS, cells_of
from stream.features.windows import vehicle_features_from_daily

T0 = 1_780_000_000_000
A = (31.2304, 121.4737)  # People's Square, Shanghai
B = (31.2397, 121.4998)  # Lujiazui, about 3 km east


def _visits(rep):
    return as_columns(sorted(rep.visits.values(), key=lambda v: (v.vehicle_id, v.start_ts_ms)))


def test_cells_are_h3_res8_integers():
    c = cells_of(np.array([A[0]]), np.array([A[1]]))
    assert c.dtype == np.uint64
    assert h3.int_to_str(int(c[0])) == h3.latlng_to_cell(A[0], A[1], 8)


def test_cell_aggregates_from_two_vehicles_are_exact(mk):
    n = 3601  # one hour at 1 Hz, half in A then half in B
    idx = np.arange(n)
    lat = np.where(idx <= 1800, A[0], B[0])
    lon = np.where(idx <= 1800, A[1], B[1])
    a = np.zeros(n)
    a[100:103] = -0.4 * mk.G  # a hard brake in A
    a[2500:2503] = -0.4 * mk.G  # and one in B
    v1 = mk.dynamics(T0 + idx * 1000, vehicle="v1", speed_kmh=45.0, accel_long_mps2=a, lat=lat, lon=lon)
    v2 = mk.dynamics(T0 + idx[:601] * 1000, vehicle="v2", speed_kmh=25.0, lat=A[0], lon=A[1])  # 10 min in A
    crash = {"cell": cells_of(np.array([B[0]]), np.array([B[1]]))}
    rep = mk.run([Batch.of(dynamics=v1.take(np.arange(0, 2000))),
                  Batch.of(dynamics=v1.take(np.arange(2000, n))), Batch.of(dynamics=v2)])
    agg = cell_aggregates(_visits(rep), crash)
    ca, cb = cells_of(np.array([A[0], B[0]]), np.array([A[1], B[1]]))
    got = {int(c): i for i, c in enumerate(agg["cell"])}
    ia, ib = got[int(ca)], got[int(cb)]
    assert agg["exposure_h"][ia] == pytest.approx((1800 + 600) / 3600)
    assert agg["exposure_h"][ib] == pytest.approx(1800 / 3600)
    assert (agg["vehicle_n"][ia], agg["vehicle_n"][ib]) == (2, 1)
    assert (agg["harsh_n"][ia], agg["harsh_n"][ib]) == (1.0, 1.0)
    assert agg["harsh_per_h"][ib] == pytest.approx(2.0)
    assert (agg["crash_n"][ia], agg["crash_n"][ib]) == (0.0, 1.0)
    # time-weighted speed profile: 1800 s at 45 km/h and 600 s at 25 km/h in A
    assert agg["speed_p50_kmh"][ia] == pytest.approx(40 + 10 * (0.5 * 2400 - 600) / 1800)
    assert agg["distance_km"][ia] == pytest.approx(45 * 0.5 + 25 * 600 / 3600)


def test_risk_index_is_credibility_weighted_relative_harsh_rate():
    visits = {"cell": np.array([1, 2], np.uint64), "vehicle_id": np.array(["a", "b"], object),
              "driving_s": np.array([36_000.0, 36_000.0]), "distance_km": np.array([400.0, 400.0]),
              "hard_brake_n": np.array([20.0, 0.0]), "harsh_accel_n": np.zeros(2), "harsh_turn_n": np.zeros(2),
              "speed_hist_s": np.zeros((2, SPEED_BINS))}
    visits["speed_hist_s"][:, 4] = 36_000.0  # all at 40-50 km/h
    agg = cell_aggregates(visits)
    # fleet rate 1 per hour; 10 h seen + 5 h prior: (20 + 5) / 15 and (0 + 5) / 15; no crashes
    assert agg["risk_index"] == pytest.approx([(25 / 15) ** 0.7, (5 / 15) ** 0.7])
    assert agg["speed_p85_kmh"] == pytest.approx([48.5, 48.5])
    assert agg["speed_limit_kmh"].tolist() == [50.0, 50.0]


def test_display_rollup_is_res7_and_hides_cells_with_few_vehicles(mk):
    batches = [Batch.of(dynamics=mk.dynamics(T0 + np.arange(61) * 1000, vehicle=f"v{i}", lat=A[0], lon=A[1]))
               for i in range(5)]
    batches.append(Batch.of(dynamics=mk.dynamics(T0 + np.arange(61) * 1000, vehicle="lonely", lat=31.9, lon=120.5)))
    visits = _visits(mk.run(batches))
    shown = rollup_for_display(visits, min_vehicles=5)
    assert [h3.int_to_str(int(c)) for c in shown["cell"]] == [h3.latlng_to_cell(A[0], A[1], 7)]
    assert shown["vehicle_n"].tolist() == [5]
    assert len(rollup_for_display(visits, min_vehicles=1)["cell"]) == 2


def test_vehicle_exposure_weighted_cell_risk(mk):
    ca, cb = cells_of(np.array([A[0], B[0]]), np.array([A[1], B[1]]))
    order = np.argsort([ca, cb])
    table = CellTable(np.array([ca, cb], np.uint64)[order], np.array([2.0, 1.0])[order], np.array([120.0, 120.0]))
    idx = np.arange(7201)  # 1 h in the risk-2 cell, 1 h in the risk-1 cell
    d = mk.dynamics(T0 + idx * 1000, lat=np.where(idx <= 3600, A[0], B[0]), lon=np.where(idx <= 3600, A[1], B[1]))
    rep = mk.run([Batch.of(dynamics=d)], cells=table)
    daily = as_columns(list(rep.daily.values()))
    f = vehicle_features_from_daily({k: np.asarray(v) for k, v in daily.items()}, as_of_day=int(daily["day"][0]))
    assert f["cell_risk_exposure_weighted_by_vehicle_30d"][0] == pytest.approx(1.5)
