"""Topic records: one frozen msgspec Struct per topic, units in field names.

These types *are* the public contract. JSON Schema and AsyncAPI in ``contracts/``
are generated from them (``voltrisk contracts export``), never written by hand.

Raw topics (``ev.*.v1``, ``claims.fnol.v1``) are produced by carmakers and the
claims system with the raw VIN (or claim id) as the Kafka key. The ingest gate
re-publishes each accepted record, with the same value type, on the matching
``clean.*`` topic keyed by the pseudonymous vehicle id; positions there are
always WGS-84.
"""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec
from msgspec import Meta, Struct

# Shared constrained scalars. Ranges are physical plausibility bounds: anything
# outside them is a sensor or integration fault and is dead-lettered.
EventId = Annotated[str, Meta(min_length=1, max_length=64, description="Producer-assigned unique id, used for de-duplication")]
TsMs = Annotated[
    int,
    Meta(ge=946_684_800_000, le=4_102_444_800_000, description="Event time, Unix epoch milliseconds UTC"),
]
Lat = Annotated[float, Meta(ge=-90.0, le=90.0, description="Latitude in degrees (WGS-84 or GCJ-02 per the coord_sys header)")]
Lon = Annotated[float, Meta(ge=-180.0, le=180.0, description="Longitude in degrees (WGS-84 or GCJ-02 per the coord_sys header)")]
SpeedKmh = Annotated[float, Meta(ge=0.0, le=250.0, description="Vehicle speed, km/h")]
AccelMps2 = Annotated[float, Meta(ge=-50.0, le=50.0)]
Text = Annotated[str, Meta(max_length=200)]

_STRUCT = dict(frozen=True, kw_only=True, forbid_unknown_fields=True)


class StateV1(Struct, **_STRUCT):
    """``ev.state.v1``: vehicle state shaped on GB/T 32960.3 real-time data
    (vehicle data 0x01, position 0x05, extreme values 0x06, alarm 0x07).
    Normal period <= 30 s, 1 s around a level-3 alarm."""

    event_id: EventId
    ts_ms: TsMs
    vehicle_status: Literal["started", "off", "other"]
    charging_state: Literal["parked_charging", "driving_charging", "not_charging", "charge_complete"]
    speed_kmh: SpeedKmh
    odometer_km: Annotated[float, Meta(ge=0.0, le=9_999_999.0)]
    pack_voltage_v: Annotated[float, Meta(ge=0.0, le=1_000.0)]
    pack_current_a: Annotated[float, Meta(ge=-1_000.0, le=1_000.0, description="Positive = discharge")]
    soc_pct: Annotated[float, Meta(ge=0.0, le=100.0)]
    gear: Literal["P", "R", "N", "D"]
    insulation_resistance_kohm: Annotated[float, Meta(ge=0.0, le=60_000.0)]
    lat: Lat
    lon: Lon
    cell_voltage_max_v: Annotated[float, Meta(ge=0.0, le=15.0)]
    cell_voltage_min_v: Annotated[float, Meta(ge=0.0, le=15.0)]
    cell_temp_max_c: Annotated[float, Meta(ge=-40.0, le=210.0)]
    cell_temp_min_c: Annotated[float, Meta(ge=-40.0, le=210.0)]
    alarm_level: Annotated[int, Meta(ge=0, le=4, description="Highest alarm level, 0 = none, 3 = fault requiring stop")]
    alarm_flags: Annotated[int, Meta(ge=0, le=0xFFFF_FFFF, description="GB/T 32960 general alarm bit flags")]


class DynamicsV1(Struct, **_STRUCT):
    """``ev.dynamics.v1``: driving dynamics at 1-10 Hz while driving."""

    event_id: EventId
    ts_ms: TsMs
    speed_kmh: SpeedKmh
    accel_long_mps2: Annotated[AccelMps2, Meta(description="Longitudinal acceleration, negative = braking")]
    accel_lat_mps2: Annotated[AccelMps2, Meta(description="Lateral acceleration, positive = left")]
    yaw_rate_dps: Annotated[float, Meta(ge=-360.0, le=360.0)]
    heading_deg: Annotated[float, Meta(ge=0.0, lt=360.0)]
    motor_power_kw: Annotated[float, Meta(ge=-500.0, le=1_000.0, description="Negative = regenerative braking")]
    adas_state: Literal["off", "standby", "active", "override"]
    fcw: bool = False
    headway_s: Annotated[float, Meta(ge=0.0, le=30.0)] | None = None
    seatbelt_driver: bool = True
    lat: Lat
    lon: Lon


