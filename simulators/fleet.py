"""Event-level fleet: each driver of the latent model drives a daily schedule of
trips through the simulated city, and the vehicles emit what a carmaker cloud
would: ``ev.state.v1``, ``ev.dynamics.v1``, ``ev.alarm.v1``, ``ev.crash.v1``.

Kinematics run at 1 s steps (a scalar loop: each step depends on the last) and are
resampled to the dynamics rate. Randomness comes from one numpy Generator per
(seed, vehicle, day), so a vehicle-day is reproducible on its own and the whole
output is byte-identical for the same seed and settings.
"""

from __future__ import annotations

import hashlib
import heapq
import math
from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np

from simulators import city
from simulators.drivers import PACK_KWH, PACK_NOMINAL_V, Population
from stream import records as r

G = 9.80665
MASS_KG = 2_000.0
LOCAL_UTC_OFFSET_MS = 8 * 3_600_000  # Shanghai, no DST
DAY_MS = 86_400_000
NORMAL_ACCEL_MPS2 = 2.7  # ordinary driving stays below this (0.28 g): harsh is beyond 0.3 g
TURN_RADIUS_M = (12.0, 20.0)
MOTOR_MAX_KW, MOTOR_REGEN_MAX_KW = 250.0, 150.0
LEAD_VEHICLE_P = {"local": 0.5, "arterial": 0.7, "expressway": 0.8, "highway": 0.8}
RUSH_HOURS_LOCAL = ((7.0, 9.5), (17.0, 19.5))
GBT_ALARM_BIT = {"temperature_difference": 0, "battery_high_temp": 1}

TOPIC_STATE, TOPIC_DYNAMICS, TOPIC_ALARM, TOPIC_CRASH = "ev.state.v1", "ev.dynamics.v1", "ev.alarm.v1", "ev.crash.v1"


@dataclass(frozen=True)
class FleetConfig:
    """What an event-level run depends on; same config + population -> same bytes."""

    start_ms: int
    days: int = 7
    dynamics_hz: int = 1
    state_period_s: int = 15
    charge_state_period_s: int = 30
    coord_sys: str = "WGS84"
    crash_scale: float = 1.0

    def __post_init__(self):
        if not 1 <= self.dynamics_hz <= 10:
            raise ValueError(f"dynamics_hz={self.dynamics_hz}: ev.dynamics.v1 is specified at 1-10 Hz")
        if not 10 <= self.state_period_s <= 30:
            raise ValueError(f"state_period_s={self.state_period_s}: ev.state.v1 is sent every 10-30 s")
        if (self.start_ms + LOCAL_UTC_OFFSET_MS) % DAY_MS:
            raise ValueError(
                f"start_ms={self.start_ms}: the schedule is planned per local day; "
                "start at a Shanghai midnight (e.g. 1793462400000 = 2026-11-01 00:00 +08:00)"
            )
        if self.coord_sys not in ("WGS84", "GCJ02"):
            raise ValueError(f"coord_sys={self.coord_sys!r}: use WGS84 or GCJ02")


@dataclass(frozen=True)
class Event:
    """One message for a raw topic. ``key`` is the raw VIN (telemetry) or claim id."""

    ts_ms: int
    topic: str
    key: str
    record: object


@dataclass(frozen=True)
class TripTrace:
    """What the simulator knows of a trip, for ground truth and claim verification
    (positions every 10 s, WGS-84)."""

    vehicle: int
    start_ms: int
    end_ms: int
    ts_ms: np.ndarray
    lat: np.ndarray
    lon: np.ndarray
    speed_kmh: np.ndarray
    crashed: bool


@dataclass
class VehicleState:
    """What a vehicle carries from one day to the next."""

    odometer_km: float
    soc_pct: float
    pos_xy: np.ndarray
    out_of_service_until_ms: int = 0
    seq: int = 0
    traces: list[TripTrace] = field(default_factory=list)
    crashes: list[dict] = field(default_factory=list)
    charging: list[tuple[int, int, float, float]] = field(default_factory=list)  # (start, end, lat, lon)


class _Draws:
    """Block-drawn uniforms and normals: Generator scalar calls cost ~1 us each,
    too slow inside the per-second loop."""

    def __init__(self, rng: np.random.Generator, block: int = 4096):
        self.rng, self.block = rng, block
        self._u: list[float] = []
        self._n: list[float] = []

    def u(self) -> float:
        if not self._u:
            self._u = self.rng.random(self.block).tolist()
        return self._u.pop()

    def n(self) -> float:
        if not self._n:
            self._n = self.rng.standard_normal(self.block).tolist()
        return self._n.pop()

    def exp(self, mean: float) -> float:
        return -mean * math.log(1.0 - self.u())


