"""The features engine's reorder buffer: whatever order the four clean topics deliver
a vehicle's records in, the trips it emits equal the pure offline computation, and
live records wait only the live hold."""

from __future__ import annotations

import msgspec
import pytest

from contracts.examples import RAW_EXAMPLES
from stream import records as R
from stream import topics as T
from stream.featuring import FeatureEngine
from stream.features import Batch, features_offline
from stream.features.synthetic import synthetic_stream

TOPIC_OF = {R.StateV1: T.STATE, R.DynamicsV1: T.DYNAMICS, R.AlarmV1: T.ALARM, R.CrashV1: T.CRASH}
TRIP_FIELDS = ("vehicle_id", "start_ts_ms", "end_ts_ms", "end_reason", "samples_n", "distance_km", "hard_brake_n",
               "harsh_accel_n", "harsh_turn_n", "fcw_n", "soc_start_pct")


class Clock:
    def __init__(self, t: float):
        self.t = t

    def __call__(self) -> float:
        return self.t


def _messages(pairs, per_message: int = 10):
    """Clean messages as the gate writes them: one topic's run of a vehicle's records per message."""
    out, runs = [], {}

    def cut(vid):
        topic, recs = runs.pop(vid)
        out.append((T.clean_name(topic.name), vid.encode(), msgspec.json.encode(recs)))

    for vid, rec in pairs:
        topic = TOPIC_OF[type(rec)]
        if vid in runs and (runs[vid][0] is not topic or len(runs[vid][1]) == per_message):
            cut(vid)
        runs.setdefault(vid, (topic, []))[1].append(rec)
    for vid in list(runs):
        cut(vid)
    return out


def _trips(rows) -> list[tuple]:
    trips = [msgspec.json.decode(v) for topic, _, v in rows if topic == "trips.v1"]
    return sorted(tuple(round(t[f], 6) if isinstance(t[f], float) else t[f] for f in TRIP_FIELDS) for t in trips)


@pytest.mark.parametrize("skew_ms", [0, 60_000, -60_000])
def test_trips_equal_the_offline_functions_whatever_the_topics_delivery_order(skew_ms):
    pairs = synthetic_stream(vehicles=4, trips_per_vehicle=3, seed=3, max_trip_s=600, max_gap_h=1.0)
    expected = features_offline(Batch.from_records(pairs))
    want = sorted(tuple(round(getattr(t, f), 6) if isinstance(getattr(t, f), float) else getattr(t, f) for f in TRIP_FIELDS)
                  for t in expected.trips.values())
    assert len(want) >= 8 and sum(t[6] for t in want) > 0

    msgs = _messages(pairs)
    # the state topic delivered up to a minute of event time behind (skew > 0) or ahead of the others
    state = T.clean_name(T.STATE.name)
    first_ts = lambda m: msgspec.json.decode(m[2])[0]["ts_ms"] + (skew_ms if m[0] == state else 0)  # noqa: E731
    msgs.sort(key=first_ts)
    clock = Clock(2_000_000_000.0)  # the records are from 2026: catching up, not live
    engine = FeatureEngine({}, reorder_ms=120_000, max_hold_s=10.0, live_hold_ms=50, live_window_ms=30_000, clock=clock)
    rows = []
    for i in range(0, len(msgs), 25):  # take() batches of 25 messages, 10 ms apart
        rows += engine.step(msgs[i:i + 25])
        clock.t += 0.01
    assert engine.held_records > 0  # the last 2 min of each vehicle wait for the reorder window
    clock.t += 11.0  # then the vehicles fall quiet and everything is released
    rows += engine.flush()
    clock.t += 200.0  # idle trips close after 2 min of silence
    rows += engine.flush()
    assert engine.held_records == 0 and engine.records_in == len(pairs)
    got = _trips(rows)
    assert [t for t in got if t[3] == "park"] == [t for t in want if t[3] == "park"]


