"""A features step that fails on some vehicles' records (a defect the gate could not
catch) is confined to them: the other vehicles' rows are exactly those of a run
without the failing vehicles, the failing vehicles' records go to the dead-letter
topic whole (and their state is untouched), and once the defect is fixed the dead
letters run through the engine again and give the trips of an uninterrupted run. A
failure that is not confined to some vehicles still raises (the worker stops)."""

from __future__ import annotations

from collections import Counter

import msgspec
import pytest

import stream.featuring as featuring
from stream import topics as T
from stream.features import Batch, decode_state, features_offline
from stream.features.synthetic import synthetic_stream
from test_stream_handover import CATCHING_UP, Clock, _engine, _final_trips, _finish, _messages, _row, _run

KIND_OF = {T.clean_name(t.name): t.record for t in (T.STATE, T.DYNAMICS, T.ALARM, T.CRASH)}


def _fleet():
    pairs = synthetic_stream(vehicles=4, trips_per_vehicle=3, seed=5, max_trip_s=600, max_gap_h=1.0)
    poison = sorted({v for v, _ in pairs})[1]
    return pairs, poison


def _trips(pairs) -> list[tuple]:
    return sorted(_row(t) for t in features_offline(Batch.from_records(pairs)).trips.values())


@pytest.fixture
def defect(monkeypatch):
    """The features step raises on any batch holding the vehicles in the returned set."""
    failing: set[str] = set()
    real = featuring.update

    def update(states, batch, cells=None):
        hit = failing.intersection(batch.vehicle_ids())
        if hit:
            raise ValueError(f"a defect met by {sorted(hit)}")
        return real(states, batch, cells)

    monkeypatch.setattr(featuring, "update", update)
    return failing


def test_a_failing_vehicle_is_dead_lettered_and_the_others_go_on(defect):
    pairs, poison = _fleet()
    defect.add(poison)
    clock = Clock(CATCHING_UP)
    store: dict[bytes, bytes] = {}
    engine = _engine(store, clock)
    rows = _run(engine, clock, _messages(pairs)) + _finish(engine, clock)

    others = [p for p in pairs if p[0] != poison]
    assert _final_trips(rows) == _trips(others)  # exactly the rows of a run without the failing vehicle
    assert not any(key == poison for _, key, _ in rows)
    assert b"s" + poison.encode() not in store  # its state untouched: never written

    dead = engine.take_dead_letters()
    assert engine.take_dead_letters() == []  # taken once
    got = []
    for key, value, headers in dead:
        h = dict(headers)
        assert key == poison.encode()
        assert (h["reason"], h["error_class"]) == (b"features_error", b"internal")
        assert h["source_topic"].decode() in KIND_OF
        assert b"ValueError: a defect met by" in h["message"] and b"voltrisk dlq redrive" in h["message"]
        recs = msgspec.json.decode(value, type=list[KIND_OF[h["source_topic"].decode()]])
        assert int(h["records"]) == len(recs) <= featuring.DEAD_LETTER_RECORDS
        got += recs
    mine = [r for v, r in pairs if v == poison]
    assert Counter(r.event_id for r in got) == Counter(r.event_id for r in mine)  # every record, once
    assert sorted(got, key=lambda r: (r.ts_ms, r.event_id)) == sorted(mine, key=lambda r: (r.ts_ms, r.event_id))
    assert engine.quarantined == len(mine)

    # the defect fixed: the dead letters, sent back to their clean topics, complete the fleet
    defect.clear()
    redriven = [(dict(h)["source_topic"].decode(), key, value) for key, value, h in dead]
    rows += engine.step(redriven) + _finish(engine, clock)
    assert _final_trips(rows) == _trips(pairs)
    assert engine.take_dead_letters() == []


def test_a_step_failing_on_each_of_its_vehicles_raises(defect):
    pairs, _ = _fleet()
    defect.update(v for v, _ in pairs)
    clock = Clock(CATCHING_UP)
    engine = _engine({}, clock)
    engine.max_hold_s = 0.0  # release at once: one step over every vehicle
    msgs = [m for v in sorted({v for v, _ in pairs}) for m in _messages([p for p in pairs if p[0] == v])[:10]]
    with pytest.raises(ValueError, match="a defect met by"):
        engine.step(msgs)
    assert engine.take_dead_letters() == [] and engine.quarantined == 0


