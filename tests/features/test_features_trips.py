"""Trip segmentation, distance, night share, SOC at trip start, park states."""

from __future__ import annotations

import msgspec
import numpy as np
import pytest

from stream.features import Alarms, Batch, CellTable, Crashes, Dynamics, States, features_offline, local_day, update
from stream.features.cells import cells_of
from stream.features.synthetic import synthetic_stream
from stream.records import AlarmV1, CrashV1, DynamicsV1, StateV1

T0 = 1_780_000_000_000


def _trips(rep):
    return sorted(rep.trips.values(), key=lambda t: t.start_ts_ms)


def test_gap_over_5_min_splits_a_trip_and_under_does_not(mk):
    first = T0 + np.arange(300) * 1000
    for gap_s, n_trips in ((360, 2), (240, 1)):
        second = first[-1] + gap_s * 1000 + np.arange(300) * 1000
        d = mk.dynamics(np.concatenate([first, second]), speed_kmh=60.0)
        trips = _trips(mk.run(mk.split(d, [150, 300, 301])))
        assert len(trips) == n_trips
        if n_trips == 2:
            assert [t.duration_s for t in trips] == [299.0, 299.0]
            assert trips[0].distance_km == pytest.approx(60 * 299 / 3600)
            assert trips[0].end_reason == "gap"
        else:
            assert trips[0].duration_s == 299 + gap_s + 299


def test_distance_integrates_speed_with_the_trapezoid_rule(mk):
    ts = T0 + np.arange(101) * 1000
    d = mk.dynamics(ts, speed_kmh=np.arange(101) * 1.0)  # 0 -> 100 km/h in 100 s
    (trip,) = _trips(mk.run([Batch.of(dynamics=d)]))
    assert trip.distance_km == pytest.approx(0.5 * 100 * 100 / 3600)
    assert trip.mean_speed_kmh == pytest.approx(50.0)
    assert trip.max_speed_kmh == 100.0


def test_park_state_ends_the_trip_at_once_without_waiting_for_a_gap(mk):
    d = mk.dynamics(T0 + np.arange(300) * 1000)
    parked = mk.states([T0 + 150_500], parked=True)
    rep = mk.run([Batch.of(dynamics=d.take(np.arange(200)), states=parked), Batch.of(dynamics=d.take(np.arange(200, 300)))],
                 flush=False)
    (trip,) = rep.trips.values()  # the second trip is still open
    assert (trip.start_ts_ms, trip.end_ts_ms, trip.end_reason, trip.samples_n) == (T0, T0 + 150_000, "park", 151)
    assert rep.states["v1"].trip.start_ts_ms == T0 + 151_000


def test_park_state_after_the_last_sample_closes_the_open_trip(mk):
    rep = mk.run([Batch.of(dynamics=mk.dynamics(T0 + np.arange(10) * 1000)),
                  Batch.of(states=mk.states([T0 + 12_000], parked=True))], flush=False)
    (trip,) = rep.trips.values()
    assert (trip.end_ts_ms, trip.end_reason) == (T0 + 9_000, "park")
    assert rep.states["v1"].trip is None


def test_night_share_across_local_midnight(mk):
    # 22:30 -> 00:30 China Standard Time at 1 Hz; each sample closes the second before it
    ts = mk.midnight - 5_400_000 + np.arange(7_201) * 1000
    rep = mk.run(mk.split(mk.dynamics(ts), [3000, 5400]))
    (trip,) = rep.trips.values()
    assert trip.duration_s == 7200.0
    assert trip.night_share == pytest.approx(5401 / 7200)  # samples 23:00:00 ... 00:30:00
    days = {d.day: d.driving_s for d in rep.daily.values()}
    day0 = local_day(mk.midnight)
    assert days == {day0 - 1: 5399.0, day0: 1801.0}
    # the trip counts on the day it started
    assert {d.day: d.trips_n for d in rep.daily.values()} == {day0 - 1: 1.0, day0: 0.0}


def test_soc_at_trip_start_from_the_reading_before_or_just_after(mk):
    d = mk.dynamics(T0 + np.arange(120) * 1000)
    before = mk.states([T0 - 700_000, T0 - 60_000], soc_pct=[90.0, 80.0])
    (trip,) = _trips(mk.run([Batch.of(dynamics=d, states=before)]))
    assert trip.soc_start_pct == 80.0
    # only a reading 20 min before: too old; the first one 30 s into the trip is used
    stale_then_after = mk.states([T0 - 1_200_000, T0 + 30_000, T0 + 60_000], soc_pct=[90.0, 79.0, 78.0])
    batches = [Batch.of(states=stale_then_after.take(np.array([0]))),
               Batch.of(dynamics=d.take(np.arange(20))),
               Batch.of(dynamics=d.take(np.arange(20, 120)), states=stale_then_after.take(np.array([1, 2])))]
    (trip,) = _trips(mk.run(batches))
    assert trip.soc_start_pct == 79.0
    # a reading after the trip ended does not count
    late = mk.states([T0 + 200_000], soc_pct=[70.0])
    (trip,) = _trips(mk.run([Batch.of(dynamics=d, states=late)]))
    assert trip.soc_start_pct is None


