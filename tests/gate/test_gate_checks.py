"""The ingest gate, pure: every bad input gets exactly one reason, good records
of every topic pass, VINs never leave the gate, ordering state is bounded."""

from __future__ import annotations

import msgspec
import pytest
from pydantic import SecretStr

from contracts.examples import EXAMPLE_TS_MS, EXAMPLE_VIN, RAW_EXAMPLES
from gate_corpus import CASES, DYN, FNOL, LATENESS_MS, header_list, value_dict, vin_for
from stream import records
from stream.gate import REASONS, Accepted, Gate, Rejected, dlq_message
from stream.geo import haversine_m, wgs84_to_gcj02
from voltrisk.settings import WorkerSettings

CLOCK_S = (EXAMPLE_TS_MS + 2 * 3_600_000) / 1000


def make_gate(**settings) -> Gate:
    return Gate(WorkerSettings(**settings), clock=lambda: CLOCK_S)


def run(gate: Gate, topic: str, msgs) -> list:
    return gate.check_batch(topic, [(m.key, m.value, m.headers, 0, i) for i, m in enumerate(msgs)])


def example_msg(topic: str):
    ex = RAW_EXAMPLES[topic]
    return ex.key.encode(), msgspec.json.encode(ex.record), [(k, v.encode()) for k, v in ex.headers.items()]


def test_corpus_has_at_least_30_kinds_and_every_reason_is_documented():
    assert len(CASES) >= 30
    assert len({c.id for c in CASES}) == len(CASES)
    assert {c.reason for c in CASES} <= set(REASONS)


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input_gets_exactly_one_rejection_with_its_reason(case):
    verdicts = run(make_gate(), case.topic, case.messages)
    rejected = [v for v in verdicts if isinstance(v, Rejected)]
    assert [r.reason for r in rejected] == [case.reason], [r.message for r in rejected]
    assert isinstance(verdicts[-1], Rejected)
    assert rejected[0].error_class == REASONS[case.reason].error_class
    # the message names the input and says what to do
    if case.reason != "unknown_topic":
        assert rejected[0].message.startswith(f"{case.topic} partition 0 offset {len(case.messages) - 1}: ")
    assert REASONS[case.reason].fix in rejected[0].message


def test_whole_corpus_through_one_gate_rejects_each_case_once():
    """As the worker sees it: all cases interleaved through one gate and store."""
    gate = make_gate()
    reasons = []
    for case in CASES:
        reasons += [v.reason for v in run(gate, case.topic, case.messages) if isinstance(v, Rejected)]
    assert reasons == [c.reason for c in CASES]


@pytest.mark.parametrize("topic", list(RAW_EXAMPLES))
def test_good_record_of_every_topic_is_accepted_unchanged_but_for_the_key(topic):
    key, value, headers = example_msg(topic)
    verdict = make_gate().check(topic, key, value, headers, 0, 0)
    assert isinstance(verdict, Accepted), getattr(verdict, "message", "")
    assert verdict.topic == f"clean.{topic}"
    assert dict(verdict.headers) == {
        "schema_version": b"1",
        "source_protocol": RAW_EXAMPLES[topic].headers["source_protocol"].encode(),
        "consent_scope": b"pricing,fraud",
        "key_version": b"1",
        "ingest_ts_ms": str(int(CLOCK_S * 1000)).encode(),
    }
    decoded = msgspec.json.decode(verdict.value, type=type(RAW_EXAMPLES[topic].record))
    assert decoded == verdict.record
    if topic == FNOL:
        assert verdict.key == key
        assert [p.vehicle_id[:3] for p in decoded.parties] == ["v1-", "v1-"]
        assert msgspec.structs.replace(decoded, parties=RAW_EXAMPLES[topic].record.parties) == RAW_EXAMPLES[topic].record
    else:
        assert verdict.key.startswith(b"v1-") and len(verdict.key) == 35
        assert decoded == RAW_EXAMPLES[topic].record


def test_vin_is_normalised_before_pseudonymising():
    gate = make_gate()
    _, value, headers = example_msg(DYN)
    first = gate.check(DYN, f"  {EXAMPLE_VIN.lower()} ".encode(), value, headers, 0, 0)
    other = value_dict(DYN, "dy-000002")
    second = gate.check(DYN, EXAMPLE_VIN.encode(), msgspec.json.encode(other), headers, 0, 1)
    assert isinstance(first, Accepted) and isinstance(second, Accepted)
    assert first.key == second.key


