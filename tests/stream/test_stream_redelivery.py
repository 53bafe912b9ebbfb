"""The features' redelivery check (``FeatureEngine._unseen`` / ``_mark_taken``) pinned
to its meaning on random batches, so a faster version must keep it: duplicates within a
batch (the same event id under two kinds counts once), records at or before what a
vehicle's state took, mixed record kinds, a vehicle in two runs."""

from __future__ import annotations

import random

import msgspec
import pytest

from contracts.examples import RAW_EXAMPLES
from stream.featuring import _KIND_INDEX, FeatureEngine
from stream.features.state import VehicleState

KINDS = [RAW_EXAMPLES[t].record for t in ("ev.dynamics.v1", "ev.state.v1", "ev.alarm.v1", "ev.crash.v1")]


def reference(pairs, states):
    """The check spelled out, one record at a time."""
    out, ids, redelivered = [], set(), 0
    for vid, r in pairs:
        if (vid, r.event_id) in ids:
            redelivered += 1
            continue
        ids.add((vid, r.event_id))
        s = states.get(vid)
        if s is not None and s.taken:
            last_ts, last_ids = s.taken[_KIND_INDEX[type(r)]]
            if r.ts_ms < last_ts or (r.ts_ms == last_ts and r.event_id in last_ids):
                redelivered += 1
                continue
        out.append((vid, r))
    return out, redelivered


def reference_taken(pairs, taken):
    for vid, r in pairs:
        t = taken.setdefault(vid, [(-1, []) for _ in _KIND_INDEX])
        k = _KIND_INDEX[type(r)]
        if r.ts_ms > t[k][0]:
            t[k] = (r.ts_ms, [r.event_id])
        elif r.ts_ms == t[k][0]:
            t[k][1].append(r.event_id)
    return taken


def random_batch(rng: random.Random, mixed: bool):
    runs, states = [], {}
    for v in range(rng.randint(1, 6)):
        vid = f"veh-{v}"
        if rng.random() < 0.6:
            states[vid] = VehicleState(taken=[(rng.randint(0, 20), [f"{vid}-{rng.randint(0, 25)}" for _ in range(rng.randint(0, 2))])
                                              for _ in _KIND_INDEX])
        else:
            states[vid] = VehicleState()
        for _ in range(rng.choice([1, 1, 2])):  # now and then a vehicle comes in two runs
            run = []
            for _ in range(rng.randint(1, 12)):
                i = rng.randint(0, 30)
                kind = rng.choice(KINDS) if mixed else KINDS[0]
                run.append((vid, msgspec.structs.replace(kind, event_id=f"{vid}-{i}", ts_ms=i)))
            runs.append(run)
    rng.shuffle(runs)
    return [p for run in runs for p in run], states


@pytest.mark.parametrize("mixed", [False, True])
def test_the_batch_check_equals_the_record_by_record_one(mixed):
    rng = random.Random(11)
    for _ in range(500):
        pairs, states = random_batch(rng, mixed)
        engine = FeatureEngine({})
        want, want_redelivered = reference(pairs, states)
        got = engine._unseen(pairs, states)
        assert [(v, r.event_id, r.ts_ms, type(r)) for v, r in got] == \
               [(v, r.event_id, r.ts_ms, type(r)) for v, r in want]
        assert engine.redelivered == want_redelivered
        expected = reference_taken(got, {v: [(t, list(i)) for t, i in s.taken] if s.taken else [(-1, []) for _ in _KIND_INDEX]
                                         for v, s in states.items()})
        FeatureEngine._mark_taken(got, states)
        for vid in {v for v, _ in got}:
            assert [(t, list(i)) for t, i in states[vid].taken] == expected[vid], vid


def test_a_fresh_vehicle_passes_whole_and_its_state_remembers_the_newest():
    recs = [msgspec.structs.replace(KINDS[0], event_id=f"e{i}", ts_ms=100 + i // 2) for i in range(10)]
    states = {"v": VehicleState()}
    engine = FeatureEngine({})
    pairs = [("v", r) for r in recs]
    assert engine._unseen(pairs, states) == pairs
    FeatureEngine._mark_taken(pairs, states)
    assert states["v"].taken[0] == (104, ["e8", "e9"])
    # the same run again is a redelivery, record for record
    assert engine._unseen(pairs, states) == [] and engine.redelivered == 10


def test_a_late_alarm_counts_and_its_redelivery_does_not():
    """The gate lets alarms and crashes through hours late: one older than the newest the
    vehicle's state took is new unless it is among the newest ids taken; past those, it
    cannot be told from a redelivery. States written before the ids were kept decode."""
    from stream.features import decode_state, encode_state
    from stream.features.state import RECENT_IDS

    alarm = KINDS[2]
    engine = FeatureEngine({})
    states = {"v": VehicleState()}

    def take(recs):
        pairs = engine._unseen([("v", r) for r in recs], states)
        FeatureEngine._mark_taken(pairs, states)
        states["v"] = decode_state(encode_state(states["v"]))  # through the store, as the worker keeps it
        return [r.event_id for _, r in pairs]

    a2 = msgspec.structs.replace(alarm, event_id="a2", ts_ms=10_000)
    a1 = msgspec.structs.replace(alarm, event_id="a1", ts_ms=8_000)
    assert take([a2]) == ["a2"]
    assert take([a1]) == ["a1"]  # half an hour late, say: new
    assert take([a1, a2]) == [] and engine.redelivered == 2
    assert take([msgspec.structs.replace(alarm, event_id=f"m{i}", ts_ms=20_000 + i) for i in range(RECENT_IDS)])
    assert states["v"].recent[2].floor_ts_ms == 10_000  # a1 and a2 were let go
    assert take([msgspec.structs.replace(alarm, event_id="old", ts_ms=9_000)]) == []  # at or before the floor
    assert take([msgspec.structs.replace(alarm, event_id="late", ts_ms=15_000)]) == ["late"]  # after it: new

    old = msgspec.msgpack.encode(VehicleState(taken=[(-1, []), (-1, []), (10_000, ["a2"]), (-1, [])]))
    stripped = msgspec.msgpack.decode(old)[:-1]  # an array without the newest ids, as states were written before
    states["v"] = decode_state(msgspec.msgpack.encode(stripped))
    assert states["v"].recent == []
    assert take([a2, a1, msgspec.structs.replace(alarm, event_id="a3", ts_ms=11_000)]) == ["a3"]  # as before: a1 unknown