def test_late_dynamics_are_dropped_and_counted(mk):
    d = mk.dynamics(T0 + np.arange(10) * 1000)
    rep = mk.run([Batch.of(dynamics=d.take(np.arange(5, 10))), Batch.of(dynamics=d.take(np.arange(0, 5)))])
    (trip,) = rep.trips.values()
    assert (trip.samples_n, rep.late_dropped) == (5, 5)


def test_speeding_share_uses_the_cell_speed_limit_plus_10_percent(mk):
    lat, lon = 31.23, 121.47
    cell = int(cells_of(np.array([lat]), np.array([lon]))[0])
    table = CellTable(np.array([cell], np.uint64), np.array([1.0]), np.array([50.0]))
    speed = np.r_[50.0, np.full(30, 54.0), np.full(70, 56.0)]  # 55 km/h is the threshold
    (trip,) = _trips(mk.run([Batch.of(dynamics=mk.dynamics(T0 + np.arange(101) * 1000, speed_kmh=speed,
                                                             lat=lat, lon=lon))], cells=table))
    assert trip.speeding_share == pytest.approx(70 / 100)


def test_batch_from_records_splits_kinds_and_reads_none_headway():
    dyn = [DynamicsV1(event_id=f"d{i}", ts_ms=T0 + i * 1000, speed_kmh=90.0, accel_long_mps2=0.0, accel_lat_mps2=0.0,
                      yaw_rate_dps=0.0, heading_deg=0.0, motor_power_kw=5.0, adas_state="active",
                      headway_s=0.5 if i % 2 else None, lat=31.2, lon=121.4) for i in range(11)]
    off = StateV1(event_id="s", ts_ms=T0 + 20_000, vehicle_status="off", charging_state="not_charging", speed_kmh=0.0,
                  odometer_km=1.0, pack_voltage_v=400.0, pack_current_a=0.0, soc_pct=55.0, gear="P",
                  insulation_resistance_kohm=500.0, lat=31.2, lon=121.4, cell_voltage_max_v=4.0,
                  cell_voltage_min_v=4.0, cell_temp_max_c=30.0, cell_temp_min_c=30.0, alarm_level=0, alarm_flags=0)
    batch = Batch.from_records([("v1", r) for r in dyn] + [("v1", off)])
    assert (len(batch.dynamics), len(batch.states), bool(batch.states.parked[0])) == (11, 1, True)
    assert np.isnan(batch.dynamics.headway_s[0]) and batch.dynamics.headway_s[1] == 0.5
    (trip,) = update({}, batch).trips
    assert trip.unsafe_following_share == pytest.approx(0.5) and trip.end_reason == "park"
    with pytest.raises(TypeError, match="not a telemetry record"):
        Batch.from_records([("v1", "not a record")])


def test_replay_from_warehouse_columns_gives_the_same_trips_as_the_records():
    pairs = synthetic_stream(vehicles=4, trips_per_vehicle=3, seed=14)
    by_kind: dict[type, dict[str, list]] = {}
    for vid, rec in pairs:
        cols = by_kind.setdefault(type(rec), {})
        for name, value in {"vehicle_id": vid, **msgspec.structs.asdict(rec)}.items():
            cols.setdefault(name, []).append(value)
    dyn = dict(by_kind[DynamicsV1])
    dyn["h3_r8"] = cells_of(np.array(dyn.pop("lat")), np.array(dyn.pop("lon")))  # raw positions expired by TTL
    replayed = Batch.of(Dynamics.from_columns(dyn), States.from_columns(by_kind[StateV1]),
                        Alarms.from_columns(by_kind[AlarmV1]), Crashes.from_columns(by_kind[CrashV1]))
    a = features_offline(Batch.from_records(pairs))
    b = features_offline(replayed)
    assert a.trips == b.trips and a.daily == b.daily and a.crashes == b.crashes
    assert len(a.trips) == 12 and len(a.crashes) >= 1 and sum(d.thermal_alarm_n for d in a.daily.values()) >= 1
