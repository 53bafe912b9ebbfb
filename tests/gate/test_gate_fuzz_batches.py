"""Structured fuzzing of the worker's gate step over whole batches: mixes of good
records, mutated ones, duplicates, garbage and batch arrays (the one-pass path and
the per-record path), under good and broken keys and headers. Whatever arrives,
every record leaves exactly once — clean or dead-lettered with a known reason — and
no raw VIN leaves the gate (``stream.fuzzing.account``)."""

from __future__ import annotations

import msgspec
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from contracts.examples import EXAMPLE_TS_MS, RAW_EXAMPLES
from stream.fuzzing import account
from stream.gate import Gate
from voltrisk.settings import WorkerSettings

TELEMETRY = [t for t in RAW_EXAMPLES if t.startswith("ev.")]
VINS = [b"LFZTEST%010d" % i for i in range(3)]

json_scalars = (st.none() | st.booleans() | st.integers(min_value=-2**70, max_value=2**70)
                | st.floats(allow_nan=False) | st.text(max_size=12))


@st.composite
def records(draw, topic: str):
    """One record's JSON bytes: the example with a fresh id and time, maybe mutated."""
    rec = msgspec.to_builtins(RAW_EXAMPLES[topic].record)
    rec["event_id"] = f"fz-{draw(st.integers(0, 40))}"  # small id space: duplicates happen
    rec["ts_ms"] = EXAMPLE_TS_MS + draw(st.integers(-10 * 86_400_000, 86_400_000))
    kind = draw(st.sampled_from(["good", "good", "field", "drop", "extra", "vin", "garbage", "nan"]))
    if kind == "field":
        rec[draw(st.sampled_from(sorted(rec)))] = draw(json_scalars)
    elif kind == "drop":
        rec.pop(draw(st.sampled_from(sorted(rec))))
    elif kind == "extra":
        rec[draw(st.text(min_size=1, max_size=8))] = draw(json_scalars)
    elif kind == "vin":
        rec["event_id"] = "x-" + draw(st.sampled_from(VINS)).decode()
    elif kind == "garbage":
        return draw(st.sampled_from([b"5", b'"x"', b"null", b"[]", b"{}"]))
    out = msgspec.json.encode(rec)
    if kind == "nan":
        out = out.replace(b'"ts_ms":', b'"ts_ms":NaN,"_":', 1)
    return out


@st.composite
def messages(draw, topic: str):
    n = draw(st.integers(1, 6))
    recs = [draw(records(topic)) for _ in range(n)]
    shape = draw(st.sampled_from(["array", "array", "single", "bytes", "truncated"]))
    if shape == "array":
        value = b"[" + b",".join(recs) + b"]"
    elif shape == "single":
        value = recs[0]
    elif shape == "bytes":
        value = draw(st.binary(max_size=80))
    else:
        value = (b"[" + b",".join(recs) + b"]")[: draw(st.integers(1, 60))]
    key = draw(st.sampled_from(VINS) | st.none() | st.binary(max_size=20))
    headers = [(k, v.encode()) for k, v in RAW_EXAMPLES[topic].headers.items()]
    if draw(st.booleans()):
        i = draw(st.integers(0, len(headers) - 1))
        headers[i] = (headers[i][0], draw(st.binary(max_size=10)))
    return key, value, headers


@settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(st.data())
def test_every_record_of_a_fuzzed_batch_leaves_exactly_once(data):
    topic = data.draw(st.sampled_from(TELEMETRY))
    msgs = [(*data.draw(messages(topic)), 0, offset) for offset in range(data.draw(st.integers(1, 8)))]
    gate = Gate(WorkerSettings(), clock=lambda: EXAMPLE_TS_MS / 1000 + 3600)
    account(gate, topic, msgs, VINS)
    # the same batch again at the same offsets is a replay: still every record accounted for
    account(gate, topic, msgs, VINS)


def test_an_oversized_batch_is_refused_whole_and_accounted_for():
    topic = "ev.dynamics.v1"
    ex = RAW_EXAMPLES[topic]
    recs = [msgspec.json.encode(msgspec.structs.replace(ex.record, event_id=f"big-{i}")) for i in range(1_001)]
    msg = (VINS[0], b"[" + b",".join(recs) + b"]", [(k, v.encode()) for k, v in ex.headers.items()], 0, 0)
    counts = account(Gate(WorkerSettings(max_payload_bytes=1 << 20), clock=lambda: EXAMPLE_TS_MS / 1000), topic, [msg], VINS)
    assert counts == {"payload_too_large": 1}


def test_another_vehicles_vin_in_an_event_id_is_dead_lettered():
    """Found by the fuzzer: only the sending vehicle's own VIN was looked for in event_id."""
    topic = "ev.state.v1"
    ex = RAW_EXAMPLES[topic]
    rec = msgspec.json.encode(msgspec.structs.replace(ex.record, event_id="x-" + VINS[0].decode()))
    msg = (VINS[1], b"[" + rec + b"]", [(k, v.encode()) for k, v in ex.headers.items()], 0, 0)
    counts = account(Gate(WorkerSettings(), clock=lambda: EXAMPLE_TS_MS / 1000), topic, [msg], VINS)
    assert counts == {"vin_in_value": 1}
