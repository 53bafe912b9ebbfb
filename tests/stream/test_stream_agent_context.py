"""The worker's gate stage (the handler its raw-topic consumer calls, built by
``make_app``) and the pure ``gate_batch`` it runs: a batch in, clean records and dead
letters out. The consumer itself runs against the broker in test_stream_intake.py."""

from __future__ import annotations

import msgspec
import pytest

from contracts.examples import RAW_EXAMPLES
from stream.agents import make_app
from voltrisk.settings import KafkaClientSettings, WorkerSettings


@pytest.fixture
def app_and_outbox(tmp_path):
    outbox = []

    async def collect(outs):
        outbox.extend(outs)

    app = make_app(WorkerSettings(home=tmp_path, take_within_s=0.05), KafkaClientSettings(), outbox=collect)
    return app, outbox


async def test_the_gate_stage_emits_clean_records_and_dead_letters(app_and_outbox):
    app, outbox = app_and_outbox
    ex = RAW_EXAMPLES["ev.dynamics.v1"]
    headers = [(k, v.encode()) for k, v in ex.headers.items()] + [("sent_ts_ms", b"123")]
    make_intake, make_features_intake = app.own_services
    intake = make_intake()
    assert intake is app.gate_intake and intake.group == f"{WorkerSettings().worker_app_id}-gate"
    assert sorted(intake.topics) == ["claims.fnol.v1", "ev.alarm.v1", "ev.crash.v1", "ev.dynamics.v1", "ev.state.v1"]
    # the features read the clean telemetry and the redrive topic with a consumer (and group) of their own
    features = make_features_intake()
    assert features is app.features_intake and features.group == f"{WorkerSettings().worker_app_id}-features"
    assert sorted(features.topics) == ["clean.ev.alarm.v1", "clean.ev.crash.v1", "clean.ev.dynamics.v1",
                                       "clean.ev.state.v1", "features.redrive.v1"]
    key = ex.key.encode()
    raw = [(key, msgspec.json.encode(msgspec.structs.replace(ex.record, event_id=f"ctx-{i}", ts_ms=ex.record.ts_ms + i * 1000)),
            headers, 0, i) for i in range(3)]
    raw.append((key, b"not json", headers, 0, 3))
    # the same event again at a new offset: a re-send is dead-lettered as a duplicate, not processed twice
    raw.append((key, msgspec.json.encode(msgspec.structs.replace(ex.record, event_id="ctx-0")), headers, 0, 4))
    completion = await intake.handle("ev.dynamics.v1", raw)
    assert not outbox, "the gate hands its outputs to the producer; the completion waits for them"
    await completion
    clean = [o for o in outbox if o.topic == "clean.ev.dynamics.v1"]
    dead = [o for o in outbox if o.topic == "voltrisk.dlq.v1"]
    # one vehicle's records of one batch travel as one message (an array), in order
    decoded = [msgspec.json.decode(o.value) for o in clean]
    assert [r["event_id"] for d in decoded for r in (d if isinstance(d, list) else [d])] == ["ctx-0", "ctx-1", "ctx-2"]
    assert all(o.key.startswith(b"v1-") and key not in o.key + o.value for o in clean)
    assert all(("sent_ts_ms", b"123") in o.headers for o in clean)
    assert sorted(dict(o.headers)["reason"] for o in dead) == [b"duplicate", b"malformed_json"]
    assert app.stats.snapshot()["stages"]["gate"]["messages"] == 5


