"""One definition for training and serving: the same events through the offline
function and through random-sized batches of the incremental functions give equal
trips, daily rows, cell visits and window features. Plus window arithmetic and a
property test on random streams."""

from __future__ import annotations

import random

import msgspec
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from stream.features import (
    Batch,
    Replay,
    as_columns,
    decode_history,
    decode_state,
    encode_history,
    encode_state,
    feature_names,
    features_offline,
    flush_idle,
    merge_history,
    update,
    vehicle_features_from_daily,
    vehicle_features_from_states,
)
from stream.features.synthetic import synthetic_stream
from stream.features.windows import DAILY_SUMS

T0 = 1_780_000_000_000


def _columns(rows) -> dict[str, np.ndarray]:
    return {k: np.asarray(v) for k, v in as_columns(list(rows)).items()}


def _assert_same_rows(a: dict, b: dict, what: str) -> None:
    assert a.keys() == b.keys(), f"{what}: keys differ: {sorted(set(a) ^ set(b))[:5]}"
    for key in a:
        x, y = msgspec.structs.asdict(a[key]), msgspec.structs.asdict(b[key])
        x.pop("version_ts_ms", None), y.pop("version_ts_ms", None)
        for name, value in x.items():
            if isinstance(value, float | list):
                np.testing.assert_allclose(value, y[name], rtol=1e-9, atol=1e-9, err_msg=f"{what} {key} {name}")
            else:
                assert value == y[name], f"{what} {key} {name}: {value} != {y[name]}"


def _incremental(pairs, seed: int) -> Replay:
    rng = random.Random(seed)
    rep, states, i = Replay(), {}, 0
    while i < len(pairs):
        k = rng.randint(1, 500)
        chunk = pairs[i: i + k]
        rng.shuffle(chunk)  # order inside a batch does not matter
        u = update(states, Batch.from_records(chunk))
        rep.add(u)
        states.update({v: decode_state(encode_state(s)) for v, s in u.states.items()})
        i += k
    end = max(s.seen_ts_ms for s in states.values()) + 300_001
    rep.add(flush_idle(states, end))
    rep.states = states
    return rep


@pytest.fixture(scope="module")
def stream_pairs():
    # trips up to 20 h apart: several local days, so daily rows leave the hot state
    return synthetic_stream(vehicles=5, trips_per_vehicle=8, seed=11, max_trip_s=400, max_gap_h=20)


@pytest.mark.parametrize("seed", [1, 2])
def test_incremental_batches_equal_the_offline_computation(stream_pairs, seed):
    offline = features_offline(Batch.from_records(stream_pairs))
    online = _incremental(list(stream_pairs), seed)
    assert online.late_dropped == 0
    assert len(offline.trips) == 40 and len(offline.crashes) >= 1
    assert sum(len(h) for h in online.history.values()) >= 10  # final days handed over to the history
    assert sum(t.hard_brake_n for t in offline.trips.values()) > 0
    assert sum(t.harsh_turn_n for t in offline.trips.values()) > 0
    _assert_same_rows(offline.trips, online.trips, "trips")
    _assert_same_rows(offline.daily, online.daily, "daily")
    _assert_same_rows(offline.visits, online.visits, "visits")
    _assert_same_rows(offline.crashes, online.crashes, "crashes")

    # window features: from the stream's own state (serving) and from the emitted
    # daily rows, as the warehouse keeps them (training), are the same numbers
    as_of = max(d.day for d in offline.daily.values())
    from_rows = vehicle_features_from_daily(_columns(offline.daily.values()), as_of)
    from_state = vehicle_features_from_states(online.states, as_of, online.history)
    assert from_rows["vehicle_id"].tolist() == from_state["vehicle_id"].tolist()
    for name in feature_names(7) + feature_names(30):
        np.testing.assert_allclose(from_rows[name], from_state[name], rtol=1e-9, err_msg=name)
    assert from_rows["trips_by_vehicle_30d"].sum() == 40
    assert vehicle_features_from_states(online.states, as_of)["trips_by_vehicle_30d"].sum() < 40  # hot days alone


def _daily(vehicle: str, day: int, **values) -> dict:
    row = {c: 0.0 for c in DAILY_SUMS} | {"vehicle_id": vehicle, "day": day}
    return row | values


def test_windows_cover_the_last_7_and_30_local_days():
    rows = [
        _daily("a", 100, distance_km=100.0, driving_s=7200.0, hard_brake_n=3.0, trips_n=2.0),  # in 7d and 30d
        _daily("a", 93, distance_km=50.0, driving_s=3600.0, hard_brake_n=1.0, trips_n=1.0),  # 30d only (7 days back)
        _daily("a", 70, distance_km=900.0, driving_s=3600.0, trips_n=9.0),  # 30 days back: outside
        _daily("b", 80, distance_km=20.0, driving_s=1800.0, soc_start_sum_pct=150.0, soc_start_n=2.0),
    ]
    f = vehicle_features_from_daily({k: np.array([r[k] for r in rows]) for k in rows[0]}, as_of_day=100)
    assert f["vehicle_id"].tolist() == ["a", "b"]
    assert f["distance_km_by_vehicle_7d"].tolist() == [100.0, 0.0]
    assert f["distance_km_by_vehicle_30d"].tolist() == [150.0, 20.0]
    assert f["trips_by_vehicle_30d"].tolist() == [3.0, 0.0]
    assert f["hard_brake_per_100km_by_vehicle_7d"].tolist() == [3.0, 0.0]
    assert f["hard_brake_per_100km_by_vehicle_30d"].tolist() == pytest.approx([4 / 150 * 100, 0.0])
    assert f["mean_speed_kmh_by_vehicle_30d"].tolist() == pytest.approx([50.0, 40.0])
    assert np.isnan(f["soc_trip_start_mean_by_vehicle_7d"]).tolist() == [True, True]
    assert f["soc_trip_start_mean_by_vehicle_30d"][1] == 75.0
    assert f["cell_risk_exposure_weighted_by_vehicle_7d"][1] == 1.0  # no driving: fleet average