def test_vehicles_failing_alone_one_after_another_raise(defect):
    """A step of one vehicle (a timer's release, a hand-off) that fails is confined to it;
    three different vehicles failing so with no step passing in between are a defect of
    the step, not of their data."""
    pairs, poison = _fleet()
    vids = sorted({v for v, _ in pairs})
    defect.update(vids)
    clock = Clock(CATCHING_UP)
    engine = _engine({}, clock)
    engine.max_hold_s = 0.0  # release at once: each step is the one vehicle's
    first = {v: _messages([p for p in pairs if p[0] == v])[:3] for v in vids}
    for v in vids[:2]:
        assert engine.step(first[v]) == []
    assert engine.step(first[vids[0]][:1]) == []  # the same vehicle again: still two
    assert engine.quarantined == 7
    with pytest.raises(ValueError):
        engine.step(first[vids[2]])
    # a step passing in between starts the count again
    engine = _engine({}, clock)
    engine.max_hold_s = 0.0
    for v in vids[:2]:
        engine.step(first[v])
    defect.discard(vids[3])
    assert engine.step(first[vids[3]])
    assert engine.step(first[vids[2]]) == [] and engine.quarantined == 9


def test_a_failing_idle_close_leaves_that_trip_open_and_closes_the_others(monkeypatch):
    pairs, _ = _fleet()
    clock = Clock(CATCHING_UP)
    store: dict[bytes, bytes] = {}
    engine = _engine(store, clock)
    msgs = _messages(pairs)
    _run(engine, clock, msgs[: len(msgs) // 2])
    clock.t += 11.0
    engine.flush()  # the reorder buffer lets go
    open_now = {v for v in engine.open_trips if decode_state(store[b"s" + v.encode()]).trip is not None}
    assert len(open_now) > 1
    poison = min(open_now)
    real = featuring.flush_idle

    def flush_idle(states, now_ms, cells=None):
        if poison in states:
            raise ValueError("a defect met by the poison vehicle")
        return real(states, now_ms, cells)

    monkeypatch.setattr(featuring, "flush_idle", flush_idle)
    engine.watermark_ms += 3_600_000  # event time moved on an hour (other vehicles' records)
    clock.t += 200.0
    closed = engine.flush()
    assert not engine.open_trips  # the others closed; the poison's trip waits for its next records
    assert decode_state(store[b"s" + poison.encode()]).trip is not None
    assert {vid for topic, vid, _ in closed if topic == featuring.TRIPS} == open_now - {poison}
    assert engine.take_dead_letters() == []  # nothing to dead-letter: no records


def test_a_message_the_features_cannot_read_is_dead_lettered_as_it_came():
    """A redriven message naming no clean topic, or a value that is not the topic's
    records: dead-lettered whole, its message settled, the step goes on."""
    pairs, _ = _fleet()
    dynamics = T.clean_name(T.DYNAMICS.name)
    assert featuring.redriven_topic([("source_topic", dynamics.encode())]) == dynamics
    assert featuring.redriven_topic({"source_topic": dynamics.encode()}) == dynamics
    assert featuring.redriven_topic([("source_topic", b"ev.dynamics.v1")]) == T.REDRIVE.name  # not a clean topic
    assert featuring.redriven_topic([]) == T.REDRIVE.name

    clock = Clock(CATCHING_UP)
    engine = _engine({}, clock)
    engine.max_hold_s = 0.0
    good = _messages(pairs)[:5]
    bad = [(T.REDRIVE.name, b"veh-0009", b'[{"ts_ms": 1}]'), (dynamics, b"veh-0008", b"{not json")]
    assert engine.step(bad + good, tokens=["b1", "b2"] + [f"g{i}" for i in range(5)]) is not None
    assert engine.take_settled() == ["b1", "b2"] + [f"g{i}" for i in range(5)]  # every message settled
    dead = engine.take_dead_letters()
    assert [(key, value, dict(h)["source_topic"]) for key, value, h in dead] == \
        [(b"veh-0009", b'[{"ts_ms": 1}]', T.REDRIVE.name.encode()), (b"veh-0008", b"{not json", dynamics.encode())]
    assert all(dict(h)["reason"] == b"features_error" for _, _, h in dead) and engine.quarantined == 2
