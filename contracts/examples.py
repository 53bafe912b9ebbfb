"""One valid example message per topic, as typed records.

The AsyncAPI examples, the samples in docs/integration.md and the gate's "good
record" tests all come from here, and a test runs every raw example through the
gate, so a published example can never be one the gate refuses.
"""

from __future__ import annotations

from dataclasses import dataclass

from stream import records as r

# An obviously fictitious VIN (WMI "LDM", check digit position left as 0)
EXAMPLE_VIN = "LDMTEST0000000001"
EXAMPLE_THIRD_PARTY_VIN = "LDMTEST0000000002"
# 2025-11-24 08:30:00 UTC, a Monday morning commute in Shanghai
EXAMPLE_TS_MS = 1_763_973_000_000


@dataclass(frozen=True)
class Example:
    key: str
    headers: dict[str, str]
    record: r.msgspec.Struct


def raw_headers(coord_sys: str | None = "WGS84") -> dict[str, str]:
    """The headers a carmaker sets on every raw message."""
    headers = {"schema_version": "1", "source_protocol": "oem-json", "consent_scope": "pricing,fraud"}
    if coord_sys is not None:
        headers["coord_sys"] = coord_sys
    return headers


def _claims_headers() -> dict[str, str]:
    return {"schema_version": "1", "source_protocol": "claims-json", "consent_scope": "pricing,fraud"}


RAW_EXAMPLES: dict[str, Example] = {
    "ev.state.v1": Example(EXAMPLE_VIN, {**raw_headers(), "source_protocol": "gbt32960-2025"}, r.StateV1(
        event_id="st-000001", ts_ms=EXAMPLE_TS_MS, vehicle_status="started", charging_state="not_charging",
        speed_kmh=42.5, odometer_km=18_234.7, pack_voltage_v=402.1, pack_current_a=35.2, soc_pct=71.0, gear="D",
        insulation_resistance_kohm=5_200.0, lat=31.2304, lon=121.4737, cell_voltage_max_v=3.712,
        cell_voltage_min_v=3.694, cell_temp_max_c=31.0, cell_temp_min_c=28.0, alarm_level=0, alarm_flags=0,
    )),
    "ev.dynamics.v1": Example(EXAMPLE_VIN, raw_headers(), r.DynamicsV1(
        event_id="dy-000001", ts_ms=EXAMPLE_TS_MS, speed_kmh=42.5, accel_long_mps2=-1.2, accel_lat_mps2=0.4,
        yaw_rate_dps=2.5, heading_deg=87.0, motor_power_kw=-12.0, adas_state="active", fcw=False, headway_s=2.1,
        seatbelt_driver=True, lat=31.2304, lon=121.4737,
    )),
    "ev.alarm.v1": Example(EXAMPLE_VIN, raw_headers(), r.AlarmV1(
        event_id="al-000001", ts_ms=EXAMPLE_TS_MS, alarm_code="battery_high_temp", alarm_level=2, active=True,
        cell_temp_max_c=58.0, lat=31.2304, lon=121.4737,
    )),
    "ev.crash.v1": Example(EXAMPLE_VIN, raw_headers(), r.CrashV1(
        event_id="cr-000001", ts_ms=EXAMPLE_TS_MS, peak_accel_g=9.5, delta_v_kmh=18.0, principal_direction_deg=0.0,
        airbag_deployed=False, speed_before_kmh=38.0, pre_speed_kmh=[41.0, 40.0, 38.0], post_speed_kmh=[12.0, 0.0],
        lat=31.2304, lon=121.4737,
    )),
    "claims.fnol.v1": Example("CLM-2025-000123", _claims_headers(), r.FnolV1(
        event_id="fnol-000123", ts_ms=EXAMPLE_TS_MS + 3_600_000, claim_id="CLM-2025-000123", policy_id="POL-88412",
        loss_ts_ms=EXAMPLE_TS_MS, lat=31.2304, lon=121.4737, amount_eur=3_850.0,
        parties=[
            r.Party(role="insured", name="Li Wei", phone="+86 138 0000 0000", vehicle_id=EXAMPLE_VIN, plate="沪A·D12345"),
            r.Party(role="third_party", name="Zhang Min", vehicle_id=EXAMPLE_THIRD_PARTY_VIN),
        ],
        garage="Pudong Auto Repair", tow_company=None, lawyer=None, clinic=None,
        description="Rear-ended at a red light on Century Avenue.",
    )),
}

DECISION_EXAMPLE = r.DecisionV1(
    event_id="dec-000001", ts_ms=EXAMPLE_TS_MS + 86_400_000, alert_id="alert-000042", status="investigating",
    investigator="siu-analyst-7", note="Shared phone number with two earlier claims.",
)