def test_pseudonym_is_stable_keyed_and_versioned():
    _, value, headers = example_msg(DYN)

    def key_for(**settings) -> bytes:
        return make_gate(**settings).check(DYN, EXAMPLE_VIN.encode(), value, headers, 0, 0).key

    base = key_for(pseudonym_key=SecretStr("key-a"))
    assert base == key_for(pseudonym_key=SecretStr("key-a"))
    assert base != key_for(pseudonym_key=SecretStr("key-b"))
    rotated = key_for(pseudonym_key=SecretStr("key-b"), pseudonym_key_version=2)
    assert base.startswith(b"v1-") and rotated.startswith(b"v2-")
    assert len({key_for(pseudonym_key=SecretStr("key-a"))} | {base}) == 1


def _all_bytes(key, value, headers) -> bytes:
    return b"\n".join([key or b"", value or b"", *(n.encode() + b"=" + v for n, v in headers)])


def test_no_raw_vin_in_any_accepted_or_dead_letter_output():
    gate = make_gate()
    vins = {EXAMPLE_VIN, "LDMTEST0000000002", "LDMXYZ12345678901", *(vin_for(i) for i in range(len(CASES)))}
    outputs = []
    for topic in RAW_EXAMPLES:
        key, value, headers = example_msg(topic)
        verdict = gate.check(topic, key, value, headers, 0, 0)
        outputs.append(_all_bytes(verdict.key, verdict.value, verdict.headers))
    for case in CASES:
        for offset, (msg, verdict) in enumerate(zip(case.messages, run(gate, case.topic, case.messages))):
            if isinstance(verdict, Accepted):
                outputs.append(_all_bytes(verdict.key, verdict.value, verdict.headers))
            else:
                outputs.append(_all_bytes(*dlq_message(verdict, case.topic, 0, offset, msg.key, msg.value, msg.headers)))
    blob = b"\n".join(outputs).upper()
    leaked = sorted(v for v in vins if v.encode() in blob)
    assert leaked == []


def test_dead_letter_message_names_source_and_keeps_the_bytes():
    gate = make_gate()
    key, _, headers = example_msg(DYN)
    value = msgspec.json.encode(value_dict(DYN, "dlq-1", speed_kmh=425.0))
    verdict = gate.check(DYN, key, value, headers, 7, 1234)
    dkey, dvalue, dheaders = dlq_message(verdict, DYN, 7, 1234, key, value, headers)
    h = dict(dheaders)
    assert dvalue == value
    assert dkey == gate.check(DYN, key, msgspec.json.encode(value_dict(DYN, "dlq-2")), headers, 7, 1235).key
    assert h["source_topic"] == DYN.encode() and h["source_partition"] == b"7" and h["source_offset"] == b"1234"
    assert h["reason"] == b"out_of_range" and h["error_class"] == b"validation"
    assert h["message"].startswith(b"ev.dynamics.v1 partition 7 offset 1234: speed_kmh must be <= 250.0 km/h")
    assert h["source_header.coord_sys"] == b"WGS84"


def test_dead_letter_value_of_an_oversize_payload_is_cut_to_the_limit():
    big = next(c for c in CASES if c.id == "payload_10mb").messages[-1]
    verdict = make_gate().check(DYN, big.key, big.value, big.headers, 0, 0)
    _, dvalue, dheaders = dlq_message(verdict, DYN, 0, 0, big.key, big.value, big.headers, max_value_bytes=65_536)
    assert len(dvalue) == 65_536 and big.value.startswith(dvalue)
    assert dict(dheaders)["source_value_bytes"] == str(len(big.value)).encode()


def test_gcj02_positions_are_converted_to_wgs84_within_half_a_metre():
    gate = make_gate()
    wgs = (31.2304, 121.4737)
    gcj = wgs84_to_gcj02(*wgs)
    assert haversine_m(*gcj, *wgs) > 400  # the offset is real in Shanghai
    value = msgspec.json.encode(value_dict(DYN, "gcj-1", lat=gcj[0], lon=gcj[1]))
    verdict = gate.check(DYN, EXAMPLE_VIN.encode(), value, header_list(DYN, coord_sys="GCJ02"), 0, 0)
    assert isinstance(verdict, Accepted)
    assert haversine_m(verdict.record.lat, verdict.record.lon, *wgs) < 0.5
    out = msgspec.json.decode(verdict.value)
    assert (out["lat"], out["lon"]) == (verdict.record.lat, verdict.record.lon)