def test_replay_of_the_same_offset_is_accepted_but_a_resend_is_a_duplicate(tmp_path):
    """After a crash the worker re-reads uncommitted offsets: those records must
    pass again (their first verdict may never have reached Kafka), while the same
    event sent again by the producer (a new offset) is a duplicate."""
    from stream.agents import gate_batch
    from stream.gate import Gate

    ex = RAW_EXAMPLES["ev.dynamics.v1"]
    headers = [(k, v.encode()) for k, v in ex.headers.items()]
    gate = Gate(WorkerSettings(home=tmp_path))
    batch = b"[" + b",".join(
        msgspec.json.encode(msgspec.structs.replace(ex.record, event_id=f"rp-{i}", ts_ms=ex.record.ts_ms + i)) for i in range(3)
    ) + b"]"
    msg = (ex.key.encode(), batch, headers, 4, 1234)
    first = gate_batch(gate, "ev.dynamics.v1", [msg])
    replay = gate_batch(gate, "ev.dynamics.v1", [msg])
    resend = gate_batch(gate, "ev.dynamics.v1", [(ex.key.encode(), batch, headers, 4, 1300)])
    assert [o.topic for o in first] == [o.topic for o in replay] == ["clean.ev.dynamics.v1"]
    assert len(msgspec.json.decode(replay[0].value)) == 3
    assert [dict(o.headers)["reason"] for o in resend] == [b"duplicate"] * 3
    assert [dict(o.headers)["source_index"] for o in resend] == [b"0", b"1", b"2"]


def test_a_vehicles_messages_of_one_batch_leave_as_one_clean_message(tmp_path):
    """Several raw messages of one vehicle in a batch become one clean array (in
    arrival order, earliest sent_ts_ms carried); other vehicles keep their own;
    a lone record stays a JSON object."""
    from stream.agents import gate_batch
    from stream.gate import Gate

    ex = RAW_EXAMPLES["ev.dynamics.v1"]
    other_vin = ex.key[:-1] + ("1" if ex.key[-1] != "1" else "2")
    gate = Gate(WorkerSettings(home=tmp_path))

    def msg(vin, ids, offset, sent):
        value = b"[" + b",".join(msgspec.json.encode(msgspec.structs.replace(
            ex.record, event_id=i, ts_ms=ex.record.ts_ms + offset * 10 + n)) for n, i in enumerate(ids)) + b"]"
        return vin.encode(), value, [(k, v.encode()) for k, v in ex.headers.items()] + [("sent_ts_ms", sent)], 0, offset

    lone = (other_vin.encode(), msgspec.json.encode(msgspec.structs.replace(ex.record, event_id="o-1")),
            [(k, v.encode()) for k, v in ex.headers.items()], 1, 7)
    outs = gate_batch(gate, "ev.dynamics.v1", [msg(ex.key, ["a-1", "a-2"], 1, b"100"), lone, msg(ex.key, ["a-3"], 2, b"200")])
    assert [o.topic for o in outs] == ["clean.ev.dynamics.v1"] * 2
    merged, single = outs
    assert [r["event_id"] for r in msgspec.json.decode(merged.value)] == ["a-1", "a-2", "a-3"]
    assert ("sent_ts_ms", b"100") in merged.headers
    assert msgspec.json.decode(single.value)["event_id"] == "o-1" and merged.key != single.key