def test_contract_column_names():
    names = feature_names(30)
    assert names[0] == "distance_km_by_vehicle_30d"
    assert set(names) >= {"hard_brake_per_100km_by_vehicle_30d", "unsafe_following_share_by_vehicle_30d",
                          "fcw_per_1000km_by_vehicle_30d", "regen_share_by_vehicle_30d",
                          "thermal_alarms_per_1000km_by_vehicle_30d", "soc_trip_start_mean_by_vehicle_30d",
                          "cell_risk_exposure_weighted_by_vehicle_30d", "speeding_share_by_vehicle_30d"}
    assert len(names) == 16 and all(n.endswith("_by_vehicle_30d") for n in names)
    assert feature_names(7)[3] == "mean_speed_kmh_by_vehicle_7d"


def test_state_and_history_round_trip_through_bytes_and_stay_small(stream_pairs):
    u = update({}, Batch.from_records(stream_pairs))
    assert u.closed_days
    for s in u.states.values():
        data = encode_state(s)
        assert decode_state(data) == s
        assert len(s.days) <= 2 and len(data) < 1200
    for rows in u.closed_days.values():
        assert decode_history(encode_history(rows)) == rows
    old = [[float(d)] + [1.0] * len(DAILY_SUMS) for d in range(100, 130)]
    merged = merge_history(old, [[131.0] + [2.0] * len(DAILY_SUMS)])
    assert [r[0] for r in merged] == [float(d) for d in range(101, 130)] + [131.0]  # last 31 days


_sample = st.tuples(
    st.integers(0, 400_000),  # ms since previous sample (crosses the 3 s and 5 min gaps)
    st.floats(0, 250), st.floats(-50, 50), st.floats(-50, 50), st.floats(-500, 1000),
    st.booleans(), st.one_of(st.none(), st.floats(0, 30)), st.booleans(),
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.tuples(st.sampled_from(["a", "b", "c"]), _sample), min_size=1, max_size=120),
       st.lists(st.integers(1, 40), min_size=1, max_size=10))
def test_random_streams_never_crash_and_give_non_negative_rates(mk, events, cuts):
    clock = {"a": T0, "b": T0, "c": T0}
    vid, ts, cols = [], [], []
    for v, (gap, *values) in events:
        clock[v] += gap
        vid.append(v), ts.append(clock[v]), cols.append(values)
    speed, along, alat, power, fcw, headway, belt = (list(c) for c in zip(*cols))
    d = mk.dynamics(ts, vehicle=vid, speed_kmh=speed, accel_long_mps2=along, accel_lat_mps2=alat, motor_power_kw=power,
                    fcw=fcw, headway_s=[np.nan if h is None else h for h in headway], seatbelt_driver=belt)
    at = sorted({min(c, len(ts)) for c in np.cumsum(cuts)} - {len(ts)})
    rep = mk.run(mk.split(d, list(at)))
    offline = features_offline(Batch.of(dynamics=d))
    _assert_same_rows(offline.trips, rep.trips, "trips")
    assert sum(t.samples_n for t in rep.trips.values()) == len(ts)
    for t in rep.trips.values():
        assert t.duration_s >= 0 and t.distance_km >= 0
        for share in (t.night_share, t.speeding_share, t.unsafe_following_share, t.unbuckled_share, t.regen_share):
            assert 0.0 <= share <= 1.0 + 1e-12
    f = vehicle_features_from_daily(_columns(rep.daily.values()), max(d.day for d in rep.daily.values()))
    for name in feature_names(30):
        values = f[name][~np.isnan(f[name])]
        assert (values >= 0).all(), name
        assert np.isfinite(values).all(), name  # a tiny distance must not make a rate per 100 km inf


def test_a_vanishing_distance_gives_no_rate_instead_of_an_infinite_one():
    from stream.features.windows import features_from_sums

    sums = {name: np.array([0.0, 0.0]) for name in DAILY_SUMS}
    # the smallest positive float of distance and of driving time, and one event of each kind
    sums.update(distance_km=np.array([5e-324, 12.0]), driving_s=np.array([5e-324, 900.0]),
                hard_brake_n=np.array([1.0, 1.0]), fcw_n=np.array([1.0, 0.0]), night_s=np.array([1.0, 90.0]))
    with np.errstate(over="raise"):  # an overflow would raise here instead of giving inf
        f = features_from_sums(sums, 30)
    assert f["hard_brake_per_100km_by_vehicle_30d"].tolist() == [0.0, pytest.approx(100.0 / 12.0)]
    assert f["fcw_per_1000km_by_vehicle_30d"].tolist() == [0.0, 0.0]
    assert f["night_share_by_vehicle_30d"].tolist() == [0.0, pytest.approx(0.1)]
    assert all(np.isfinite(v).all() for k, v in f.items() if k != "vehicle_id" and np.asarray(v).dtype.kind == "f"
               and not k.startswith("soc_"))