AlarmCode = Literal[
    "temperature_difference",
    "battery_high_temp",
    "pack_over_voltage",
    "pack_under_voltage",
    "soc_low",
    "cell_over_voltage",
    "cell_under_voltage",
    "soc_high",
    "soc_jump",
    "pack_mismatch",
    "cell_consistency",
    "insulation",
    "dcdc_temp",
    "brake_system",
    "dcdc_status",
    "motor_controller_temp",
    "hv_interlock",
    "motor_temp",
    "pack_overcharge",
]


class AlarmV1(Struct, **_STRUCT):
    """``ev.alarm.v1``: an alarm raised or cleared (GB/T 32960 general alarm flags)."""

    event_id: EventId
    ts_ms: TsMs
    alarm_code: AlarmCode
    alarm_level: Annotated[int, Meta(ge=0, le=4)]
    active: bool = True
    cell_temp_max_c: Annotated[float, Meta(ge=-40.0, le=210.0)] | None = None
    lat: Lat
    lon: Lon


class CrashV1(Struct, **_STRUCT):
    """``ev.crash.v1``: an airbag-control-module crash pulse with the speed trace
    60 s before and 30 s after the impact (1 Hz)."""

    event_id: EventId
    ts_ms: TsMs
    peak_accel_g: Annotated[float, Meta(ge=0.0, le=200.0)]
    delta_v_kmh: Annotated[float, Meta(ge=0.0, le=200.0)]
    principal_direction_deg: Annotated[float, Meta(ge=0.0, lt=360.0)]
    airbag_deployed: bool
    speed_before_kmh: SpeedKmh
    pre_speed_kmh: Annotated[list[SpeedKmh], Meta(max_length=60)] = []
    post_speed_kmh: Annotated[list[SpeedKmh], Meta(max_length=30)] = []
    lat: Lat
    lon: Lon


class Party(Struct, **_STRUCT):
    """A person in a claim, with what the claims system knows of them."""

    role: Literal["insured", "third_party", "passenger", "witness"]
    name: Text
    phone: Annotated[str, Meta(max_length=40)] | None = None
    address: Text | None = None
    bank_account: Annotated[str, Meta(max_length=40)] | None = None
    vehicle_id: Annotated[
        str, Meta(max_length=80, description="VIN at the source; the pseudonymous vehicle id after the gate")
    ] | None = None
    plate: Annotated[str, Meta(max_length=20)] | None = None


class FnolV1(Struct, **_STRUCT):
    """``claims.fnol.v1``: first notice of loss from the insurer's claims system.
    Key = claim id."""

    event_id: EventId
    ts_ms: Annotated[TsMs, Meta(description="When the claim was reported")]
    claim_id: Annotated[str, Meta(min_length=1, max_length=64)]
    policy_id: Annotated[str, Meta(min_length=1, max_length=64)]
    loss_ts_ms: Annotated[TsMs, Meta(description="Claimed time of the accident")]
    lat: Lat
    lon: Lon
    amount_eur: Annotated[float, Meta(ge=0.0, le=10_000_000.0)]
    parties: Annotated[list[Party], Meta(min_length=1, max_length=20)]
    garage: Text | None = None
    tow_company: Text | None = None
    lawyer: Text | None = None
    clinic: Text | None = None
    description: Annotated[str, Meta(max_length=2_000)] = ""


class DecisionV1(Struct, **_STRUCT):
    """``fraud.decisions.v1``: an investigator's status change on an alert."""

    event_id: EventId
    ts_ms: TsMs
    # an alert's id is "alert-" + its claim id (up to 64 characters)
    alert_id: Annotated[str, Meta(min_length=1, max_length=70)]
    status: Literal["new", "investigating", "confirmed", "dismissed"]
    investigator: Text
    note: Annotated[str, Meta(max_length=2_000)] = ""
    alert_version: Annotated[int, Meta(ge=0, description=(
        "Version of the alert the investigator saw when deciding (fraud.alerts.v1 'version'); a later version "
        "of the alert (its ring grew) reopens a closed decision. 0: not known, the decision's time is compared "
        "with the alert's instead"))] = 0


TelemetryRecord = StateV1 | DynamicsV1 | AlarmV1 | CrashV1

__all__ = [
    "AlarmV1",
    "CrashV1",
    "DecisionV1",
    "DynamicsV1",
    "FnolV1",
    "Party",
    "StateV1",
    "TelemetryRecord",
    "msgspec",
]