def test_the_one_pass_path_for_batches_gives_the_per_record_verdicts(tmp_path):
    """A batch message that decodes whole is judged in one pass; the verdicts, the
    clean values and the dead letters equal those of the per-record path."""
    from stream.agents import explode, gate_batch
    from stream.gate import Accepted, Gate

    ex = RAW_EXAMPLES["ev.dynamics.v1"]
    headers = [(k, v.encode()) for k, v in ex.headers.items()]
    gcj = [(k, b"GCJ02" if k == "coord_sys" else v) for k, v in headers]

    def rec(i, **kw):
        return msgspec.json.encode(msgspec.structs.replace(ex.record, **{"event_id": f"fp-{i}", "ts_ms": ex.record.ts_ms + i, **kw}))

    batch = [rec(0), rec(1, ts_ms=ex.record.ts_ms + 10 * 86_400_000), rec(0), rec(2),
             msgspec.json.encode(msgspec.structs.replace(ex.record, event_id=f"x-{ex.key}", ts_ms=ex.record.ts_ms + 3))]
    msgs = [(ex.key.encode(), b"[" + b",".join(batch) + b"]", headers, 3, 10),
            (ex.key.encode(), b"[" + rec(5) + b"]", gcj, 3, 11)]

    fast_gate = Gate(WorkerSettings(home=tmp_path / "a"), clock=lambda: ex.record.ts_ms / 1000)
    assert sorted(fast_gate.check_arrays("ev.dynamics.v1", msgs, 1000)) == [0, 1]  # both took the one-pass path
    fast_gate = Gate(WorkerSettings(home=tmp_path / "b"), clock=lambda: ex.record.ts_ms / 1000)
    slow_gate = Gate(WorkerSettings(home=tmp_path / "c"), clock=lambda: ex.record.ts_ms / 1000)
    items, _, _ = explode("ev.dynamics.v1", msgs)
    slow = slow_gate.check_batch("ev.dynamics.v1", items)
    fast = [v for vs in fast_gate.check_arrays("ev.dynamics.v1", msgs, 1000).values() for v in vs]
    assert [type(v).__name__ for v in fast] == [type(v).__name__ for v in slow]
    # the repeated fp-0 at the same offset passes here (it reads like a replay); gate_batch refuses it below
    assert [getattr(v, "reason", None) for v in fast] == [None, "future_ts", None, None, "vin_in_value", None]
    assert [getattr(v, "message", None) for v in fast] == [getattr(v, "message", None) for v in slow]
    assert [v.value for v in fast if type(v) is Accepted] == [v.value for v in slow if type(v) is Accepted]

    outs = gate_batch(Gate(WorkerSettings(home=tmp_path / "d"), clock=lambda: ex.record.ts_ms / 1000), "ev.dynamics.v1", msgs)
    dead = [o for o in outs if o.topic == "voltrisk.dlq.v1"]
    assert [(dict(o.headers)["reason"], dict(o.headers)["source_index"]) for o in dead] == [
        (b"future_ts", b"1"), (b"duplicate", b"2"), (b"vin_in_value", b"4")]
    assert ex.key.encode() not in b"".join(o.value + (o.key or b"") for o in outs)  # the VIN is masked in the dead letter
    assert dead[0].value == batch[1]


async def test_the_workers_consumers_let_the_broker_hold_a_fetch_only_briefly(tmp_path):
    """Faust fixes the broker's fetch wait at 1,500 ms, which held live records that long
    between the gate and the features agent; the worker's consumers use the setting."""
    app = make_app(WorkerSettings(home=tmp_path), KafkaClientSettings(kafka_fetch_max_wait_ms=80))
    faust_consumer = app.consumer._thread._create_worker_consumer(app.transport)
    assert faust_consumer._fetch_max_wait_ms == 80
    assert KafkaClientSettings().kafka_fetch_max_wait_ms == 100


def test_the_worker_warms_up_on_the_contract_examples_before_taking_records(tmp_path):
    """First calls (numpy's lazy numpy.ma import among them) are paid at start-up, on
    throwaway in-memory state: every example reaches the features and a score comes out,
    and nothing is written to the worker's home."""
    from collections import Counter

    from contracts.examples import EXAMPLE_VIN
    from stream.agents import warm_up

    rows = warm_up(WorkerSettings(home=tmp_path))
    topics = Counter(topic for topic, _, _ in rows)
    assert topics["scores.ubi.v1"] == 1 and topics["features.vehicle.v1"] == 1 and topics["features.crash.v1"] == 3
    (vehicle,) = {vid for _, vid, _ in rows}
    assert vehicle.startswith("v1-") and EXAMPLE_VIN not in vehicle
    assert list(tmp_path.iterdir()) == []
    app = make_app(WorkerSettings(home=tmp_path / "home", worker_stages="gate,features,scoring"), KafkaClientSettings())
    assert app.warm_up_summary.endswith(f"the contract examples of 5 topics through the gate and the features ({len(rows)} rows)")