def _live_and_old(now_ms: int):
    """A vehicle's last second of dynamics and another's from an hour ago, as two clean messages."""
    recs = [R.DynamicsV1(event_id=f"l{i}", ts_ms=now_ms - 1000 + i * 100, speed_kmh=40.0, accel_long_mps2=0.0,
                         accel_lat_mps2=0.0, yaw_rate_dps=0.0, heading_deg=0.0, motor_power_kw=10.0, adas_state="off",
                         fcw=False, headway_s=None, seatbelt_driver=True, lat=31.2, lon=121.4 + i * 1e-4)
            for i in range(10)]
    old = [msgspec.structs.replace(r, event_id=f"o{i}", ts_ms=now_ms - 3_600_000 + i) for i, r in enumerate(recs)]
    msgs = [(T.clean_name(T.DYNAMICS.name), b"veh-live", msgspec.json.encode(recs)),
            (T.clean_name(T.DYNAMICS.name), b"veh-old", msgspec.json.encode(old))]
    return recs, msgs


def test_live_records_wait_only_the_live_hold():
    now_s = 2_000_000_000.0
    clock = Clock(now_s)
    engine = FeatureEngine({}, reorder_ms=120_000, max_hold_s=10.0, live_hold_ms=50, live_window_ms=30_000,
                           score_every_ms=0, clock=clock)
    recs, msgs = _live_and_old(int(now_s * 1000))
    assert engine.step(msgs) == [] and engine.held_records == 20
    clock.t += 0.049
    assert engine.flush() == [] and engine.held_records == 20
    clock.t += 0.002  # past the live hold: the live vehicle's records go and it is scored
    out = engine.flush()
    assert engine.held_records == 10  # the hour-old records still wait for the reorder window
    scores = [msgspec.json.decode(v) for topic, _, v in out if topic == "scores.ubi.v1"]
    assert [s["vehicle_id"] for s in scores] == ["veh-live"] and scores[0]["through_ts_ms"] == recs[-1].ts_ms


def test_live_records_of_a_whole_fetch_wait_for_nothing_and_old_ones_still_wait_for_the_reorder_window():
    """The gate's hand-off gives the features every topic of a fetch in one step: its live
    records are processed in that step; records out of the live window are held as ever."""
    now_s = 2_000_000_000.0
    clock = Clock(now_s)
    engine = FeatureEngine({}, reorder_ms=120_000, max_hold_s=10.0, live_hold_ms=50, live_window_ms=30_000,
                           score_every_ms=0, clock=clock)
    recs, msgs = _live_and_old(int(now_s * 1000))
    out = engine.step(msgs, whole_fetch=True)
    assert engine.held_records == 10  # the hour-old vehicle's
    scores = [msgspec.json.decode(v) for topic, _, v in out if topic == "scores.ubi.v1"]
    assert [s["vehicle_id"] for s in scores] == ["veh-live"] and scores[0]["through_ts_ms"] == recs[-1].ts_ms


def _driving(vid: bytes, first_ms: int, seconds: int, tag: str = "") -> list[tuple[str, bytes, bytes]]:
    """A vehicle driving at 10 Hz: one clean message a second of its samples."""
    recs = [R.DynamicsV1(event_id=f"{tag}{vid.decode()}-{t}", ts_ms=t, speed_kmh=40.0, accel_long_mps2=0.0,
                         accel_lat_mps2=0.0, yaw_rate_dps=0.0, heading_deg=0.0, motor_power_kw=10.0, adas_state="off",
                         fcw=False, headway_s=None, seatbelt_driver=True, lat=31.2, lon=121.4 + (t % 100_000) * 1e-7)
            for t in range(first_ms, first_ms + seconds * 1000, 100)]
    return [(T.clean_name(T.DYNAMICS.name), vid, msgspec.json.encode(recs[i:i + 10])) for i in range(0, len(recs), 10)]


def _open_trip_samples(engine: FeatureEngine, vid: bytes) -> int:
    from stream.features.state import decode_state

    raw = engine.store.get(b"s" + vid)
    return decode_state(raw).trip.samples_n if raw is not None else 0


