"""Whatever arrives, the gate answers Accepted or Rejected and never raises."""

from __future__ import annotations

import re

import msgspec
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from contracts.examples import EXAMPLE_TS_MS, RAW_EXAMPLES
from stream.gate import Accepted, Gate, Rejected, dlq_message
from voltrisk.settings import WorkerSettings

TOPICS = [*RAW_EXAMPLES, "clean.ev.dynamics.v1", "", "ev.unknown.v1"]
GATE = Gate(WorkerSettings(), clock=lambda: EXAMPLE_TS_MS / 1000 + 7200)

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=6),
    max_leaves=20,
)
header_names = st.sampled_from(["schema_version", "source_protocol", "coord_sys", "consent_scope", "x"]) | st.text(max_size=8)
header_values = st.sampled_from([b"1", b"2", b"WGS84", b"GCJ02", b"pricing", b"oem-json", b"", b"\xff"]) | st.binary(max_size=12)
headers = st.lists(st.tuples(header_names, header_values), max_size=6)
keys = st.none() | st.binary(max_size=24) | st.sampled_from([b"LDMTEST0000000001", b"CLM-2025-000123"])


def _mutated_example(draw_field, draw_value, topic):
    record = msgspec.to_builtins(RAW_EXAMPLES[topic].record)
    record[draw_field if draw_field in record else next(iter(record))] = draw_value
    return msgspec.json.encode(record)


def _check(topic, key, value, hdrs):
    verdict = GATE.check(topic, key, value, hdrs, 0, 0)
    assert isinstance(verdict, (Accepted, Rejected))
    if isinstance(verdict, Accepted):  # what passes is a valid record under a pseudonymous key
        assert msgspec.json.decode(verdict.value, type=type(verdict.record)) == verdict.record
        assert topic == "claims.fnol.v1" or re.fullmatch(rb"v1-[0-9a-f]{32}", verdict.key)
    else:
        assert verdict.reason != "internal_error", verdict.message
        dlq_key, dlq_value, dlq_headers = dlq_message(verdict, topic, 0, 0, key, value, hdrs)
        assert isinstance(dlq_value, bytes) and all(isinstance(v, bytes) for _, v in dlq_headers)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(TOPICS), keys, st.none() | st.binary(max_size=200), headers)
def test_arbitrary_bytes_never_raise(topic, key, value, hdrs):
    _check(topic, key, value, hdrs)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(list(RAW_EXAMPLES)), keys, json_values, headers)
def test_arbitrary_json_never_raises(topic, key, doc, hdrs):
    _check(topic, key, msgspec.json.encode(doc), hdrs)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(list(RAW_EXAMPLES)), st.text(max_size=30), json_values)
def test_near_valid_records_never_raise(topic, field, new_value):
    """Valid key and headers, one field of a valid record replaced by anything."""
    ex = RAW_EXAMPLES[topic]
    _check(topic, ex.key.encode(), _mutated_example(field, new_value, topic),
           [(k, v.encode()) for k, v in ex.headers.items()])
