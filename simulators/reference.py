"""Reference feature computations over event-level records, written for clarity:
the yardstick that the book and the streaming feature functions are compared to.

Definitions follow the shared feature contract:
- a trip is a run of dynamics samples with gaps of at most ``TRIP_GAP_MS``;
- each sample stands for 1/hz seconds of driving and speed x dt of distance;
- braking event = consecutive samples with accel_long < -0.1 g, hard if its peak < -0.3 g;
  acceleration event likewise above +0.1 g, harsh if peak > +0.3 g;
  turn = consecutive samples with |accel_lat| > 0.2 g, harsh if peak > 0.4 g;
- shares are shares of driving time (unsafe following: speed >= 80 km/h and headway < 1 s;
  speeding: speed above 1.1 x the cell's limit; night: 23:00-04:00 Shanghai);
- regen share: share of braking samples (< -0.1 g) with motor_power_kw < 0;
- SOC at trip start: the ``ev.state.v1`` sent at the first dynamics sample of each trip.

A ratio without its denominator (regen share without braking, rates without distance)
is NaN here where the stream's windows give 0: the yardstick is compared and fitted on
finite values only, and ``fleet_features`` leaves out vehicles that did not drive.
"""

from __future__ import annotations

from collections import defaultdict

import numpy as np

from simulators import city
from simulators.fleet import TOPIC_ALARM, TOPIC_DYNAMICS, TOPIC_STATE, Event, G, is_night_local

TRIP_GAP_MS = 60_000


def _runs(mask: np.ndarray, trip_id: np.ndarray) -> list[tuple[int, int]]:
    """(start, end) index pairs of maximal True runs that do not cross a trip boundary."""
    m = mask.astype(np.int8)
    brk = np.concatenate([[True], trip_id[1:] != trip_id[:-1]])
    starts = np.flatnonzero(m & ((np.concatenate([[0], m[:-1]]) == 0) | brk))
    out = []
    for s in starts:
        e = s
        while e + 1 < len(m) and m[e + 1] and not brk[e + 1]:
            e += 1
        out.append((int(s), int(e) + 1))
    return out


def _count_events(signal: np.ndarray, trip_id: np.ndarray, enter: float, peak: float) -> int:
    return sum(1 for s, e in _runs(signal > enter, trip_id) if signal[s:e].max() > peak)


def vehicle_features(dynamics: list, states: list, alarms: list, hz: float, window_days: float) -> dict[str, float]:
    """Contract features (without the ``_by_vehicle_<w>`` suffix) of one vehicle's records.
    Counts (trips, distance, hours) are scaled to 30 days."""
    dyn = sorted(dynamics, key=lambda rec: rec.ts_ms)
    ts = np.array([rec.ts_ms for rec in dyn], dtype=np.int64)
    v = np.array([rec.speed_kmh for rec in dyn])
    a = np.array([rec.accel_long_mps2 for rec in dyn])
    alat = np.array([rec.accel_lat_mps2 for rec in dyn])
    power = np.array([rec.motor_power_kw for rec in dyn])
    headway = np.array([np.nan if rec.headway_s is None else rec.headway_s for rec in dyn])
    fcw = np.array([rec.fcw for rec in dyn])
    belt = np.array([rec.seatbelt_driver for rec in dyn])
    lat = np.array([rec.lat for rec in dyn])
    lon = np.array([rec.lon for rec in dyn])
    trip_id = np.concatenate([[0], np.cumsum(np.diff(ts) > TRIP_GAP_MS)])
    dt_h = 1.0 / hz / 3600.0
    hours = len(dyn) * dt_h
    km = float(v.sum() * dt_h)
    cells = city.cells_of(lat, lon).tolist()
    limit = np.array([city.speed_limit_kmh(c) for c in cells])
    risk = np.array([city.cell_risk_index(c) for c in cells])
    braking = a < -0.1 * G
    fcw_edges = int((fcw & ~np.concatenate([[False], fcw[:-1]])).sum())
    trip_starts = set(ts[np.concatenate([[True], np.diff(trip_id) > 0])].tolist())
    soc_start = [rec.soc_pct for rec in states if rec.ts_ms in trip_starts and rec.vehicle_status == "started"]
    thermal = sum(1 for rec in alarms if rec.active and rec.alarm_code == "battery_high_temp")
    scale = 30.0 / window_days
    per_100km = 100.0 / km if km > 0 else np.nan
    return {
        "distance_km": km * scale,
        "driving_hours": hours * scale,
        "trips": float(trip_id[-1] + 1) * scale if len(dyn) else 0.0,
        "mean_speed_kmh": km / hours if hours else np.nan,
        "hard_brake_per_100km": _count_events(-a, trip_id, 0.1 * G, 0.3 * G) * per_100km,
        "harsh_accel_per_100km": _count_events(a, trip_id, 0.1 * G, 0.3 * G) * per_100km,
        "harsh_turn_per_100km": _count_events(np.abs(alat), trip_id, 0.2 * G, 0.4 * G) * per_100km,
        "unsafe_following_share": float(np.mean((v >= 80.0) & (headway < 1.0))),
        "fcw_per_1000km": fcw_edges * 10.0 * per_100km,
        "unbuckled_share": float(np.mean(~belt)),
        "night_share": float(np.mean(is_night_local(ts))),
        "speeding_share": float(np.mean(v > 1.1 * limit)),
        "regen_share": float(np.mean(power[braking] < 0)) if braking.any() else np.nan,
        "thermal_alarms_per_1000km": thermal * 10.0 * per_100km,
        "soc_trip_start_mean": float(np.mean(soc_start)) if soc_start else np.nan,
        "cell_risk_exposure_weighted": float(np.mean(risk)),
    }


def fleet_features(events: list[Event], hz: float, window_days: float) -> dict[str, dict[str, float]]:
    """``vehicle_features`` for every VIN in ``events``."""
    by_vin: dict[str, dict[str, list]] = defaultdict(lambda: {TOPIC_DYNAMICS: [], TOPIC_STATE: [], TOPIC_ALARM: []})
    for e in events:
        if e.topic in (TOPIC_DYNAMICS, TOPIC_STATE, TOPIC_ALARM):
            by_vin[e.key][e.topic].append(e.record)
    return {
        vin: vehicle_features(t[TOPIC_DYNAMICS], t[TOPIC_STATE], t[TOPIC_ALARM], hz, window_days)
        for vin, t in by_vin.items()
        if t[TOPIC_DYNAMICS]
    }