def test_a_backlog_longer_than_the_live_window_loses_no_sample_of_a_vehicle_still_driving():
    """A worker back after a 60 s outage reads the backlog: its older half is out of the
    30 s live window, its newer half live. The live samples must not go before the older
    ones, which the state would then drop as late (30 s of every vehicle still driving
    were lost so); once the vehicle's dynamics reached the clock, all of it goes."""
    now_s = 2_000_000_000.0
    clock = Clock(now_s)
    engine = FeatureEngine({}, reorder_ms=120_000, max_hold_s=10.0, live_hold_ms=10, live_window_ms=30_000,
                           score_every_ms=0, clock=clock)
    now_ms = int(now_s * 1000)
    backlog = _driving(b"veh", now_ms - 60_000, 60)
    held = []
    for i in range(0, len(backlog), 5):  # caught up within a few seconds
        engine.step(backlog[i:i + 5])
        clock.t += 0.2
        held.append(engine.held_records)
        assert _open_trip_samples(engine, b"veh") + engine.held_records == 10 * (i + 5)  # none dropped as late
    # out of the live window the records waited; once the dynamics reached it they went
    assert held[:5] == [50, 100, 150, 200, 250] and held[-1] == 50
    clock.t += 0.02
    engine.flush()
    assert engine.held_records == 0 and _open_trip_samples(engine, b"veh") == 600
    assert engine.redelivered == engine.late_dropped == 0
    # a sample older than the vehicle's last is skipped as one its state may hold, and counted
    engine.step(_driving(b"veh", now_ms - 50_000, 1, tag="again-"))
    engine.drain()
    assert _open_trip_samples(engine, b"veh") == 600 and engine.redelivered == 10


def test_a_vehicle_behind_the_clock_keeps_its_records_in_event_time_order():
    """Records of a vehicle still catching up (its dynamics out of the live window) wait
    for the reorder window, and a live state of it waits behind them."""
    now_s = 2_000_000_000.0
    clock = Clock(now_s)
    engine = FeatureEngine({}, reorder_ms=120_000, max_hold_s=10.0, live_hold_ms=10, live_window_ms=30_000,
                           score_every_ms=0, clock=clock)
    now_ms = int(now_s * 1000)
    engine.step(_driving(b"veh", now_ms - 300_000, 200))  # up to 100 s ago
    state = msgspec.structs.replace(RAW_EXAMPLES[T.STATE.name].record, event_id="s-live", ts_ms=now_ms, speed_kmh=40.0,
                                    vehicle_status="started", gear="D")
    engine.step([(T.clean_name(T.STATE.name), b"veh", msgspec.json.encode([state]))])
    clock.t += 0.02
    engine.flush()
    assert engine.held_records == 10 * 120 + 1  # past the cutoff (newest - 120 s): the last 120 s and the state
    clock.t += 0.02
    engine.step(_driving(b"veh", now_ms - 100_000, 100))  # the vehicle reaches the clock: all of it goes
    clock.t += 0.02
    engine.flush()
    assert engine.held_records == 0 and _open_trip_samples(engine, b"veh") == 3_000


def test_a_vehicle_whose_first_records_gave_no_score_is_scored_with_its_next_ones():
    """Scores are paced (``score_every_ms``) per vehicle scored: a vehicle whose first
    records made no score (a state, no day of driving yet) waits for no pace; it waited
    5 s, and a vehicle that sent nothing more within them had no score at all."""
    now_s = 2_000_000_000.0
    clock = Clock(now_s)
    engine = FeatureEngine({}, score_every_ms=5_000, clock=clock)
    now_ms = int(now_s * 1000)
    state = msgspec.structs.replace(RAW_EXAMPLES[T.STATE.name].record, event_id="s0", ts_ms=now_ms - 120_000)
    engine.step([(T.clean_name(T.STATE.name), b"veh", msgspec.json.encode([state]))])
    out = engine.drain()
    assert not [v for t, _, v in out if t == "scores.ubi.v1"]
    clock.t += 1.0
    engine.step(_driving(b"veh", now_ms - 100_000, 10))
    out = engine.drain()
    scores = [msgspec.json.decode(v) for t, _, v in out if t == "scores.ubi.v1"]
    assert [s["vehicle_id"] for s in scores] == ["veh"] and scores[0]["through_ts_ms"] == now_ms - 90_100
