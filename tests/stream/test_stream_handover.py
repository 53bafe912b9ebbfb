"""Handing vehicles from one worker to another: the features engine writes its
per-vehicle state to a changelog, the next owner restores it and continues the open
trips, so a partition move in the middle of trips leaves the same trips as one
uninterrupted run (the pure offline functions)."""

from __future__ import annotations

import msgspec

from stream import records as R
from stream import topics as T
from stream.featuring import FeatureEngine
from stream.features import Batch, decode_state, encode_state, features_offline
from stream.features.synthetic import synthetic_stream

TOPIC_OF = {R.StateV1: T.STATE, R.DynamicsV1: T.DYNAMICS, R.AlarmV1: T.ALARM, R.CrashV1: T.CRASH}
TRIP_FIELDS = ("vehicle_id", "start_ts_ms", "end_ts_ms", "end_reason", "samples_n", "distance_km", "hard_brake_n",
               "harsh_accel_n", "harsh_turn_n", "fcw_n", "soc_start_pct")
CATCHING_UP = 2_000_000_000.0  # wall clock far past the 2026 records: not live


class Clock:
    def __init__(self, t: float):
        self.t = t

    def __call__(self) -> float:
        return self.t


def _messages(pairs) -> list[tuple[str, bytes, bytes]]:
    """One clean message per record, in event-time order."""
    return [(T.clean_name(TOPIC_OF[type(r)].name), vid.encode(), msgspec.json.encode(r))
            for vid, r in sorted(pairs, key=lambda p: p[1].ts_ms)]


def _row(t) -> tuple:
    get = t.get if isinstance(t, dict) else lambda f: getattr(t, f)
    return tuple(round(get(f), 6) if isinstance(get(f), float) else get(f) for f in TRIP_FIELDS)


def _final_trips(rows) -> list[tuple]:
    """The newest version of each emitted trip."""
    latest = {}
    for topic, _, v in rows:
        if topic == "trips.v1":
            t = msgspec.json.decode(v)
            key = (t["vehicle_id"], t["start_ts_ms"])
            if key not in latest or t["version_ts_ms"] >= latest[key]["version_ts_ms"]:
                latest[key] = t
    return sorted(_row(t) for t in latest.values())


def _run(engine: FeatureEngine, clock: Clock, msgs) -> list:
    rows = []
    for i in range(0, len(msgs), 20):
        rows += engine.step(msgs[i:i + 20])
        clock.t += 0.01
    return rows


def _finish(engine: FeatureEngine, clock: Clock) -> list:
    clock.t += 11.0  # nothing more arrives: the reorder buffer lets go
    rows = engine.flush()
    clock.t += 200.0  # and the idle trips close
    return rows + engine.flush()


