"""Telematics verification from real telemetry records."""

from __future__ import annotations

from fraudring.verify import TelematicsFacts, facts_from_telemetry, judge
from stream.records import CrashV1, DynamicsV1, StateV1

LOSS_MS = 1_780_000_000_000
LAT, LON = 31.2304, 121.4737  # People's Square, Shanghai


def _state(dt_s: int, lat: float = LAT, lon: float = LON, speed: float = 30.0, gear: str = "D",
           charging: str = "not_charging") -> StateV1:
    return StateV1(
        event_id=f"s{dt_s}", ts_ms=LOSS_MS + dt_s * 1000, vehicle_status="started" if gear != "P" else "off",
        charging_state=charging, speed_kmh=speed, odometer_km=12_000.0, pack_voltage_v=380.0, pack_current_a=20.0,
        soc_pct=60.0, gear=gear, insulation_resistance_kohm=5_000.0, lat=lat, lon=lon, cell_voltage_max_v=3.9,
        cell_voltage_min_v=3.8, cell_temp_max_c=30.0, cell_temp_min_c=28.0, alarm_level=0, alarm_flags=0,
    )


def _crash(dt_s: int, delta_v: float) -> CrashV1:
    return CrashV1(event_id=f"c{dt_s}", ts_ms=LOSS_MS + dt_s * 1000, peak_accel_g=8.0, delta_v_kmh=delta_v,
                   principal_direction_deg=0.0, airbag_deployed=False, speed_before_kmh=35.0, lat=LAT, lon=LON)


def test_genuine_crash_is_consistent():
    records = [_state(-240), _state(-30, speed=35.0), _crash(-5, 22.0), _state(60, speed=0.0)]
    v = judge(facts_from_telemetry(LOSS_MS, LAT, LON, records), amount_eur=9_000.0)
    assert v.verdict == "consistent"
    assert v.facts.crash_delta_v_kmh == 22.0 and v.facts.insured_in_cell
    assert "crash pulse of 22 km/h delta-v near the claimed loss time" in v.evidence


def test_staged_crash_without_pulse_is_contradicted_with_that_evidence():
    # the car was there, but parked in P: no crash pulse, no hard dynamics
    records = [_state(-300, speed=0.0, gear="P"), _state(0, speed=0.0, gear="P"), _state(280, speed=0.0, gear="P")]
    v = judge(facts_from_telemetry(LOSS_MS, LAT, LON, records), amount_eur=8_500.0)
    assert v.verdict == "contradicted"
    assert v.evidence[:2] == ["no crash pulse within 10 min of claimed loss",
                              "insured vehicle was parked or charging at the claimed loss time"]


def test_phantom_claim_vehicle_elsewhere():
    # 13 km away at the claimed time (Pudong airport road), outside the cell and its ring
    records = [_state(-60, lat=31.20, lon=121.61), _state(60, lat=31.20, lon=121.61)]
    v = judge(facts_from_telemetry(LOSS_MS, LAT, LON, records), amount_eur=6_000.0)
    assert v.verdict == "contradicted"
    assert v.evidence[0].startswith("insured vehicle was 13.") and "km from the claimed place" in v.evidence[0]


def test_dynamics_impact_counts_as_a_pulse_and_small_pulse_cannot_explain_big_bill():
    dyn = [DynamicsV1(event_id=f"d{i}", ts_ms=LOSS_MS + i * 100, speed_kmh=s, accel_long_mps2=a, accel_lat_mps2=0.0,
                      yaw_rate_dps=0.0, heading_deg=90.0, motor_power_kw=10.0, adas_state="off", lat=LAT, lon=LON)
           for i, (s, a) in enumerate([(30, 0), (30, -2), (29, -35), (12, -8), (6, -3), (5, 0)])]
    facts = facts_from_telemetry(LOSS_MS, LAT, LON, dyn)
    assert facts.crash_pulse_found and facts.crash_delta_v_kmh == 24.0
    small = judge(TelematicsFacts(telematics_available=True, insured_in_cell=True, crash_pulse_found=True,
                                  crash_delta_v_kmh=5.0, speed_at_loss_kmh=10.0), amount_eur=15_000.0)
    assert small.verdict == "contradicted"
    assert small.evidence == ["crash pulse of 5 km/h delta-v explains at most 3,000 EUR, claim is 15,000 EUR"]


def test_no_telemetry_in_window():
    v = judge(facts_from_telemetry(LOSS_MS, LAT, LON, [_state(-3_600)]), amount_eur=5_000.0)
    assert v.verdict == "no_telematics"
    assert v.evidence == ["no telemetry from the insured vehicle within 10 min of the claimed loss"]


def test_small_scrape_without_pulse_is_not_held_against_the_claim():
    v = judge(facts_from_telemetry(LOSS_MS, LAT, LON, [_state(0, speed=12.0)]), amount_eur=600.0)
    assert v.verdict == "consistent"
