"""Bad-input corpus for the ingest gate, shared by the unit and broker tests.

Each case is a short sequence of raw messages: every message but the last is a
good one that primes the gate (for duplicates and lateness), the last one must be
refused with ``reason``. Case i uses its own VIN and event ids, so all cases can
run through one gate (one worker) without touching each other; ``build(run)``
salts VINs and event ids so runs against a long-lived broker do not meet either.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import msgspec

from contracts.examples import EXAMPLE_TS_MS, RAW_EXAMPLES, raw_headers

DROP = object()  # a field value meaning "leave the field out"
NULL = object()  # a Kafka key or value that is null
DYN = "ev.dynamics.v1"
STATE = "ev.state.v1"
CRASH = "ev.crash.v1"
ALARM = "ev.alarm.v1"
FNOL = "claims.fnol.v1"
LATENESS_MS = 6 * 3600 * 1000  # WorkerSettings default
FAR_FUTURE_TS_MS = 4_000_000_000_000  # 2096: in the future for any test clock, inside the TsMs bounds


def vin_for(index: int, run: str = "CASE") -> str:
    """A valid, obviously fictitious VIN; ``run`` is 4 VIN characters."""
    return f"LDM{run}{index:010d}"


def value_dict(topic: str, event_id: str, **changes) -> dict:
    """The topic's example record as a dict, with changes (DROP removes a field)."""
    value = msgspec.to_builtins(RAW_EXAMPLES[topic].record)
    value["event_id"] = event_id
    if topic == FNOL:
        value["claim_id"] = changes.pop("claim_id", event_id)
    for name, new in changes.items():
        if new is DROP:
            value.pop(name, None)
        else:
            value[name] = new
    return value


def header_list(topic: str, **changes) -> list[tuple[str, bytes]]:
    """Valid headers for a topic, with changes (DROP removes a header)."""
    base = dict(RAW_EXAMPLES[topic].headers) if topic in RAW_EXAMPLES else raw_headers()
    for name, new in changes.items():
        if new is DROP:
            base.pop(name, None)
        else:
            base[name] = new
    return [(k, v if isinstance(v, bytes) else v.encode()) for k, v in base.items()]


@dataclass
class Msg:
    key: bytes | None
    value: bytes | None
    headers: list[tuple[str, bytes]]


@dataclass
class Case:
    id: str
    reason: str
    topic: str
    messages: list[Msg] = field(default_factory=list)
    broker: bool = True  # False: cannot be produced to a real broker as-is (size limits, no such topic)