def test_claims_in_gcj02_are_converted_too():
    wgs = (31.2304, 121.4737)
    gcj = wgs84_to_gcj02(*wgs)
    value = msgspec.json.encode(value_dict(FNOL, "CLM-gcj", lat=gcj[0], lon=gcj[1]))
    verdict = make_gate().check(FNOL, b"CLM-gcj", value, header_list(FNOL, coord_sys="GCJ02"), 0, 0)
    assert isinstance(verdict.record, records.FnolV1)
    assert haversine_m(verdict.record.lat, verdict.record.lon, *wgs) < 0.5


def test_out_of_order_within_lateness_is_accepted_and_later_is_late():
    gate = make_gate()
    key, _, headers = example_msg(DYN)
    newest = EXAMPLE_TS_MS

    def send(event_id: str, ts_ms: int):
        value = msgspec.json.encode(value_dict(DYN, event_id, ts_ms=ts_ms))
        return gate.check(DYN, key, value, headers, 0, 0)

    assert isinstance(send("a", newest), Accepted)
    assert isinstance(send("b", newest - LATENESS_MS), Accepted)  # exactly at the limit
    assert send("c", newest - LATENESS_MS - 1).reason == "late"
    assert isinstance(send("d", newest - 1000), Accepted)
    # another vehicle has its own watermark
    other = msgspec.json.encode(value_dict(DYN, "e", ts_ms=newest - LATENESS_MS - 1))
    assert isinstance(gate.check(DYN, vin_for(999).encode(), other, headers, 0, 0), Accepted)


def test_event_ids_are_scoped_per_vehicle_and_topic():
    gate = make_gate()
    headers = header_list(DYN)
    value = msgspec.json.encode(value_dict(DYN, "seq-1"))
    assert isinstance(gate.check(DYN, vin_for(1).encode(), value, headers, 0, 0), Accepted)
    assert isinstance(gate.check(DYN, vin_for(2).encode(), value, headers, 0, 1), Accepted)
    alarm = msgspec.json.encode(value_dict("ev.alarm.v1", "seq-1"))
    assert isinstance(gate.check("ev.alarm.v1", vin_for(1).encode(), alarm, header_list("ev.alarm.v1"), 0, 2), Accepted)
    assert gate.check(DYN, vin_for(1).encode(), value, headers, 0, 3).reason == "duplicate"


def test_rejected_records_do_not_move_the_watermark():
    gate = make_gate()
    headers = header_list(DYN)
    bad = msgspec.json.encode(value_dict(DYN, "bad", ts_ms=EXAMPLE_TS_MS + 3_600_000, speed_kmh=999.0))
    assert gate.check(DYN, EXAMPLE_VIN.encode(), bad, headers, 0, 0).reason == "out_of_range"
    old = msgspec.json.encode(value_dict(DYN, "old", ts_ms=EXAMPLE_TS_MS - 3_600_000))
    assert isinstance(gate.check(DYN, EXAMPLE_VIN.encode(), old, headers, 0, 1), Accepted)


def test_store_keeps_only_event_ids_within_the_lateness_horizon():
    store: dict[bytes, bytes] = {}
    gate = Gate(WorkerSettings(lateness_ms=60_000), dedupe_store=store, clock=lambda: 4_000_000_000.0)
    headers = header_list(DYN)
    vehicles = [vin_for(i).encode() for i in range(5)]
    # 5 vehicles at 10 Hz for 10 minutes of event time, in 1-second batches
    for second in range(600):
        ts = EXAMPLE_TS_MS + second * 1000
        for key in vehicles:
            batch = [(key, msgspec.json.encode(value_dict(DYN, f"{second}-{n}", ts_ms=ts + n * 100)), headers, 0, 0)
                     for n in range(10)]
            assert all(isinstance(v, Accepted) for v in gate.check_batch(DYN, batch))
    event_keys = sum(1 for k in store if k[:1] == b"e")
    # at most two horizons (60 s swept every 60 s) of 10 Hz x 5 vehicles, plus one batch each
    assert event_keys <= 2 * 60 * 10 * 5 + 50
    assert event_keys >= 60 * 10 * 5
    assert sum(1 for k in store if k[:1] == b"w") == 5