def _history():
    pairs = synthetic_stream(vehicles=4, trips_per_vehicle=3, seed=5, max_trip_s=600, max_gap_h=1.0)
    expected = sorted(_row(t) for t in features_offline(Batch.from_records(pairs)).trips.values())
    msgs = _messages(pairs)
    # cut where every vehicle is in the middle of a trip or has one behind it
    return expected, msgs[: len(msgs) // 2], msgs[len(msgs) // 2:]


def _engine(store, clock) -> FeatureEngine:
    return FeatureEngine(store, reorder_ms=120_000, max_hold_s=10.0, live_hold_ms=50, live_window_ms=30_000,
                         scoring=False, clock=clock)


def test_a_vehicle_handed_over_mid_trip_continues_its_trip_on_the_new_owner():
    expected, first, second = _history()
    assert len(expected) >= 8
    clock = Clock(CATCHING_UP)
    old = _engine({}, clock)
    rows = _run(old, clock, first)
    assert old.held_records > 0  # the reorder buffer holds acked records at the hand-over
    rows += old.drain()
    assert old.held_records == 0
    changelog = [(key, value) for _, key, value in old.take_changes()]
    assert old.take_changes() == []  # taken once
    open_at_handover = {k[1:].decode() for k, v in changelog if k[:1] == b"s" and decode_state(v).trip is not None}
    assert open_at_handover  # the cut falls inside trips

    new = _engine({}, clock)  # another worker: nothing local
    assert new.restore(changelog) == len({k for k, _ in changelog if k[:1] == b"s"})
    assert new.open_trips == open_at_handover
    rows += _run(new, clock, second) + _finish(new, clock)
    assert _final_trips(rows) == expected


def test_without_the_changelog_the_new_owner_splits_the_open_trips():
    """The failure the changelog prevents (and proof the test above can fail)."""
    expected, first, second = _history()
    clock = Clock(CATCHING_UP)
    old = _engine({}, clock)
    rows = _run(old, clock, first) + old.drain()
    new = _engine({}, clock)
    rows += _run(new, clock, second) + _finish(new, clock)
    got = _final_trips(rows)
    # the trips open at the cut restart on the new owner: their first part is missing
    assert got != expected
    assert sum(t[4] for t in got) < sum(t[4] for t in expected)


def test_local_state_newer_than_the_changelog_wins():
    """A worker killed between writing its local state and the changelog restarts
    with local state ahead of the changelog: the restore keeps the local state."""
    expected, first, second = _history()
    clock = Clock(CATCHING_UP)
    store: dict[bytes, bytes] = {}
    engine = _engine(store, clock)
    _run(engine, clock, first[: len(first) // 2])
    stale = [(key, value) for _, key, value in engine.take_changes()]
    _run(engine, clock, first[len(first) // 2:])
    engine.take_changes()  # written locally; the changelog records are lost with the crash
    ahead = dict(store)

    restarted = _engine(store, clock)
    assert restarted.restore(stale) == 0
    assert store == ahead
    # a vehicle the local store never saw is taken from the changelog
    fresh = _engine({}, clock)
    assert fresh.restore(stale) == len({k for k, _ in stale if k[:1] == b"s"})


def test_records_redelivered_after_the_hand_over_are_not_counted_twice():
    """The new owner resumes from the committed offset, behind the state it restored,
    and a gate that took the raw partition over re-sends records it cannot know were
    cleaned: both kinds of redelivery are skipped, and the trips stay exact."""
    expected, first, second = _history()
    clock = Clock(CATCHING_UP)
    old = _engine({}, clock)
    rows = _run(old, clock, first) + old.drain()
    changelog = [(key, value) for _, key, value in old.take_changes()]
    new = _engine({}, clock)
    new.restore(changelog)
    behind = first[-len(first) // 3:]  # redelivered from the last committed offset
    resent = second[:50]  # and cleaned twice by the gate: each record twice in a row
    rows += _run(new, clock, behind + [m for m in resent for _ in (0, 1)] + second[50:]) + _finish(new, clock)
    assert new.redelivered == len(behind) + len(resent)
    assert _final_trips(rows) == expected


def test_a_taken_over_open_trip_is_not_closed_as_idle_before_its_vehicle_could_send():
    """The new owner has never heard from the vehicles it took over; their open trips
    wait the idle time in wall clock like any other, even if another vehicle's state
    moved the event-time watermark far ahead."""
    _, first, _ = _history()
    clock = Clock(CATCHING_UP)
    old = _engine({}, clock)
    _run(old, clock, first)
    old.drain()
    changelog = [(key, value) for _, key, value in old.take_changes()]
    ahead = _engine({}, clock)  # a vehicle far ahead in event time (another fleet's, a live one)
    ahead.step([(T.clean_name(T.DYNAMICS.name), b"veh-live", msgspec.json.encode(
        R.DynamicsV1(event_id="live-1", ts_ms=int(clock.t * 1000), speed_kmh=30.0, accel_long_mps2=0.0,
                     accel_lat_mps2=0.0, yaw_rate_dps=0.0, heading_deg=0.0, motor_power_kw=5.0, adas_state="off",
                     fcw=False, headway_s=None, seatbelt_driver=True, lat=31.2, lon=121.4)))])
    ahead.drain()
    changelog += [(key, value) for _, key, value in ahead.take_changes()]

    new = _engine({}, clock)
    new.restore(changelog)
    open_before = set(new.open_trips)
    assert len(open_before) >= 2 and new.watermark_ms >= int(clock.t * 1000)
    clock.t += 60.0
    assert [r for r in new.flush() if r[0] == "trips.v1"] == [] and new.open_trips == open_before
    clock.t += 61.0  # 2 min without a word from them: idle, closed by the watermark
    closed = [msgspec.json.decode(v)["vehicle_id"] for topic, _, v in new.flush() if topic == "trips.v1"]
    assert set(closed) == open_before - {"veh-live"}  # whose last sample is the watermark itself


def test_a_message_is_settled_only_once_all_its_records_are_processed():
    """Tokens (the worker's Faust events) come back from ``take_settled`` when every
    record of their message has left the reorder buffer, never earlier: a crash then
    redelivers what was held, and nothing held is acknowledged."""
    expected, first, second = _history()
    clock = Clock(CATCHING_UP)
    engine = _engine({}, clock)
    # several records per message, so that the reorder cutoff falls inside some
    msgs, per = [], 7
    for topic, key, value in first:
        if msgs and msgs[-1][0] == topic and msgs[-1][1] == key and len(msgs[-1][2]) < per:
            msgs[-1][2].append(msgspec.json.decode(value))
        else:
            msgs.append((topic, key, [msgspec.json.decode(value)]))
    msgs = [(t, k, msgspec.json.encode(v)) for t, k, v in msgs]
    tokens = list(range(len(msgs)))
    settled: list[int] = []
    for i in range(0, len(msgs), 20):
        engine.step(msgs[i:i + 20], tokens[i:i + 20])
        settled += engine.take_settled()
        clock.t += 0.01
    held_tokens = {c[4] for chunks in engine._held.values() for c in chunks}
    assert held_tokens and not held_tokens & set(settled)
    assert sorted(settled + sorted(held_tokens)) == tokens  # each token once: settled or still held
    engine.handing_over = True  # leaving: nothing is held back any more
    engine.step([], [])
    assert sorted(settled + engine.take_settled()) == tokens and engine.held_records == 0
    # a message without records (all refused upstream) is settled at once
    engine.handing_over = False
    engine.step([(T.clean_name(T.DYNAMICS.name), b"veh-0000", b"[]")], ["empty"])
    assert engine.take_settled() == ["empty"]


def _replay_after_crash(tmp_path, durable_before_ack: bool) -> tuple[list, list, int]:
    """Steps over a RocksDB store as the worker runs them: each step's state sealed,
    committed and its finished messages acknowledged once "Kafka acknowledged" its rows.
    The process dies while a step that closes a trip is unacknowledged (its rows lost
    with the producer's buffer); a new process on the same store resumes from the
    first unacknowledged message. (delivered rows, expected trips, that step's index)"""
    from stream.kvstore import WriteBackStore

    expected, first, second = _history()
    msgs = first + second
    clock = Clock(CATCHING_UP)
    store = WriteBackStore.open(tmp_path / "features")
    engine = _engine(store, clock)
    delivered, acked, lost_at = [], set(), None
    for i in range(0, len(msgs), 20):
        rows = engine.step(msgs[i:i + 20], list(range(i, min(i + 20, len(msgs)))))
        if durable_before_ack:
            store.flush()
        sealed, done = engine.seal(), engine.take_settled()
        if any(t == "trips.v1" and msgspec.json.decode(v)["end_reason"] == "park" for t, _, v in rows) and i > 0:
            lost_at = i  # this step's rows never reach Kafka
            break
        delivered += rows
        engine.commit(sealed)
        acked.update(done)
        clock.t += 0.01
    assert lost_at is not None
    store.db.close()  # the crash: nothing more is written

    resume = min(set(range(len(msgs))) - acked)  # the committed offset
    assert resume <= lost_at
    store = WriteBackStore.open(tmp_path / "features")
    engine = _engine(store, clock)
    delivered += _run(engine, clock, msgs[resume:]) + _finish(engine, clock)
    store.close()
    return delivered, expected, lost_at


def test_a_crash_before_the_rows_are_acknowledged_recomputes_them_from_the_state_before(tmp_path):
    """The features' state becomes durable only after Kafka acknowledged the rows computed
    with it (``FeatureEngine.seal``/``commit``): a worker killed in between resumes from
    the state before that step and emits its rows again, so a trip that closed in the
    lost step is still delivered, exactly as the offline functions compute it."""
    delivered, expected, _ = _replay_after_crash(tmp_path, durable_before_ack=False)
    assert _final_trips(delivered) == expected


def test_state_made_durable_before_the_acknowledgement_loses_the_rows_of_the_crashed_step(tmp_path):
    """The failure the ordering prevents (and proof the test above can fail): the
    redelivered records are skipped as already in the state, and the closed trip of the
    lost step never reaches Kafka."""
    delivered, expected, _ = _replay_after_crash(tmp_path, durable_before_ack=True)
    got = _final_trips(delivered)
    assert got != expected
    assert {(t[0], t[1]) for t in got if t[3] == "park"} < {(t[0], t[1]) for t in expected if t[3] == "park"}


def test_a_worker_forgets_the_vehicles_it_handed_over_and_closes_none_of_their_trips():
    """After a hand-over the old owner keeps its stale copy of a vehicle in the middle of a
    trip; its idle timer must not close that trip (its rows and changelog record would be
    newer than the new owner's) once event time moves on with its own vehicles."""
    expected, first, _ = _history()
    clock = Clock(CATCHING_UP)
    old = FeatureEngine({}, reorder_ms=120_000, max_hold_s=10.0, scoring=False, partitions=12, clock=clock)
    _run(old, clock, first)
    old.drain()
    old.take_changes()
    moving = sorted(old.open_trips)
    assert moving
    gone = T.partition_of(moving[0].encode(), 12)
    kept = set(range(12)) - {gone}
    leaving = {v for v in old._arrived if T.partition_of(v.encode(), 12) == gone}
    assert old.keep_only(kept) == len(leaving) and moving[0] not in old.open_trips
    old.watermark_ms += 3_600_000  # its own vehicles moved event time on an hour
    clock.t += 200.0
    rows = old.flush()
    assert not any(vid in leaving for _, vid, _ in rows)
    assert not any(vid in leaving for vid, _, _ in old.take_changes())


def test_on_a_tie_of_event_time_the_changelog_state_wins():
    """A new owner may change a vehicle's state without moving its event time (an alarm
    older than its newest sample): when the vehicle comes back, the changelog's state is
    taken, not the stale local copy with the same event time."""
    _, first, _ = _history()
    clock = Clock(CATCHING_UP)
    store: dict[bytes, bytes] = {}
    a = _engine(store, clock)
    _run(a, clock, first)
    a.drain()
    vid, key, value = next((v, k, val) for v, k, val in a.take_changes() if k[:1] == b"s")
    other = decode_state(value)
    other.days = other.days + [[99_999.0] + [0.0] * (len(other.days[0]) - 1 if other.days else 0)]  # B's change, same seen
    changed = encode_state(other)
    assert decode_state(changed).seen_ts_ms == decode_state(store[key]).seen_ts_ms
    assert a.restore([(key, changed)], complete=False) == 0  # a changelog not read to its end: local wins a tie
    assert a.restore([(key, changed)]) == 1 and store[key] == changed