def build(run: str = "CASE") -> list[Case]:
    """The corpus; ``run`` (4 characters from A-H, J-N, P, R-Z, 0-9) salts VINs and event ids."""
    cases: list[Case] = []

    def add(case_id: str, reason: str, topic: str = DYN, *, value=None, key=None, headers=None, prime: int = 0,
            broker: bool = True, **changes) -> Case:
        """A case whose last message is ``value`` (bytes, or a dict built from
        changes), keyed by the case's VIN (telemetry) or claim id (claims)."""
        index = len(cases)
        event_id = f"{run}-{case_id}-x"
        if value is None:
            value = msgspec.json.encode(value_dict(topic, event_id, **changes))
        elif value is NULL:
            value = None
        if key is None:
            key = (event_id if topic == FNOL else vin_for(index, run)).encode()
        elif key is NULL:
            key = None
        msgs = [Msg(key, msgspec.json.encode(value_dict(topic, f"{run}-{case_id}-p{i}")), header_list(topic))
                for i in range(prime)]
        case = Case(case_id, reason, topic, [*msgs, Msg(key, value, headers if headers is not None else header_list(topic))],
                    broker)
        cases.append(case)
        return case

    # --- bytes that are not a JSON object -----------------------------------
    add("truncated_json", "malformed_json", value=b'{"event_id": "truncated_json-x", "ts_ms": 17')
    add("plain_text", "malformed_json", value=b"speed=42.5;lat=31.2")
    add("trailing_garbage", "malformed_json",
        value=msgspec.json.encode(value_dict(DYN, "trailing_garbage-x")) + b"}")
    add("non_utf8_bytes", "malformed_json", value=b"\xff\xfe\x00{\x00}")
    add("invalid_utf8_in_string", "malformed_json",
        value=msgspec.json.encode(value_dict(DYN, "invalid_utf8-x")).replace(b'"invalid_utf8-x"', b'"bad\xc3\x28id"'))
    add("empty_value", "empty_value", value=b"")
    add("tombstone", "empty_value", value=NULL)
    # --- non-finite numbers --------------------------------------------------
    good = msgspec.json.encode(value_dict(DYN, "nan_speed-x"))
    add("nan_speed", "non_finite", value=good.replace(b'"speed_kmh":42.5', b'"speed_kmh":NaN'))
    good = msgspec.json.encode(value_dict(DYN, "infinity_accel-x"))
    add("infinity_accel", "non_finite", value=good.replace(b'"accel_long_mps2":-1.2', b'"accel_long_mps2":Infinity'))
    good = msgspec.json.encode(value_dict(DYN, "minus_infinity-x"))
    add("minus_infinity", "non_finite", value=good.replace(b'"accel_lat_mps2":0.4', b'"accel_lat_mps2":-Infinity'))
    good = msgspec.json.encode(value_dict(DYN, "overflow_1e999-x"))
    add("overflow_1e999", "non_finite", value=good.replace(b'"yaw_rate_dps":2.5', b'"yaw_rate_dps":1e999'))
    # --- schema: types, fields, shapes ----------------------------------------
    add("speed_as_string", "schema", speed_kmh="42.5")
    add("bool_for_float", "schema", accel_long_mps2=True)
    add("null_required", "schema", heading_deg=None)
    add("missing_lat", "schema", lat=DROP)
    add("unknown_field", "schema", speed_mph=26.4)
    add("top_level_array", "schema", value=b'[{"speed_kmh": 42.5}]')
    add("top_level_string", "schema", value=b'"LDMTEST0000000001"')
    add("bad_enum", "schema", adas_state="autopilot")
    add("empty_event_id", "schema", value=msgspec.json.encode({**value_dict(DYN, "e"), "event_id": ""}))
    add("long_event_id", "schema", value=msgspec.json.encode({**value_dict(DYN, "e"), "event_id": "x" * 65}))
    add("unknown_alarm_code", "schema", ALARM, alarm_code="tyre_pressure")
    add("crash_window_too_long", "schema", CRASH, pre_speed_kmh=[30.0] * 61)
    # --- physical ranges -------------------------------------------------------
    add("speed_too_high", "out_of_range", speed_kmh=300.0)
    add("speed_negative", "out_of_range", speed_kmh=-5.0)
    add("accel_too_high", "out_of_range", accel_long_mps2=-60.0)
    add("lat_over_90", "out_of_range", lat=91.0)
    add("lon_under_minus_180", "out_of_range", lon=-181.0)
    add("heading_360", "out_of_range", heading_deg=360.0)
    add("ts_in_seconds", "out_of_range", ts_ms=EXAMPLE_TS_MS // 1000)
    add("soc_over_100", "out_of_range", STATE, soc_pct=101.0)
    add("crash_trace_speed", "out_of_range", CRASH, pre_speed_kmh=[40.0, 300.0])
    add("alarm_level_5", "out_of_range", ALARM, alarm_level=5)
    # --- size ---------------------------------------------------------------------
    add("payload_10mb", "payload_too_large", broker=False,
        value=msgspec.json.encode({**value_dict(DYN, "payload_10mb-x"), "pad": "x" * (10 * 1024 * 1024)}))
    add("payload_just_over_limit", "payload_too_large",
        value=msgspec.json.encode({**value_dict(DYN, "payload_over-x"), "pad": "x" * (64 * 1024)}))
    # --- headers ------------------------------------------------------------------
    add("schema_version_2", "unknown_schema_version", headers=header_list(DYN, schema_version="2"))
    add("missing_schema_version", "missing_header", headers=header_list(DYN, schema_version=DROP))
    add("gcj02_without_coord_sys", "missing_header", headers=header_list(DYN, coord_sys=DROP),
        lat=31.2284, lon=121.4781)
    add("no_headers", "missing_header", headers=[])
    add("coord_sys_bd09", "bad_header", headers=header_list(DYN, coord_sys="BD09"))
    add("consent_marketing", "bad_header", headers=header_list(DYN, consent_scope="pricing,marketing"))
    add("non_ascii_header", "bad_header", headers=header_list(DYN, source_protocol="oem-jsön".encode()))
    add("header_twice", "bad_header", headers=[*header_list(DYN), ("coord_sys", b"GCJ02")])
    add("source_protocol_spaces", "bad_header", headers=header_list(DYN, source_protocol="OEM JSON v2"))
    add("consent_research_only", "no_consent", headers=header_list(DYN, consent_scope="research"))
    # --- keys -----------------------------------------------------------------------
    add("null_key", "empty_key", key=NULL)
    add("empty_key", "empty_key", key=b"")
    add("vin_16_chars", "bad_vin", key=b"LDMTEST000000001")
    add("vin_with_letter_o", "bad_vin", key=b"LDMTESTO00000001")
    add("vin_non_ascii", "bad_vin", key="LDMTEST00000000\u00e91".encode())
    add("claim_key_not_utf8", "bad_key", FNOL, key=b"\xffCLM")
    add("claim_key_mismatch", "key_mismatch", FNOL, claim_id="CLM-other")
    # --- claims: nested parties ---------------------------------------------------------
    parties = value_dict(FNOL, "p")["parties"]
    add("party_bad_role", "schema", FNOL, parties=[{**parties[0], "role": "driver"}])
    add("party_missing_name", "schema", FNOL, parties=[{k: v for k, v in parties[0].items() if k != "name"}])
    add("parties_empty", "schema", FNOL, parties=[])
    add("party_bad_vin", "bad_vin", FNOL, parties=[parties[0], {**parties[1], "vehicle_id": "NOT-A-VIN"}])
    add("party_vin_in_description", "vin_in_value", FNOL,
        description=f"Third party {parties[1]['vehicle_id']} reversed into the insured car.")
    add("other_vin_in_description", "vin_in_value", FNOL,
        description="Witness car LDMXYZ12345678901 stopped behind the insured car.")
    add("loss_after_report", "inconsistent", FNOL, loss_ts_ms=EXAMPLE_TS_MS + 86_400_000)
    # --- plausibility and privacy -------------------------------------------------------
    add("cell_min_above_max", "inconsistent", STATE, cell_voltage_min_v=3.9, cell_voltage_max_v=3.7)
    add("future_ts", "future_ts", ts_ms=FAR_FUTURE_TS_MS)
    case = add("vin_in_event_id", "vin_in_value")
    vin = case.messages[-1].key.decode()
    case.messages[-1].value = msgspec.json.encode(value_dict(DYN, f"{vin}-000017"))
    # --- ordering -----------------------------------------------------------------------
    case = add("duplicate", "duplicate", prime=1)
    case.messages[-1].value = case.messages[0].value
    add("late", "late", prime=1, ts_ms=EXAMPLE_TS_MS - LATENESS_MS - 1)
    # --- routing ------------------------------------------------------------------------
    add("unknown_topic", "unknown_topic", "ev.speed.v1", broker=False,
        value=msgspec.json.encode(value_dict(DYN, "unknown_topic-x")), headers=header_list(DYN))
    return cases


CASES = build()