def test_gate_refuses_an_unknown_purpose():
    with pytest.raises(ValueError, match="purpose 'marketing'"):
        Gate(WorkerSettings(), purpose="marketing")


def test_consent_is_checked_against_the_gate_purpose():
    key, value, _ = example_msg(DYN)
    headers = header_list(DYN, consent_scope="fraud,research")
    assert make_gate().check(DYN, key, value, headers, 0, 0).reason == "no_consent"
    research = Gate(WorkerSettings(), purpose="research", clock=lambda: CLOCK_S)
    assert isinstance(research.check(DYN, key, value, headers, 0, 0), Accepted)


def test_unknown_headers_are_ignored_and_header_values_are_normalised():
    key, value, _ = example_msg(DYN)
    headers = [*header_list(DYN, coord_sys="wgs84", consent_scope=" Pricing , fraud", source_protocol="OEM-JSON"),
               ("traceparent", b"00-abc-01")]
    verdict = make_gate().check(DYN, key, value, headers, 0, 0)
    assert isinstance(verdict, Accepted)
    assert dict(verdict.headers)["consent_scope"] == b"pricing,fraud"
    assert dict(verdict.headers)["source_protocol"] == b"oem-json"


def test_headers_are_judged_by_the_gate_headers_whatever_else_changes_per_message():
    """The parse is cached by the gate's own headers, since a producer's header (here a
    send timestamp) may change on every message: each message still gets the verdict
    of its gate headers, and a malformed header list is still refused."""
    key, _, _ = example_msg(DYN)

    def msg(i, headers):
        value = msgspec.json.encode(value_dict(DYN, f"hc-{i}", ts_ms=EXAMPLE_TS_MS + i))
        return key, value, [*headers, ("sent_ts_ms", str(1_000 + i).encode())], 0, i

    msgs = [msg(i, header_list(DYN, consent_scope="fraud" if i % 3 == 2 else "pricing")) for i in range(6)]
    msgs.append(msg(6, [*header_list(DYN), ("broken",)]))
    msgs.append(msg(7, [(name.encode(), v) for name, v in header_list(DYN)]))
    verdicts = make_gate().check_batch(DYN, msgs)
    assert [getattr(v, "reason", None) for v in verdicts] == [None, None, "no_consent", None, None, "no_consent",
                                                              "bad_header", None]


def _rdict(path):
    from rocksdict import Options, Rdict

    return Rdict(str(path), options=Options(raw_mode=True))


def _write_back(path):
    from stream.kvstore import WriteBackStore

    return WriteBackStore.open(path)


def _write_back_bloom(path):
    from stream.kvstore import WriteBackStore

    return WriteBackStore.open(path, bloom=True)  # as the worker opens the gate's store


@pytest.mark.parametrize("open_store", [_rdict, _write_back, _write_back_bloom], ids=["rocksdb", "write-back", "bloom"])
def test_dedupe_state_survives_a_restart_in_rocksdb(tmp_path, open_store):
    """The worker's store: a resend after a restart is still a duplicate, a late
    event still late, and the sweep works on RocksDB as on a dict."""
    key, value, headers = example_msg(DYN)
    late = msgspec.json.encode(value_dict(DYN, "late-1", ts_ms=EXAMPLE_TS_MS - LATENESS_MS - 1))
    store = open_store(tmp_path / "dedupe")
    assert isinstance(Gate(WorkerSettings(), dedupe_store=store, clock=lambda: CLOCK_S).check(DYN, key, value, headers, 0, 0),
                      Accepted)
    store.close()
    store = open_store(tmp_path / "dedupe")
    gate = Gate(WorkerSettings(), dedupe_store=store, clock=lambda: CLOCK_S + 86_400)
    assert gate.check(DYN, key, value, headers, 0, 1).reason == "duplicate"
    assert gate.check(DYN, key, late, headers, 0, 2).reason == "late"
    newer = msgspec.json.encode(value_dict(DYN, "newer-1", ts_ms=EXAMPLE_TS_MS + LATENESS_MS + 1))
    assert isinstance(gate.check(DYN, key, newer, headers, 0, 3), Accepted)
    assert gate.sweep() == 1  # the first event is now beyond the horizon
    assert sorted(k[:1] for k in store.keys()) == [b"e", b"w"]
    store.close()