def local_hour(ts_ms: int) -> float:
    """Hour of day in Shanghai local time."""
    return ((ts_ms + LOCAL_UTC_OFFSET_MS) % DAY_MS) / 3_600_000


def is_night_local(ts_ms: np.ndarray) -> np.ndarray:
    """23:00-04:00 Shanghai time (the night-share definition of the features)."""
    h = ((np.asarray(ts_ms) + LOCAL_UTC_OFFSET_MS) % DAY_MS) / 3_600_000
    return (h >= 23.0) | (h < 4.0)


# --- schedule ---------------------------------------------------------------------------


@dataclass(frozen=True)
class PlannedTrip:
    start_ms: int
    path: np.ndarray  # vertices in metres
    kind: str  # commute, errand, night
    dwell_s: float  # how long the car stays at the destination before the return leg


def plan_day(pop: Population, i: int, day_start_ms: int, rng: np.random.Generator) -> list[PlannedTrip]:
    """The day's round trips for driver ``i`` (``day_start_ms`` = local midnight)."""
    weekday = ((day_start_ms + LOCAL_UTC_OFFSET_MS) // DAY_MS + 3) % 7 < 5  # 1970-01-01 was a Thursday
    home, work = pop.home_xy[i], pop.work_xy[i]
    legs: list[tuple[float, str, np.ndarray, float]] = []  # (start local hour, kind, path, dwell hours)
    if weekday and rng.random() < pop.commute_p[i]:
        depart = pop.depart_h[i] + rng.normal(0.0, 0.3)
        legs.append((depart, "commute", city.grid_route(home, work), 8.5 + rng.normal(0.0, 0.7)))
    n_errands = rng.poisson(pop.errand_rate[i] * (1.0 if weekday else 1.5))
    for _ in range(n_errands):
        length = rng.lognormal(math.log(pop.errand_km[i] * 1000.0), 0.5)
        legs.append((rng.uniform(9.0, 21.0), "errand", city.staircase_route(rng, home, length), rng.uniform(0.3, 1.5)))
    if rng.random() < pop.night_p[i]:
        length = rng.lognormal(math.log(pop.errand_km[i] * 1500.0), 0.5)
        start = rng.uniform(22.5, 26.5)  # past 24 = early next morning
        legs.append((start, "night", city.staircase_route(rng, home, length), rng.uniform(0.5, 2.0)))
    legs.sort(key=lambda leg: leg[0])
    trips: list[PlannedTrip] = []
    for start_h, kind, path, dwell_h in legs:
        trips.append(PlannedTrip(day_start_ms + int(start_h * 3_600_000), path, kind, dwell_h * 3600.0))
        trips.append(PlannedTrip(-1, path[::-1].copy(), kind, 0.0))  # return leg, timed when the outbound ends
    return trips


# --- kinematics ---------------------------------------------------------------------------


@dataclass
class TripArrays:
    """1 Hz kinematics of one trip."""

    t_s: np.ndarray
    s_m: np.ndarray
    v_mps: np.ndarray
    a_mps2: np.ndarray
    a_lat_mps2: np.ndarray
    regen: np.ndarray  # bool: braking through the motor
    fcw: np.ndarray
    headway_s: np.ndarray  # nan = no lead vehicle
    crash_at: int | None  # step index of the impact
    crash_delta_v_kmh: float


def drive(
    pop: Population, i: int, path: np.ndarray, start_ms: int, d: _Draws, crash_scale: float, soc_pct: float
) -> TripArrays:
    """Drive ``path`` at 1 s steps: cruise toward the cell speed limit (times the
    driver's speed factor, or above it in a speeding spell), brake for turns, red
    lights and the destination, and inject harsh events at the driver's per-km rates."""
    seg = np.diff(path, axis=0)
    cum = np.concatenate([[0.0], np.cumsum(np.abs(seg).sum(axis=1))])
    total = float(cum[-1])
    # speed limit every 25 m along the route, from the H3 cell under it
    probe = np.arange(0.0, total + 25.0, 25.0)
    px, py = np.interp(probe, cum, path[:, 0]), np.interp(probe, cum, path[:, 1])
    plat, plon = city.to_latlon(px, py)
    cells = city.cells_of(plat, plon)
    classes = [city.cell_road_class(int(c)) for c in cells]
    limits = [city.SPEED_LIMIT_KMH[c] / 3.6 for c in classes]
    lead_p = [LEAD_VEHICLE_P[c] for c in classes]

    # constraints ahead: (position, speed to be at or below there, red-light wait s)
    stops: list[tuple[float, float, float]] = [(float(c), (15.0 + 10.0 * d.u()) / 3.6, 0.0) for c in cum[1:-1]]
    s_light = d.exp(500.0) + 150.0
    while s_light < total - 100.0:
        if d.u() < 0.45:
            stops.append((s_light, 0.0, 10.0 + 50.0 * d.u()))
        s_light += 250.0 + d.exp(400.0)
    stops.append((total, 0.0, 0.0))
    stops.sort()

    hour = local_hour(start_ms)
    weekday = ((start_ms + LOCAL_UTC_OFFSET_MS) // DAY_MS + 3) % 7 < 5
    if weekday and any(a <= hour < b for a, b in RUSH_HOURS_LOCAL):
        congestion = 0.45 + 0.15 * d.u()
    elif 7.0 <= hour < 21.0:
        congestion = 0.75 + 0.15 * d.u()
    else:
        congestion = 1.0
    factor = float(pop.speed_factor[i])
    accel_max = 1.6 + 0.8 * d.u()
    brake_comfort = 1.3 + 0.6 * d.u()
    sp_p = float(pop.speeding_p[i])
    p_off = 1.0 / 40.0  # speeding spells last ~40 s
    p_on = p_off * sp_p / (1.0 - sp_p)  # stationary share = speeding_p
    tg_p = float(pop.tailgating_p[i])
    tg_off = 1.0 / 20.0
    tg_on = tg_off * tg_p / (1.0 - tg_p)
    headway_mu = math.log(float(pop.headway_mean_s[i]))

    gap = {  # metres between events of each kind, exponential (Poisson per km)
        "brake": 100_000.0 / float(pop.hard_brake_per_100km[i]),
        "accel": 100_000.0 / float(pop.harsh_accel_per_100km[i]),
        "turn": 100_000.0 / float(pop.harsh_turn_per_100km[i]),
        "fcw": 1_000_000.0 / float(pop.fcw_per_1000km[i]),
    }
    nxt = {k: d.exp(g) for k, g in gap.items()}
    pending = dict.fromkeys(gap, 0)
    annual_km = float(pop.annual_km[i])
    crash_rate = float(pop.rate[i]) * crash_scale
    crash_s = d.exp(annual_km * 1000.0 / crash_rate) if crash_rate > 0 else math.inf

    s = v = 0.0
    speeding = d.u() < sp_p
    close = d.u() < tg_p
    sp_mult = 1.2
    wait = 0.0
    stop_idx = 0
    episode: list[float] = []  # queued longitudinal accelerations of a harsh event
    lat_episode: list[float] = []  # queued lateral accelerations
    braking = regen_on = False
    hw = math.exp(headway_mu)
    t_s, s_m, v_mps, a_mps2, a_lat, regen, fcw, headway = ([] for _ in range(8))
    crash_at = None
    crash_dv = 0.0
    step = 0
    while True:
        k = min(int(s / 25.0), len(limits) - 1)
        lim = limits[k]
        if d.u() < (p_off if speeding else p_on):
            speeding = not speeding
            sp_mult = 1.18 + 0.12 * d.u()
        target = lim * (sp_mult if speeding else factor * congestion)
        for kind in gap:
            while s >= nxt[kind]:
                pending[kind] += 1
                nxt[kind] += d.exp(gap[kind])
        if s >= crash_s and v > 20 / 3.6 and crash_at is None:
            crash_at = step
            crash_dv = v * 3.6 * (0.6 + 0.4 * d.u())
            a = -min(v, 49.0)
        elif wait > 0:
            a = 0.0
            wait -= 1.0
        elif episode:
            a = episode.pop()
        else:
            pos, v_req, red = stops[stop_idx]
            dist = pos - s
            need = (v * v - v_req * v_req) / (2.0 * max(dist, 0.5)) if v > v_req else 0.0
            if pending["brake"] and v > 30 / 3.6 and need < brake_comfort:
                pending["brake"] -= 1
                peak = -G * (0.32 + 0.25 * d.u())
                episode = [-G * (0.12 + 0.05 * d.u()), peak]  # popped from the end: peak first
                a = peak
                if v + a < 0:
                    a = -v
            elif pending["accel"] and v < 60 / 3.6 and need < 0.3 and dist > 30.0:
                pending["accel"] -= 1
                a = G * (0.32 + 0.13 * d.u())
                episode = [G * (0.31 + 0.05 * d.u())]
            elif need >= brake_comfort * 0.8 or dist < v:
                a = -min(max(need, v - v_req if dist < v else need), NORMAL_ACCEL_MPS2)
            else:
                a = max(-1.5, min((target - v) * 0.5, accel_max)) + 0.15 * d.n()
                a = max(-NORMAL_ACCEL_MPS2, min(a, NORMAL_ACCEL_MPS2))
        if v + a < 0:
            a = -v
        # lateral: turns at route vertices, harsh swerves at the driver's rate
        if not lat_episode and pending["turn"] and v > 35 / 3.6:
            pending["turn"] -= 1
            sign = 1.0 if d.u() < 0.5 else -1.0
            lat_episode = [sign * G * 0.25, sign * G * (0.42 + 0.18 * d.u()), sign * G * 0.25]
        if lat_episode:
            alat = lat_episode.pop()
        else:
            alat = 0.03 * G * d.n()
        pos, v_req, red = stops[stop_idx]
        if s + v >= pos - 1.0 and v <= v_req + 1.0 and stop_idx < len(stops) - 1:
            if v_req > 0:  # a turn: v^2/r for ~3 s, capped below the aggressive-turn threshold
                r_turn = TURN_RADIUS_M[0] + (TURN_RADIUS_M[1] - TURN_RADIUS_M[0]) * d.u()
                peak = min(max(v, v_req) ** 2 / r_turn, 0.35 * G)
                sign = 1.0 if d.u() < 0.5 else -1.0
                lat_episode = [sign * peak * 0.5, sign * peak * 0.8]
                alat = sign * peak
            wait = red
            stop_idx += 1

        is_brake = a < -0.3
        if is_brake and not braking:
            regen_on = d.u() < float(pop.regen_p[i]) and soc_pct < 97.0
        braking = is_brake
        # following: a lead vehicle with the road class's probability, close spells at the driver's share
        if d.u() < (tg_off if close else tg_on):
            close = not close
        has_lead = d.u() < lead_p[k]
        if close:
            hw = 0.5 + 0.45 * d.u()
        else:
            hw = max(1.05, math.exp(headway_mu + 0.25 * d.n()))
        warn = False
        if pending["fcw"] and v > 20 / 3.6:
            pending["fcw"] -= 1
            warn, has_lead, hw = True, True, 0.4 + 0.3 * d.u()

        t_s.append(step)
        s_m.append(s)
        v_mps.append(v)
        a_mps2.append(a)
        a_lat.append(alat)
        regen.append(is_brake and regen_on)
        fcw.append(warn)
        headway.append(hw if has_lead and v > 1.0 else math.nan)
        if crash_at is not None:
            v = 0.0
            break
        s += v + 0.5 * a
        v += a
        step += 1
        if stop_idx == len(stops) - 1 and s >= total - 2.0 and v < 0.5:
            break
        if s >= total + 50.0:
            break
        if step > 6 * 3600:
            raise RuntimeError(f"vehicle {i}: trip of {total:.0f} m did not finish in 6 h; kinematics stuck")
    # the final sample: arrived, stopped
    return TripArrays(
        t_s=np.asarray(t_s, dtype=float),
        s_m=np.minimum(np.asarray(s_m), total),
        v_mps=np.asarray(v_mps),
        a_mps2=np.asarray(a_mps2),
        a_lat_mps2=np.asarray(a_lat),
        regen=np.asarray(regen, dtype=bool),
        fcw=np.asarray(fcw, dtype=bool),
        headway_s=np.asarray(headway),
        crash_at=crash_at,
        crash_delta_v_kmh=crash_dv,
    )


def heading_along(path: np.ndarray, s_m: np.ndarray) -> np.ndarray:
    """Heading (deg clockwise from north) of the route leg at each distance."""
    seg = np.diff(path, axis=0)
    cum = np.concatenate([[0.0], np.cumsum(np.abs(seg).sum(axis=1))])
    idx = np.clip(np.searchsorted(cum, s_m, side="right") - 1, 0, len(seg) - 1)
    return np.degrees(np.arctan2(seg[idx, 0], seg[idx, 1])) % 360.0


def motor_power_kw(v: np.ndarray, a: np.ndarray, regen: np.ndarray) -> np.ndarray:
    """Motor power from a longitudinal model (rolling + aero + inertia, 90 % drive
    efficiency, 70 % regen recovery); friction braking leaves the motor near idle."""
    force = MASS_KG * a + 0.011 * MASS_KG * G + 0.5 * 1.2 * 0.62 * v * v
    p = force * v / 1000.0
    p = np.where(p > 0, p / 0.9, p * 0.7)
    p = np.where(a < -0.3, np.where(regen, np.minimum(p, -0.1), 0.3), np.maximum(p, 0.3 * (v > 0)))
    return np.clip(p, -MOTOR_REGEN_MAX_KW, MOTOR_MAX_KW)


# --- one vehicle-day -> events -------------------------------------------------------------------


class Emitter:
    """Turns one vehicle's simulated state into records, numbering event ids."""

    def __init__(self, pop: Population, i: int, cfg: FleetConfig, st: VehicleState, origin_ms: int | None = None):
        self.pop, self.i, self.cfg, self.st = pop, i, cfg, st
        self.vin = str(pop.vin[i])
        # event ids: unique per (seed, run start, vehicle) and free of the VIN, which the
        # gate refuses anywhere in a value (it would leave the gate in clear)
        origin = cfg.start_ms if origin_ms is None else origin_ms
        self.id_prefix = hashlib.blake2b(f"{pop.seed}:{origin}:{i}".encode(), digest_size=6).hexdigest()
        self.events: list[Event] = []
        if cfg.coord_sys == "GCJ02":
            from stream.geo import wgs84_to_gcj02

            self._to_out = wgs84_to_gcj02
        else:
            self._to_out = None

    def eid(self, tag: str) -> str:
        self.st.seq += 1
        return f"{self.id_prefix}-{tag}{self.st.seq}"

    def pos(self, lat: float, lon: float) -> tuple[float, float]:
        if self._to_out is not None:
            lat, lon = self._to_out(lat, lon)
        return round(lat, 6), round(lon, 6)

    def state(
        self,
        ts_ms: int,
        *,
        status: str,
        charging: str,
        speed_kmh: float,
        current_a: float,
        gear: str,
        lat: float,
        lon: float,
        alarm_level: int = 0,
        alarm_flags: int = 0,
        temp_max_c: float | None = None,
    ) -> Event:
        soc, speed_kmh, current_a = float(self.st.soc_pct), float(speed_kmh), float(current_a)
        cell_v = 3.35 + 0.0085 * soc
        t_max = temp_max_c if temp_max_c is not None else 26.0 + 0.01 * abs(current_a)
        olat, olon = self.pos(lat, lon)
        return Event(
            ts_ms,
            TOPIC_STATE,
            self.vin,
            r.StateV1(
                event_id=self.eid("s"),
                ts_ms=ts_ms,
                vehicle_status=status,
                charging_state=charging,
                speed_kmh=round(speed_kmh, 1),
                odometer_km=round(float(self.st.odometer_km), 1),
                pack_voltage_v=round(PACK_NOMINAL_V * (0.92 + 0.0016 * soc), 1),
                pack_current_a=round(current_a, 1),
                soc_pct=round(soc, 1),
                gear=gear,
                insulation_resistance_kohm=2_500.0,
                lat=olat,
                lon=olon,
                cell_voltage_max_v=round(cell_v + 0.01, 3),
                cell_voltage_min_v=round(cell_v - 0.01, 3),
                cell_temp_max_c=round(t_max, 1),
                cell_temp_min_c=round(t_max - 3.0, 1),
                alarm_level=alarm_level,
                alarm_flags=alarm_flags,
            ),
        )


def _trace(i: int, ts: np.ndarray, lat: np.ndarray, lon: np.ndarray, v_kmh: np.ndarray, crashed: bool) -> TripTrace:
    keep = slice(None, None, 10)
    return TripTrace(
        i, int(ts[0]), int(ts[-1]), ts[keep].copy(), lat[keep].copy(), lon[keep].copy(), v_kmh[keep].copy(), crashed
    )


@dataclass
class TripOut:
    """One driven trip: 1 Hz kinematics and positions, and the dynamics-rate samples."""

    ta: TripArrays
    ts1: np.ndarray  # 1 Hz timestamps
    x: np.ndarray
    y: np.ndarray
    lat: np.ndarray
    lon: np.ndarray
    power: np.ndarray
    soc: np.ndarray
    odo0: float
    belt: bool
    near: np.ndarray  # 1 Hz index of each dynamics sample
    ts_out: np.ndarray
    v_kmh: np.ndarray
    la_out: np.ndarray
    lo_out: np.ndarray
    yaw: np.ndarray
    heading: np.ndarray


def drive_trip(em: Emitter, path: np.ndarray, start_ms: int, d: _Draws) -> TripOut:
    """Kinematics of one trip, resampled to the dynamics rate (records are made later)."""
    pop, i, cfg, st = em.pop, em.i, em.cfg, em.st
    ta = drive(pop, i, path, start_ms, d, cfg.crash_scale, st.soc_pct)
    n = len(ta.t_s)
    cum = np.concatenate([[0.0], np.cumsum(np.abs(np.diff(path, axis=0)).sum(axis=1))])
    x, y = np.interp(ta.s_m, cum, path[:, 0]), np.interp(ta.s_m, cum, path[:, 1])
    lat, lon = city.to_latlon(x, y)
    power = motor_power_kw(ta.v_mps, ta.a_mps2, ta.regen)
    # energy per step: traction power plus ~1.2 kW of climate control and electronics
    soc = st.soc_pct - np.cumsum(power + 1.2) / 3600.0 / PACK_KWH * 100.0
    soc = np.concatenate([[st.soc_pct], soc[:-1]])
    ts1 = start_ms + (ta.t_s * 1000).astype(np.int64)
    belt = d.u() >= float(pop.unbuckled_p[i])
    hz = cfg.dynamics_hz
    if hz > 1 and n > 1:  # events keep their 1 s shape; speed and position are interpolated
        tt = np.arange(0.0, ta.t_s[-1] + 1e-9, 1.0 / hz)
        near = np.minimum(np.rint(tt).astype(int), n - 1)
        v_out = np.interp(tt, ta.t_s, ta.v_mps)
        la_out, lo_out = np.interp(tt, ta.t_s, lat), np.interp(tt, ta.t_s, lon)
    else:
        tt, near, v_out, la_out, lo_out = ta.t_s, np.arange(n), ta.v_mps, lat, lon
    yaw = np.clip(np.degrees(ta.a_lat_mps2[near] / np.maximum(v_out, 2.0)), -120.0, 120.0)
    return TripOut(
        ta,
        ts1,
        x,
        y,
        lat,
        lon,
        power,
        soc,
        st.odometer_km,
        belt,
        near,
        start_ms + np.rint(tt * 1000).astype(np.int64),
        np.clip(v_out * 3.6, 0.0, 250.0),
        la_out,
        lo_out,
        yaw,
        heading_along(path, ta.s_m)[near],
    )


def trip_records(em: Emitter, o: TripOut) -> Iterator[Event]:
    """``ev.state.v1`` at ignition-on and every state_period_s, and ``ev.dynamics.v1`` at
    the dynamics rate, in time order (made lazily: the load generator only takes what it sends)."""
    st, ta, cfg = em.st, o.ta, em.cfg
    every = cfg.state_period_s
    last_state = -1
    for k in range(len(o.ts_out)):
        k1 = int(o.near[k])
        if k1 % every == 0 and k1 != last_state and o.ts_out[k] >= o.ts1[k1]:
            last_state = k1
            st.soc_pct = float(o.soc[k1])
            st.odometer_km = o.odo0 + float(ta.s_m[k1]) / 1000.0
            yield em.state(
                int(o.ts1[k1]),
                status="started",
                charging="not_charging",
                speed_kmh=ta.v_mps[k1] * 3.6,
                current_a=o.power[k1] * 1000.0 / PACK_NOMINAL_V,
                gear="D",
                lat=float(o.lat[k1]),
                lon=float(o.lon[k1]),
            )
        olat, olon = em.pos(float(o.la_out[k]), float(o.lo_out[k]))
        h = float(ta.headway_s[k1])
        ts = int(o.ts_out[k])
        yield Event(
            ts,
            TOPIC_DYNAMICS,
            em.vin,
            r.DynamicsV1(
                event_id=em.eid("d"),
                ts_ms=ts,
                speed_kmh=round(float(o.v_kmh[k]), 2),
                accel_long_mps2=round(float(ta.a_mps2[k1]), 3),
                accel_lat_mps2=round(float(ta.a_lat_mps2[k1]), 3),
                yaw_rate_dps=round(float(o.yaw[k]), 2),
                heading_deg=round(float(o.heading[k]), 1) % 360.0,
                motor_power_kw=round(float(o.power[k1]), 2),
                adas_state="standby",
                fcw=bool(ta.fcw[k1]),
                headway_s=None if math.isnan(h) else round(h, 2),
                seatbelt_driver=o.belt,
                lat=olat,
                lon=olon,
            ),
        )


def finish_trip(em: Emitter, o: TripOut, d: _Draws) -> tuple[list[Event], int, bool]:
    """Thermal alarms during the trip, the crash pulse if it ended in one, ignition-off;
    updates the vehicle's state. Returns (events, end time, crashed)."""
    pop, i, st, ta = em.pop, em.i, em.st, o.ta
    n = len(ta.t_s)
    out: list[Event] = []
    km = float(ta.s_m[-1]) / 1000.0
    for _ in range(int(d.rng.poisson(km * float(pop.thermal_per_1000km[i]) / 1000.0))):
        k = int(d.u() * n)
        level = 3 if d.u() < 0.1 else 2
        temp = 55.0 + 8.0 * d.u() + (5.0 if level == 3 else 0.0)
        t0 = int(o.ts1[k])
        flags = 1 << GBT_ALARM_BIT["battery_high_temp"]
        for ts_a, active in ((t0, True), (t0 + int(60_000 + 240_000 * d.u()), False)):
            alat, alon = em.pos(float(o.lat[k]), float(o.lon[k]))
            out.append(
                Event(
                    ts_a,
                    TOPIC_ALARM,
                    em.vin,
                    r.AlarmV1(
                        event_id=em.eid("a"),
                        ts_ms=ts_a,
                        alarm_code="battery_high_temp",
                        alarm_level=level if active else 0,
                        active=active,
                        cell_temp_max_c=round(temp if active else 45.0, 1),
                        lat=alat,
                        lon=alon,
                    ),
                )
            )
        if level == 3:  # GB/T 32960: 1 s reporting around a level-3 alarm
            for dt in range(-5, 10):
                out.append(
                    em.state(
                        t0 + dt * 1000,
                        status="started",
                        charging="not_charging",
                        speed_kmh=float(ta.v_mps[min(max(k + dt, 0), n - 1)]) * 3.6,
                        current_a=0.0,
                        gear="D",
                        lat=float(o.lat[k]),
                        lon=float(o.lon[k]),
                        alarm_level=3 if dt >= 0 else 0,
                        alarm_flags=flags if dt >= 0 else 0,
                        temp_max_c=temp,
                    )
                )
    end_ms = int(o.ts1[-1])
    st.odometer_km = o.odo0 + km
    st.soc_pct = float(max(o.soc[-1], 1.0))
    st.pos_xy = np.array([o.x[-1], o.y[-1]])
    crashed = ta.crash_at is not None
    if crashed:
        k = ta.crash_at
        pre = [round(float(v) * 3.6, 1) for v in ta.v_mps[max(0, k - 60) : k]]
        clat, clon = em.pos(float(o.lat[k]), float(o.lon[k]))
        dv = round(ta.crash_delta_v_kmh, 1)
        out.append(
            Event(
                int(o.ts1[k]),
                TOPIC_CRASH,
                em.vin,
                r.CrashV1(
                    event_id=em.eid("c"),
                    ts_ms=int(o.ts1[k]),
                    peak_accel_g=round(dv / 3.6 / 0.1 / G, 1),
                    delta_v_kmh=dv,
                    principal_direction_deg=round(360.0 * d.u(), 1) % 360.0,
                    airbag_deployed=dv > 20.0,
                    speed_before_kmh=pre[-1] if pre else 0.0,
                    pre_speed_kmh=pre,
                    post_speed_kmh=[0.0] * 30,
                    lat=clat,
                    lon=clon,
                ),
            )
        )
        st.crashes.append(
            {
                "vin": em.vin,
                "vehicle": i,
                "ts_ms": int(o.ts1[k]),
                "lat": float(o.lat[k]),
                "lon": float(o.lon[k]),
                "delta_v_kmh": dv,
                "speed_kmh": pre[-1] if pre else 0.0,
            }
        )
        st.out_of_service_until_ms = end_ms + 3 * DAY_MS  # towed to a garage
    out.append(
        em.state(
            end_ms,
            status="off",
            charging="not_charging",
            speed_kmh=0.0,
            current_a=0.0,
            gear="P",
            lat=float(o.lat[-1]),
            lon=float(o.lon[-1]),
        )
    )
    st.traces.append(_trace(i, o.ts1, o.lat, o.lon, ta.v_mps * 3.6, crashed))
    return out, end_ms, crashed


def simulate_trip(em: Emitter, path: np.ndarray, start_ms: int, d: _Draws) -> tuple[int, bool]:
    """Drive one trip and append its records to ``em.events``; returns (end time, crashed)."""
    o = drive_trip(em, path, start_ms, d)
    em.events.extend(trip_records(em, o))
    done, end_ms, crashed = finish_trip(em, o, d)
    em.events.extend(done)
    return end_ms, crashed


def charge(em: Emitter, start_ms: int, until_ms: int, power_kw: float, target_pct: float) -> int:
    """Charge from ``start_ms`` toward ``target_pct`` (stops at ``until_ms``); returns the end time."""
    st, cfg = em.st, em.cfg
    lat, lon = (float(v) for v in city.to_latlon(*st.pos_xy))
    ts = start_ms
    step_pct = power_kw * cfg.charge_state_period_s / 3600.0 / PACK_KWH * 100.0
    while st.soc_pct < target_pct and ts < until_ms:
        em.events.append(
            em.state(
                ts,
                status="off",
                charging="parked_charging",
                speed_kmh=0.0,
                current_a=-power_kw * 1000.0 / PACK_NOMINAL_V,
                gear="P",
                lat=lat,
                lon=lon,
            )
        )
        st.soc_pct = min(100.0, st.soc_pct + step_pct)
        ts += cfg.charge_state_period_s * 1000
    em.events.append(
        em.state(
            ts,
            status="off",
            charging="charge_complete" if st.soc_pct >= target_pct else "not_charging",
            speed_kmh=0.0,
            current_a=0.0,
            gear="P",
            lat=lat,
            lon=lon,
        )
    )
    st.charging.append((start_ms, ts, lat, lon))
    return ts


def simulate_vehicle_day(pop: Population, i: int, day: int, cfg: FleetConfig, st: VehicleState) -> list[Event]:
    """All records of vehicle ``i`` on simulated day ``day``, time-ordered."""
    day_start = cfg.start_ms + day * DAY_MS
    rng = np.random.default_rng([pop.seed, 2, i, day])
    d = _Draws(rng)
    em = Emitter(pop, i, cfg, st)
    home = pop.home_xy[i]
    clock = day_start
    for trip in plan_day(pop, i, day_start, rng):
        start = trip.start_ms if trip.start_ms >= 0 else clock
        if start < clock + 300_000:  # still busy with the previous trip: leave a little later
            start = clock + 300_000 + int(900_000 * d.u())
        if start < st.out_of_service_until_ms:
            continue
        if st.soc_pct < 15.0:  # public DC fast charger before setting off
            start = charge(em, start, start + 3_600_000, 60.0, 80.0) + 120_000
        end, crashed = simulate_trip(em, trip.path, start, d)
        clock = end + (int(trip.dwell_s * 1000) if not crashed else DAY_MS)
    if np.allclose(st.pos_xy, home, atol=50.0) and st.soc_pct < float(pop.charge_below_pct[i]):
        charge(
            em,
            max(clock, day_start + 20 * 3_600_000),
            day_start + DAY_MS + 7 * 3_600_000,
            7.0,
            float(pop.charge_to_pct[i]),
        )
    em.events.sort(key=lambda e: e.ts_ms)
    return em.events


def initial_state(pop: Population, i: int) -> VehicleState:
    rng = np.random.default_rng([pop.seed, 3, i])
    return VehicleState(
        odometer_km=float(rng.uniform(2_000, 60_000)),
        soc_pct=float(rng.uniform(pop.charge_below_pct[i], pop.charge_to_pct[i])),
        pos_xy=pop.home_xy[i].copy(),
    )


def simulate(pop: Population, cfg: FleetConfig, states: list[VehicleState] | None = None) -> Iterator[Event]:
    """Every record of the fleet, day by day; within a day merged in time order."""
    states = states if states is not None else [initial_state(pop, i) for i in range(pop.n)]
    for day in range(cfg.days):
        per_vehicle = [simulate_vehicle_day(pop, i, day, cfg, states[i]) for i in range(pop.n)]
        yield from heapq.merge(*per_vehicle, key=lambda e: e.ts_ms)


def continuous_driving(pop: Population, i: int, cfg: FleetConfig, start_ms: int) -> Iterator[Event]:
    """Vehicle ``i`` driving errand after errand from ``start_ms`` without end (the load
    generator's source: every vehicle is on the road, as at a fleet's peak hour).
    Records are made lazily, so only what is sent costs encoding time."""
    st = initial_state(pop, i)
    rng = np.random.default_rng([pop.seed, 8, i])
    d = _Draws(rng)
    em = Emitter(pop, i, cfg, st, origin_ms=start_ms)
    t = start_ms
    while True:
        path = city.staircase_route(rng, st.pos_xy, rng.lognormal(math.log(pop.errand_km[i] * 1000.0), 0.5))
        o = drive_trip(em, path, t, d)
        yield from trip_records(em, o)
        done, end, _ = finish_trip(em, o, d)
        yield from sorted(done, key=lambda e: e.ts_ms)
        st.traces.clear()
        if st.soc_pct < 15.0:  # battery swap / fast charge between trips, not simulated second by second
            st.soc_pct = float(pop.charge_to_pct[i])
        t = end + 1_000  # straight on: a parked gap would thin the stream and push timestamps past the clock
