"""The gate's whole-message path (``_TopicGate.pass_array``): a batch message all of
whose records pass is decided by checks over the message instead of a verdict per
record. It must give exactly what the per-record path gives: the same clean messages
and dead letters, byte for byte, and the same de-duplication state afterwards.

Random takes exercise every way a record can fail inside an otherwise good message:
duplicates (in the message, across messages, of an earlier take), replays of the same
offset, lateness, clocks in the future, VINs in event ids, GCJ-02 positions, state
records whose fields contradict each other."""

from __future__ import annotations

import random

import msgspec
import pytest

from contracts.examples import RAW_EXAMPLES
from stream.agents import gate_batch
from stream.gate import Gate, Passed
from stream.kvstore import WriteBackStore
from voltrisk.settings import WorkerSettings

LATENESS_MS = 60_000
NOW_MS = RAW_EXAMPLES["ev.dynamics.v1"].record.ts_ms + 3_600_000
VINS = ["LSGBENCH000000001", "LSGBENCH000000002", "LFVWHOLE123456789"]


def _take(rng: random.Random, topic: str, offset: int, earlier: list[tuple], ids: list[str]) -> list[tuple]:
    ex = RAW_EXAMPLES[topic]
    msgs = []
    for _ in range(rng.randint(1, 12)):
        if earlier and rng.random() < 0.1:  # a replay of an earlier message (same partition and offset)
            msgs.append(rng.choice(earlier))
            continue
        vin = rng.choice(VINS)
        coord = "GCJ02" if rng.random() < 0.15 else "WGS84"
        headers = [(k, v.encode()) for k, v in {**ex.headers, "coord_sys": coord}.items()]
        recs = []
        for _ in range(rng.randint(1, 8)):
            roll = rng.random()
            ts = NOW_MS - rng.randint(0, 30_000)
            if roll < 0.03:
                ts = NOW_MS + 11 * 60_000  # beyond the allowed clock skew
            elif roll < 0.08:
                ts = NOW_MS - rng.randint(LATENESS_MS, 3 * LATENESS_MS)  # late unless the vehicle is new
            # a new id, or now and then one sent before (in this message, this take or an earlier one)
            event_id = rng.choice(ids) if ids and rng.random() < 0.04 else f"w-{len(ids)}"
            ids.append(event_id)
            if rng.random() < 0.03:
                event_id += "-" + rng.choice(VINS).lower()
            fields = {"event_id": event_id, "ts_ms": ts}
            if topic == "ev.state.v1" and rng.random() < 0.05:
                fields["cell_voltage_min_v"] = ex.record.cell_voltage_max_v + 0.1
            recs.append(msgspec.structs.replace(ex.record, **fields))
        msgs.append((vin.encode(), msgspec.json.encode(recs), headers, 0, offset))
        offset += 1
    return msgs


def _state(store: WriteBackStore) -> dict[bytes, bytes]:
    store.flush()
    return {k: store.db[k] for k in store.db.keys()}


@pytest.mark.parametrize("topic", ["ev.dynamics.v1", "ev.state.v1"])
def test_whole_messages_give_the_per_record_outputs_and_state(tmp_path, topic):
    rng = random.Random(20261203)
    settings = WorkerSettings(home=tmp_path, lateness_ms=LATENESS_MS)
    fast_store = WriteBackStore.open(tmp_path / "fast", bloom=True)
    slow_store = WriteBackStore.open(tmp_path / "slow", bloom=True)
    fast = Gate(settings, dedupe_store=fast_store, clock=lambda: NOW_MS / 1000)
    slow = Gate(settings, dedupe_store=slow_store, clock=lambda: NOW_MS / 1000)
    earlier: list[tuple] = []
    ids: list[str] = []
    passed = refused = 0
    for i in range(150):
        msgs = _take(rng, topic, 1_000 * i, earlier, ids)
        earlier += msgs
        # how many of the take go the whole-message way (on a throwaway copy of the state)
        probe = Gate(settings, dedupe_store=_state(fast_store), clock=lambda: NOW_MS / 1000)
        decided = probe.check_arrays(topic, msgs, 1_000, whole=True)
        passed += sum(type(v) is Passed for v in decided.values())
        got = gate_batch(fast, topic, msgs)
        want = gate_batch(slow, topic, msgs, whole=False)
        assert got == want, f"take {i}"
        refused += sum(o.topic == "voltrisk.dlq.v1" for o in want)
        assert _state(fast_store) == _state(slow_store), f"take {i}"
    # both ways were taken often: the comparison is not of one path with itself
    assert passed > 100 and refused > 100, (passed, refused)


def test_a_key_deleted_before_the_flush_is_not_held(tmp_path):
    store = WriteBackStore.open(tmp_path / "s")
    store[b"a"], store[b"b"] = b"1", b"2"
    store.flush()
    assert store.holds_any([b"x", b"a"]) and not store.holds_any([b"x", b"y"])
    del store[b"a"]
    assert not store.holds_any([b"a"]) and store.holds_any([b"a", b"b"])
    store.flush()
    assert not store.holds_any([b"a"]) and store.get(b"b") == b"2"
    store.close()


def test_a_failure_of_the_whole_message_way_leaves_the_message_to_the_per_record_way(tmp_path, monkeypatch):
    """A bug in the whole-message checks must not stop the worker or lose the message."""
    from stream.gate import _TopicGate

    rng = random.Random(5)
    settings = WorkerSettings(home=tmp_path, lateness_ms=LATENESS_MS)
    msgs = _take(rng, "ev.dynamics.v1", 0, [], [])
    want = gate_batch(Gate(settings, clock=lambda: NOW_MS / 1000), "ev.dynamics.v1", msgs, whole=False)

    def broken(self, *args, **kwargs):
        raise RuntimeError("a bug")

    monkeypatch.setattr(_TopicGate, "pass_array", broken)
    assert gate_batch(Gate(settings, clock=lambda: NOW_MS / 1000), "ev.dynamics.v1", msgs) == want
    assert any(o.topic == "clean.ev.dynamics.v1" for o in want)