def test_the_sweep_forgets_expired_ids_a_slice_per_batch_never_the_whole_store_at_once(tmp_path):
    """At scale the store holds hours of event ids: a batch that moves event time past
    the sweep interval starts a sweep but looks at a slice of the store only (two keys
    per record, at least 1,000); the following batches go on until every expired id is
    forgotten, and ids within the lateness stay (a re-send of them is still a duplicate)."""
    from stream.kvstore import WriteBackStore

    key, _, headers = example_msg(DYN)
    store = WriteBackStore.open(tmp_path / "dedupe", bloom=True)
    gate = Gate(WorkerSettings(lateness_ms=60_000), dedupe_store=store, clock=lambda: CLOCK_S)
    old_ts = EXAMPLE_TS_MS - 3 * 3_600_000

    def batch(ids: list[str], ts: list[int], first_offset: int) -> list:
        return gate.check_batch(DYN, [(key, msgspec.json.encode(value_dict(DYN, i, ts_ms=t)), headers, 0, first_offset + n)
                                      for n, (i, t) in enumerate(zip(ids, ts))])

    for b in range(30):  # 3,000 ids, three hours before the rest
        ids = [f"old-{b}-{n}" for n in range(100)]
        assert all(isinstance(v, Accepted) for v in batch(ids, [old_ts + b * 100 + n for n in range(100)], b * 100))

    def held(prefix: str) -> int:
        return sum(1 for k in store.keys() if k[:1] == b"e" and prefix.encode() in k)

    assert held("old-") == 3_000
    offset = 3_000
    new_ids: list[str] = []
    forgotten_after: list[int] = []
    for b in range(5):  # batches of 10 records three hours later: each moves the sweep on by 1,000 keys
        ids = [f"new-{b}-{n}" for n in range(10)]
        new_ids += ids
        assert all(isinstance(v, Accepted) for v in batch(ids, [EXAMPLE_TS_MS + b * 10 + n for n in range(10)], offset))
        offset += 10
        forgotten_after.append(3_000 - held("old-"))
    # each batch's slice: 1,000 keys (the new ids among them, which stay), so no batch forgot them all
    assert 900 <= forgotten_after[0] <= 1_000 and forgotten_after[1] <= 2_000
    assert forgotten_after == sorted(forgotten_after) and forgotten_after[-1] == 3_000
    assert held("new-") == 50
    resend = batch([new_ids[0]], [EXAMPLE_TS_MS], offset)
    assert isinstance(resend[0], Rejected) and resend[0].reason == "duplicate"
    store.close()


def test_an_id_read_but_not_committed_outlives_the_sweep_so_its_replay_passes(tmp_path):
    """A record accepted in a batch whose outputs fail to reach Kafka is read again; if a
    later batch in flight moved its vehicle's newest event past the lateness meanwhile,
    the sweep would have forgotten its id and the replay been refused as late. Once the
    worker reports commits, ids at or above the committed offset stay until committed."""
    key, value, headers = example_msg(DYN)
    newer = msgspec.json.encode(value_dict(DYN, "newer-2", ts_ms=EXAMPLE_TS_MS + LATENESS_MS + 1))
    gate = Gate(WorkerSettings(), dedupe_store=_write_back(tmp_path / "dedupe"), clock=lambda: CLOCK_S + 86_400)
    gate.committed(DYN, 0, 5)  # the consumer committed up to offset 5 of partition 0
    assert isinstance(gate.check(DYN, key, value, headers, 0, 7), Accepted)  # read, not committed
    assert isinstance(gate.check(DYN, key, newer, headers, 0, 8), Accepted)  # 6 h and more later, in flight too
    assert gate.sweep() == 0  # neither is committed: both ids stay
    assert isinstance(gate.check(DYN, key, value, headers, 0, 7), Accepted)  # the replay of offset 7 passes
    gate.committed(DYN, 0, 9)
    assert gate.sweep() == 1  # committed: the old id goes
    assert gate.check(DYN, key, value, headers, 0, 10).reason == "late"  # a resend at a new offset is late, as ever
