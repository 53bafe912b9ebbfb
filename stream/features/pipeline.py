"""The streaming feature step: one call per batch, numpy per event, Python per vehicle.

``update(states, batch, cells)`` takes the batch's records (``Batch``) and the stored
``VehicleState`` of the vehicles in it, and returns the new states plus every row to
emit: closed trips, touched daily rows, touched cell visits, located crashes.
``flush_idle(states, now_ms)`` closes trips that saw no dynamics for 5 min of event
time. ``features_offline(batch)`` is the same computation over a whole history at once.

How a batch is processed: every vehicle with an open trip gets one *carry row*
(its last sample's time and speed, and the peaks of its open harsh episodes) placed
before its new rows; rows are sorted by (vehicle, time); trips, episodes and cell
visits are runs of rows, found and summed with numpy; the carry row makes runs
continue across batches exactly as if the batch boundary were not there.

Ordering: records may arrive in any order inside a batch. A dynamics record older
than the vehicle's last processed sample (from an earlier batch) is dropped and
counted in ``Update.late_dropped``; so is a park state older than it, and anything
for a day already handed over as final (more than a day late).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np

from stream.features import harsh
from stream.features.batch import Batch, Dynamics, States
from stream.features.cells import SPEED_BINS, CellTable, speed_bin
from stream.features.outputs import CellCrashV1, CellVisitV1, DailyV1, TripV1
from stream.features.state import HOT_DAYS, OpenTrip, OpenVisit, VehicleState, merge_history
from stream.features.trips import TRIP_GAP_MS, segment, soc_at_start, trip_record
from stream.features.windows import (
    COL,
    DAILY_SUMS,
    DAY_MS,
    ROW_SUMS,
    TZ_OFFSET_MS,
    local_day,
    vehicle_features_from_daily,
)

UNSAFE_SPEED_KMH = 80.0
UNSAFE_HEADWAY_S = 1.0
SPEEDING_MARGIN = 1.10  # speeding: above the cell's limit proxy + 10 %
NIGHT_FROM_MS, NIGHT_TO_MS = 23 * 3_600_000, 4 * 3_600_000  # local time of day
_KEY_SHIFT = 41  # sort keys: vehicle index * 2**41 + ms since the batch start (see _key)
_NO_CELLS = CellTable.empty()


@dataclass
class Update:
    """What one call produced. ``states``: every vehicle touched, to persist.
    Rows are cumulative (latest ``version_ts_ms`` wins), except trips and crashes."""

    states: dict[str, VehicleState] = field(default_factory=dict)
    trips: list[TripV1] = field(default_factory=list)
    daily: list[DailyV1] = field(default_factory=list)
    visits: list[CellVisitV1] = field(default_factory=list)
    crashes: list[CellCrashV1] = field(default_factory=list)
    closed_days: dict[str, list[list[float]]] = field(default_factory=dict)  # final rows to add to the history
    late_dropped: int = 0


def update(states: Mapping[str, VehicleState], batch: Batch, cells: CellTable | None = None) -> Update:
    """Advance the vehicles of ``batch`` by one batch. ``states`` maps vehicle id to its
    stored state (missing = new vehicle); the given state objects are updated in place
    and returned in ``Update.states``. ``cells`` is the current cell table snapshot."""
    return _step(states, batch, cells or _NO_CELLS, idle_close=False)


def flush_idle(states: Mapping[str, VehicleState], now_ms: int, cells: CellTable | None = None) -> Update:
    """Close the open trips whose last sample is more than 5 min before ``now_ms``
    (the partition's event-time watermark), as a later sample would have. Call it
    on a timer with the states of vehicles that may have stopped."""
    idle = [v for v, s in states.items() if s.trip is not None and s.last_ts_ms < now_ms - TRIP_GAP_MS]
    if not idle:
        return Update()
    n = len(idle)
    close = States(vehicle_id=np.array(idle, object), ts_ms=np.full(n, now_ms, np.int64),
                   soc_pct=np.full(n, np.nan), parked=np.ones(n, bool))
    return _step({v: states[v] for v in idle}, Batch.of(states=close), cells or _NO_CELLS, idle_close=True)


@dataclass
class Replay:
    """The final rows of a sequence of updates, as the warehouse keeps them
    (latest version per key): what an offline computation and the stream must agree on."""

    states: dict[str, VehicleState] = field(default_factory=dict)
    trips: dict[tuple[str, int], TripV1] = field(default_factory=dict)
    daily: dict[tuple[str, int], DailyV1] = field(default_factory=dict)
    visits: dict[tuple[str, int, int], CellVisitV1] = field(default_factory=dict)
    crashes: dict[str, CellCrashV1] = field(default_factory=dict)
    history: dict[str, list[list[float]]] = field(default_factory=dict)
    late_dropped: int = 0

    def add(self, u: Update) -> Replay:
        self.states.update(u.states)
        for v, closed in u.closed_days.items():
            self.history[v] = merge_history(self.history.get(v, []), closed)
        self.trips.update({(t.vehicle_id, t.start_ts_ms): t for t in u.trips})
        self.daily.update({(d.vehicle_id, d.day): d for d in u.daily})
        self.visits.update({(c.vehicle_id, c.cell, c.start_ts_ms): c for c in u.visits})
        self.crashes.update({c.event_id: c for c in u.crashes})
        self.late_dropped += u.late_dropped
        return self


def features_offline(batch: Batch, cells: CellTable | None = None, end_ms: int | None = None) -> Replay:
    """All of a history at once (training, backfill): one update over every record,
    then every trip closed as of ``end_ms`` (default: after the last record)."""
    out = Replay().add(update({}, batch, cells))
    end = end_ms if end_ms is not None else max((s.seen_ts_ms for s in out.states.values()), default=0) + TRIP_GAP_MS + 1
    return out.add(flush_idle(out.states, end, cells))


def vehicle_features_from_states(states: Mapping[str, VehicleState], as_of_day: int,
                                 history: Mapping[str, list[list[float]]] | None = None) -> dict[str, np.ndarray]:
    """Serving path: window features of these vehicles from their final daily rows
    (``history``, what ``Update.closed_days`` handed over) and the hot rows their
    states keep: the same function as training, over the same rows."""
    history = history or {}
    per_vehicle = {v: history.get(v, []) + s.days for v, s in states.items()}
    owners = [v for v, rows in per_vehicle.items() for _ in rows]
    table = np.array([r for rows in per_vehicle.values() for r in rows], np.float64).reshape(len(owners), 1 + len(DAILY_SUMS))
    daily = {"vehicle_id": np.array(owners, object), "day": table[:, 0].astype(np.int64)}
    daily.update({c: table[:, 1 + i] for i, c in enumerate(DAILY_SUMS)})
    return vehicle_features_from_daily(daily, as_of_day)


def _vehicle_index(vids: np.ndarray, ids: np.ndarray) -> np.ndarray:
    return np.searchsorted(vids, ids).astype(np.int64)


def _key(vidx, ts_ms, t0: int):
    """Sort key of (vehicle, time): vehicle index * 2**41 + ms from ``t0`` (±34 years)."""
    return vidx * (1 << _KEY_SHIFT) + (ts_ms - t0)


@dataclass
class _Rows:
    """The batch's dynamics rows plus one carry row per open trip, sorted by
    (vehicle, time), carry row first."""

    vidx: np.ndarray
    ts: np.ndarray
    is_carry: np.ndarray
    speed: np.ndarray
    along: np.ndarray
    alat: np.ndarray
    fcw: np.ndarray
    cell: np.ndarray
    power: np.ndarray
    headway: np.ndarray
    belt: np.ndarray
    late: int

    @classmethod
    def build(cls, vids: np.ndarray, vs: list[VehicleState], dyn: Dynamics) -> _Rows:
        last_ts = np.array([s.last_ts_ms for s in vs], np.int64)
        dv = _vehicle_index(vids, dyn.vehicle_id)
        keep = dyn.ts_ms >= last_ts[dv]
        d = dyn.take(np.flatnonzero(keep))
        cv = np.flatnonzero([s.trip is not None for s in vs]).astype(np.int64)
        carry = [vs[i] for i in cv]
        nc = len(cv)
        vidx = np.concatenate([cv, dv[keep]])
        ts = np.concatenate([last_ts[cv], d.ts_ms])
        is_carry = np.concatenate([np.ones(nc, bool), np.zeros(len(d), bool)])
        order = np.lexsort((~is_carry, ts, vidx))

        def col(carried, new):
            return np.concatenate([np.asarray(carried, dtype=new.dtype), new])[order]

        return cls(
            vidx=vidx[order], ts=ts[order], is_carry=is_carry[order],
            speed=col([s.last_speed_kmh for s in carry], d.speed_kmh),
            along=col([s.brake_peak_mps2 or s.accel_peak_mps2 for s in carry], d.accel_long_mps2),
            alat=col([s.turn_peak_mps2 for s in carry], d.accel_lat_mps2),
            fcw=col([s.fcw_open for s in carry], d.fcw),
            cell=col([s.visit.cell for s in carry], d.cell),
            power=col(np.zeros(nc), d.motor_power_kw),
            headway=col(np.full(nc, np.nan), d.headway_s),
            belt=col(np.ones(nc, bool), d.seatbelt_driver),
            late=int((~keep).sum()),
        )


def _park_breaks(r: _Rows, sv: np.ndarray, st, last_ts: np.ndarray, nv: int, t0: int):
    """Park / ignition-off states: the row after one starts a new trip; one after a
    vehicle's last row ends its open trip. Park states older than the vehicle's last
    processed sample are late (returned count)."""
    ok = st.parked & (st.ts_ms >= last_ts[sv])
    pv = sv[ok]
    n = len(r.ts)
    pos = np.searchsorted(_key(r.vidx, r.ts, t0), _key(pv, st.ts_ms[ok], t0), side="right")
    inside = pos < n
    inside[inside] = r.vidx[pos[inside]] == pv[inside]
    park_break = np.zeros(n, bool)
    park_break[pos[inside]] = True
    ends_parked = np.zeros(nv, bool)
    ends_parked[pv[~inside]] = True
    return park_break, ends_parked, int((st.parked & ~ok).sum())


def _contributions(r: _Rows, trip_start: np.ndarray, seg, cells: CellTable):
    """Per row, the additive ``ROW_SUMS`` columns (rows × 13) and the harsh columns."""
    dt_ms = np.diff(r.ts, prepend=r.ts[:1])
    drive_s = np.where(trip_start, 0, dt_ms) / 1000.0
    prev_speed = np.concatenate([r.speed[:1], r.speed[:-1]])
    time_of_day = (r.ts + TZ_OFFSET_MS) % DAY_MS
    night = (time_of_day >= NIGHT_FROM_MS) | (time_of_day < NIGHT_TO_MS)
    risk, limit = cells.lookup(r.cell)
    braking = r.along < -harsh.BRAKE_ENTRY_MPS2
    open_end = np.zeros(len(r.ts), bool)
    open_end[seg.last[seg.is_open]] = True
    connected = ~trip_start & (dt_ms <= harsh.EPISODE_GAP_MS)
    h = harsh.harsh_columns(r.along, r.alat, r.fcw, connected, open_end, r.is_carry)
    contrib = np.column_stack([
        (prev_speed + r.speed) * 0.5 * drive_s / 3600.0,
        drive_s,
        drive_s * night,
        drive_s * (r.speed > SPEEDING_MARGIN * limit),
        drive_s * ((r.speed >= UNSAFE_SPEED_KMH) & (r.headway < UNSAFE_HEADWAY_S)),
        drive_s * ~r.belt,
        drive_s * braking,
        drive_s * (braking & (r.power < 0)),
        drive_s * risk,
        h.hard_brake_n,
        h.harsh_accel_n,
        h.harsh_turn_n,
        h.fcw_n,
    ]).reshape(len(r.ts), len(ROW_SUMS))
    return contrib, drive_s, h


class _Days:
    """The touched vehicles' hot daily rows ([day, *DAILY_SUMS], kept in the states)."""

    def __init__(self, vs: list[VehicleState]) -> None:
        self.vs = vs
        self.touched: set[tuple[int, int]] = set()
        self.late = 0  # contributions to days already final (more than a day late)

    def row(self, v: int, day: int) -> list[float] | None:
        s = self.vs[v]
        if day <= s.shipped_day:
            self.late += 1
            return None
        self.touched.add((v, day))
        for row in reversed(s.days):
            if row[0] == day:
                return row
            if row[0] < day:
                break
        row = [float(day)] + [0.0] * len(DAILY_SUMS)
        s.days.append(row)
        s.days.sort(key=lambda x: x[0])
        return row

    def add(self, v: int, day: int, col: str, value: float) -> None:
        row = self.row(v, day)
        if row is not None:
            row[1 + COL[col]] += value

    def add_sums(self, v: int, day: int, sums: np.ndarray) -> None:
        row = self.row(v, day)
        if row is not None:
            row[1: 1 + len(sums)] = (np.asarray(row[1: 1 + len(sums)]) + sums).tolist()

    def emit(self, vids: np.ndarray, out: Update) -> None:
        """Touched rows as ``DailyV1``; rows older than the hot days move to ``closed_days``."""
        for v, day in sorted(self.touched):
            s = self.vs[v]
            row = next(r for r in s.days if r[0] == day)
            out.daily.append(DailyV1(vehicle_id=str(vids[v]), day=day, version_ts_ms=s.seen_ts_ms,
                                     **dict(zip(DAILY_SUMS, row[1:], strict=True))))
        for v, s in enumerate(self.vs):
            oldest_hot = s.days[-1][0] - (HOT_DAYS - 1) if s.days else 0
            if s.days and s.days[0][0] < oldest_hot:
                out.closed_days[str(vids[v])] = [r for r in s.days if r[0] < oldest_hot]
                s.shipped_day = int(oldest_hot) - 1
                s.days = [r for r in s.days if r[0] >= oldest_hot]
        out.late_dropped += self.late


class _Soc:
    """The batch's SOC readings, sorted by (vehicle, time), for trip-start lookups."""

    def __init__(self, sv: np.ndarray, st, t0: int) -> None:
        ok = np.isfinite(st.soc_pct)  # flush_idle's synthetic park states carry none
        v, ts, val = sv[ok], st.ts_ms[ok], st.soc_pct[ok]
        order = np.lexsort((ts, v))
        self.v, self.ts, self.val, self.t0 = v[order], ts[order], val[order], t0
        self.key = _key(self.v, self.ts, t0)

    def around(self, v: int, t: int, stored: VehicleState):
        """(latest reading at or before t, first reading after t), as (soc, ts) or None."""
        j = int(np.searchsorted(self.key, _key(v, t, self.t0), side="right"))
        before = (float(self.val[j - 1]), int(self.ts[j - 1])) if j > 0 and self.v[j - 1] == v else None
        if stored.soc_pct is not None and stored.soc_ts_ms <= t and (before is None or stored.soc_ts_ms > before[1]):
            before = (stored.soc_pct, stored.soc_ts_ms)
        after = (float(self.val[j]), int(self.ts[j])) if j < len(self.v) and self.v[j] == v else None
        return before, after

    def keep_latest(self, vs: list[VehicleState]) -> None:
        last = np.flatnonzero(np.append(self.v[1:] != self.v[:-1], True)) if len(self.v) else []
        for j in last:
            s = vs[self.v[j]]
            if s.soc_pct is None or self.ts[j] >= s.soc_ts_ms:
                s.soc_pct, s.soc_ts_ms = float(self.val[j]), int(self.ts[j])


def _step(states: Mapping[str, VehicleState], batch: Batch, cells: CellTable, idle_close: bool) -> Update:
    dyn, st, al, cr = batch.dynamics, batch.states, batch.alarms, batch.crashes
    vids = np.array(batch.vehicle_ids(), object)
    if len(vids) == 0:
        return Update()
    vs = [states.get(v) or VehicleState() for v in vids]
    last_ts = np.array([s.last_ts_ms for s in vs], np.int64)
    sv, av, kv = (_vehicle_index(vids, x.vehicle_id) for x in (st, al, cr))
    r = _Rows.build(vids, vs, dyn)
    times = np.concatenate([r.ts, st.ts_ms])
    t0 = int(times.min()) if len(times) else 0
    park_break, ends_parked, late_parks = _park_breaks(r, sv, st, last_ts, len(vids), t0)
    trip_start, seg = segment(r.vidx, r.ts, r.is_carry, park_break, ends_parked)
    out = Update(late_dropped=r.late + late_parks)
    days, soc = _Days(vs), _Soc(sv, st, t0)

    seen = np.array([s.seen_ts_ms for s in vs], np.int64)
    for v_arr, t_arr in ((r.vidx, r.ts), (sv, st.ts_ms), (av, al.ts_ms), (kv, cr.ts_ms)):
        np.maximum.at(seen, v_arr, t_arr)
    for s, t in zip(vs, seen.tolist()):
        s.seen_ts_ms = t

    if len(r.ts):
        contrib, drive_s, h = _contributions(r, trip_start, seg, cells)
        _trips(vids, vs, out, days, soc, r, seg, contrib, idle_close)
        _carry_out(vs, r, seg, h)
        _visits(vids, vs, out, r, contrib, trip_start, seg, drive_s)
        day = local_day(r.ts)
        group = _key(r.vidx, day, 0)
        first = np.flatnonzero(np.diff(group, prepend=group[0] - 1) != 0)
        for g, sums in zip(first, np.add.reduceat(contrib, first, axis=0)):
            if sums.any():
                days.add_sums(int(r.vidx[g]), int(day[g]), sums)

    soc.keep_latest(vs)  # after the trips looked up the earlier readings
    for v, t in zip(av, al.ts_ms):
        days.add(int(v), int(local_day(t)), "thermal_alarm_n", 1.0)
    for v, t, eid, c in zip(kv, cr.ts_ms, cr.event_id, cr.cell):
        days.add(int(v), int(local_day(t)), "crash_n", 1.0)
        out.crashes.append(CellCrashV1(event_id=str(eid), vehicle_id=str(vids[v]), ts_ms=int(t), cell=int(c)))
    days.emit(vids, out)
    out.states = dict(zip(vids.tolist(), vs, strict=True))
    return out


def _trips(vids, vs, out: Update, days: _Days, soc: _Soc, r: _Rows, seg, contrib, idle_close: bool) -> None:
    """Extend or open each trip of the batch; close and emit the finished ones."""
    sums = np.add.reduceat(contrib, seg.first, axis=0)
    samples = np.add.reduceat((~r.is_carry).astype(np.int64), seg.first)
    max_speed = np.maximum.reduceat(r.speed, seg.first)
    for k in range(len(seg.first)):
        v = int(seg.vidx[k])
        s = vs[v]
        if seg.continues[k]:
            trip = s.trip
            trip.sums = (np.asarray(trip.sums) + sums[k]).tolist()
            trip.samples_n += int(samples[k])
            trip.max_speed_kmh = max(trip.max_speed_kmh, float(max_speed[k]))
            soc_at_start(trip.start_ts_ms, None, soc.around(v, trip.start_ts_ms, s)[1], trip)
        else:
            trip = OpenTrip(int(r.ts[seg.first[k]]), sums[k].tolist(), int(samples[k]), float(max_speed[k]))
            soc_at_start(trip.start_ts_ms, *soc.around(v, trip.start_ts_ms, s), trip)
        s.trip = trip if seg.is_open[k] else None
        if s.trip is None:
            rec = trip_record(str(vids[v]), trip, int(r.ts[seg.last[k]]), bool(seg.parked[k]) and not idle_close,
                              s.seen_ts_ms)
            out.trips.append(rec)
            start_day = local_day(trip.start_ts_ms)
            days.add(v, start_day, "trips_n", 1.0)
            if rec.soc_start_pct is not None:
                days.add(v, start_day, "soc_start_sum_pct", rec.soc_start_pct)
                days.add(v, start_day, "soc_start_n", 1.0)


def _carry_out(vs: list[VehicleState], r: _Rows, seg, h) -> None:
    """What the next batch continues from: each vehicle's last row and open episodes."""
    for i in seg.last[np.append(seg.vidx[1:] != seg.vidx[:-1], True)]:
        s = vs[r.vidx[i]]
        s.last_ts_ms, s.last_speed_kmh = int(r.ts[i]), float(r.speed[i])
        running = s.trip is not None
        s.brake_peak_mps2 = float(h.brake_peak_mps2[i]) if running else 0.0
        s.accel_peak_mps2 = float(h.accel_peak_mps2[i]) if running else 0.0
        s.turn_peak_mps2 = float(h.turn_peak_mps2[i]) if running else 0.0
        s.fcw_open = bool(r.fcw[i]) and running


def _visits(vids, vs, out: Update, r: _Rows, contrib, trip_start, seg, drive_s) -> None:
    """Cell visits: runs of rows in one cell within one trip; emit each one that changed."""
    start = trip_start | np.concatenate([[True], r.cell[1:] != r.cell[:-1]])
    first = np.flatnonzero(start)
    visit_id = np.cumsum(start) - 1
    sums = np.add.reduceat(contrib, first, axis=0)
    new_rows = np.add.reduceat((~r.is_carry).astype(np.int64), first)
    hist = np.bincount(visit_id * SPEED_BINS + speed_bin(r.speed), weights=drive_s,
                       minlength=len(first) * SPEED_BINS).reshape(len(first), SPEED_BINS)
    trip_of = (np.cumsum(trip_start) - 1)[first]
    still_open = np.append(trip_of[1:] != trip_of[:-1], True) & seg.is_open[trip_of]
    for j, i in enumerate(first):
        v = int(seg.vidx[trip_of[j]])
        s = vs[v]
        if r.is_carry[i]:
            visit = s.visit
            visit.sums = (np.asarray(visit.sums) + sums[j]).tolist()
            visit.speed_hist_s = (np.asarray(visit.speed_hist_s) + hist[j]).tolist()
        else:
            visit = OpenVisit(int(r.cell[i]), int(r.ts[i]), sums[j].tolist(), hist[j].tolist())
        s.visit = visit if still_open[j] else None
        if new_rows[j] or sums[j].any():
            t = visit.sums
            out.visits.append(CellVisitV1(
                vehicle_id=str(vids[v]), cell=visit.cell, day=int(local_day(visit.start_ts_ms)),
                start_ts_ms=visit.start_ts_ms, distance_km=t[COL["distance_km"]], driving_s=t[COL["driving_s"]],
                hard_brake_n=t[COL["hard_brake_n"]], harsh_accel_n=t[COL["harsh_accel_n"]],
                harsh_turn_n=t[COL["harsh_turn_n"]], speed_hist_s=visit.speed_hist_s, version_ts_ms=s.seen_ts_ms))
