"""A small seeded telemetry stream for the feature tests and ``bench/bench_features.py``.

Not the fleet simulator (``simulators/``): just enough realism to exercise every
feature path: trips at 1 or 10 Hz with speed changes, braking and turn episodes,
close following on fast roads, forward-collision warnings, unbuckled stretches,
regenerative braking, SOC readings every 30 s, park states at trip end, battery
thermal alarms and the odd crash. Same seed, same records.
"""

from __future__ import annotations

import numpy as np

from stream.records import AlarmV1, CrashV1, DynamicsV1, StateV1

_G = 9.80665
_M_PER_DEG_LAT = 111_320.0


def synthetic_stream(vehicles: int = 5, trips_per_vehicle: int = 3, seed: int = 7,
                     start_ms: int = 1_780_000_000_000, max_trip_s: int = 900,
                     max_gap_h: float = 6.0) -> list[tuple[str, object]]:
    """``(vehicle_id, record)`` pairs in event-time order, as a partition would deliver them."""
    rng = np.random.default_rng(seed)
    out: list[tuple[int, int, str, object]] = []
    for v in range(vehicles):
        vid = f"veh-{v:04d}"
        t = start_ms + int(rng.integers(0, 86_400_000))
        lat, lon = 31.0 + rng.uniform(0, 0.3), 121.2 + rng.uniform(0, 0.4)
        soc = float(rng.uniform(40, 95))
        hz = int(rng.choice([1, 10]))
        for _ in range(trips_per_vehicle):
            n = int(rng.integers(60, max_trip_s)) * hz
            dt = 1.0 / hz
            # speed: smoothed random acceleration, occasional hard braking pulses
            acc = np.convolve(rng.normal(0, 1.2, n), np.ones(3 * hz) / (3 * hz), mode="same")
            for p in rng.integers(0, n, size=max(1, n // (120 * hz))):
                acc[p: p + 2 * hz] -= rng.uniform(2.0, 5.0)
            for p in rng.integers(0, n, size=max(1, n // (300 * hz))):
                acc[p: p + 2 * hz] += rng.uniform(1.5, 4.0)
            speed = np.clip(np.cumsum(acc * dt * 3.6) + rng.uniform(20, 90), 0, 140)
            along = np.diff(speed, prepend=speed[0]) / 3.6 / dt
            along = np.clip(along + rng.normal(0, 0.2, n), -12, 12)
            alat = np.convolve(rng.normal(0, 1.5, n), np.ones(2 * hz) / (2 * hz), mode="same")
            for p in rng.integers(0, n, size=max(1, n // (150 * hz))):
                alat[p: p + 2 * hz] += rng.choice([-1, 1]) * rng.uniform(2.0, 5.0)
            heading = np.cumsum(rng.normal(0, 2.0 * dt, n)) % 360
            step_m = speed / 3.6 * dt
            lats = lat + np.cumsum(step_m * np.cos(np.radians(heading))) / _M_PER_DEG_LAT
            lons = lon + np.cumsum(step_m * np.sin(np.radians(heading))) / (_M_PER_DEG_LAT * np.cos(np.radians(lat)))
            headway = np.where((speed > 60) & (rng.random(n) < 0.7), rng.uniform(0.5, 3.0, n), np.nan)
            fcw = np.zeros(n, bool)
            for p in rng.integers(0, n, size=int(rng.integers(0, 3))):
                fcw[p: p + hz] = True
            belt = np.ones(n, bool)
            if rng.random() < 0.2:
                belt[: n // 4] = False
            power = np.where(along < 0, along * 25.0, along * 30.0 + speed * 0.2)
            ts = t + np.round(np.arange(n) * 1000.0 / hz).astype(np.int64)
            for i in range(n):
                out.append((int(ts[i]), 1, vid, DynamicsV1(
                    event_id=f"{vid}-d{ts[i]}", ts_ms=int(ts[i]), speed_kmh=float(speed[i]),
                    accel_long_mps2=float(along[i]), accel_lat_mps2=float(np.clip(alat[i], -12, 12)),
                    yaw_rate_dps=0.0, heading_deg=float(heading[i]), motor_power_kw=float(np.clip(power[i], -400, 900)),
                    adas_state="active" if speed[i] > 60 else "standby", fcw=bool(fcw[i]),
                    headway_s=None if np.isnan(headway[i]) else float(headway[i]), seatbelt_driver=bool(belt[i]),
                    lat=float(lats[i]), lon=float(lons[i]))))
            for k, ts_s in enumerate(range(int(t) - 20_000, int(ts[-1]) + 1, 30_000)):
                out.append((ts_s, 0, vid, _state(vid, ts_s, soc - k * 0.05, "started", "D", lat, lon)))
            soc -= n / hz / 3600 * 15
            end = int(ts[-1]) + 2_000
            out.append((end, 0, vid, _state(vid, end, soc, "off", "P", float(lats[-1]), float(lons[-1]))))
            if rng.random() < 0.3:
                out.append((end - 5_000, 2, vid, AlarmV1(event_id=f"{vid}-a{end}", ts_ms=end - 5_000,
                                                         alarm_code="battery_high_temp", alarm_level=2,
                                                         lat=float(lats[-1]), lon=float(lons[-1]))))
            if rng.random() < 0.15:
                out.append((end - 3_000, 2, vid, CrashV1(event_id=f"{vid}-c{end}", ts_ms=end - 3_000, peak_accel_g=8.0,
                                                         delta_v_kmh=15.0, principal_direction_deg=0.0,
                                                         airbag_deployed=False, speed_before_kmh=20.0,
                                                         lat=float(lats[-1]), lon=float(lons[-1]))))
            lat, lon = float(lats[-1]), float(lons[-1])
            t = end + int(rng.integers(2, int(max_gap_h * 3600))) * 1000
    out.sort(key=lambda x: (x[0], x[1]))
    return [(vid, rec) for _, _, vid, rec in out]


def _state(vid: str, ts_ms: int, soc: float, status: str, gear: str, lat: float, lon: float) -> StateV1:
    return StateV1(event_id=f"{vid}-s{ts_ms}", ts_ms=ts_ms, vehicle_status=status, charging_state="not_charging",
                   speed_kmh=0.0, odometer_km=12_000.0, pack_voltage_v=400.0, pack_current_a=20.0,
                   soc_pct=float(np.clip(soc, 0, 100)), gear=gear, insulation_resistance_kohm=5_000.0, lat=lat,
                   lon=lon, cell_voltage_max_v=4.1, cell_voltage_min_v=4.0, cell_temp_max_c=35.0,
                   cell_temp_min_c=30.0, alarm_level=0, alarm_flags=0)
