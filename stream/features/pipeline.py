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
counted in ``Update.late_dropped``; so is a park state older than it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np

from stream.features import harsh
from stream.features.batch import Batch, States
from stream.features.cells import SPEED_BINS, CellTable, cells_of, speed_bin
from stream.features.outputs import CellCrashV1, CellVisitV1, DailyV1, TripV1
from stream.features.state import KEEP_DAYS, OpenTrip, OpenVisit, VehicleState
from stream.features.trips import TRIP_GAP_MS, segment, soc_at_start, trip_record
from stream.features.windows import COL, DAILY_SUMS, DAY_MS, ROW_SUMS, TZ_OFFSET_MS, local_day

UNSAFE_SPEED_KMH = 80.0
UNSAFE_HEADWAY_S = 1.0
SPEEDING_MARGIN = 1.10  # speeding: above the cell's limit proxy + 10 %
NIGHT_FROM_MS, NIGHT_TO_MS = 23 * 3_600_000, 4 * 3_600_000  # local time of day
_KEY_SHIFT = 41  # row key = vehicle index << 41 | ms since the batch's earliest time (69 years)
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
    late_dropped: int = 0

    def add(self, u: Update) -> Replay:
        self.states.update(u.states)
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


def _vehicle_index(vids: np.ndarray, ids: np.ndarray) -> np.ndarray:
    return np.searchsorted(vids, ids).astype(np.int64)


def _step(states: Mapping[str, VehicleState], batch: Batch, cells: CellTable, idle_close: bool) -> Update:
    dyn, st, al, cr = batch.dynamics, batch.states, batch.alarms, batch.crashes
    vids = np.unique(np.concatenate([dyn.vehicle_id, st.vehicle_id, al.vehicle_id, cr.vehicle_id]).astype(object))
    if len(vids) == 0:
        return Update()
    vs = [states.get(v) or VehicleState() for v in vids]
    nv = len(vs)
    last_ts = np.array([s.last_ts_ms for s in vs], np.int64)
    seen = np.array([s.seen_ts_ms for s in vs], np.int64)
    has_trip = np.array([s.trip is not None for s in vs], bool)

    # rows: carry rows of open trips, then this batch's dynamics not older than them
    dv = _vehicle_index(vids, dyn.vehicle_id)
    keep = dyn.ts_ms >= last_ts[dv]
    cv = np.flatnonzero(has_trip)
    carry = [vs[i] for i in cv]
    nc = len(cv)
    d = dyn.take(np.flatnonzero(keep))
    vidx = np.concatenate([cv, dv[keep]])
    ts = np.concatenate([last_ts[cv], d.ts_ms])
    is_carry = np.concatenate([np.ones(nc, bool), np.zeros(len(d), bool)])
    order = np.lexsort((~is_carry, ts, vidx))
    vidx, ts, is_carry = vidx[order], ts[order], is_carry[order]

    def rows(carried, new):
        return np.concatenate([np.asarray(carried, dtype=new.dtype), new])[order]

    speed = rows([s.last_speed_kmh for s in carry], d.speed_kmh)
    along = rows([s.brake_peak_mps2 or s.accel_peak_mps2 for s in carry], d.accel_long_mps2)
    alat = rows([s.turn_peak_mps2 for s in carry], d.accel_lat_mps2)
    fcw = rows([s.fcw_open for s in carry], d.fcw)
    cell = rows([s.visit.cell for s in carry], cells_of(d.lat, d.lon))
    power = rows(np.zeros(nc), d.motor_power_kw)
    headway = rows(np.full(nc, np.nan), d.headway_s)
    belt = rows(np.ones(nc, bool), d.seatbelt_driver)
    n = len(ts)

    # park / ignition-off states split trips; the row after a park starts a new trip
    sv = _vehicle_index(vids, st.vehicle_id)
    pk = st.parked & (st.ts_ms >= last_ts[sv])
    late = int((~keep).sum() + (st.parked & ~pk).sum())
    t0 = min(int(ts.min()) if n else 0, int(st.ts_ms.min()) if len(st) else 0)
    row_key = (vidx << _KEY_SHIFT) | (ts - t0)
    pv = sv[pk]
    pos = np.searchsorted(row_key, (pv << _KEY_SHIFT) | (st.ts_ms[pk] - t0), side="right")
    inside = pos < n
    inside[inside] = vidx[pos[inside]] == pv[inside]
    park_break = np.zeros(n, bool)
    park_break[pos[inside]] = True
    ends_parked = np.zeros(nv, bool)
    ends_parked[pv[~inside]] = True

    trip_start, seg = segment(vidx, ts, is_carry, park_break, ends_parked)
    dt_raw = np.diff(ts, prepend=ts[:1])
    drive_s = np.where(trip_start, 0, dt_raw) / 1000.0
    prev_speed = np.concatenate([speed[:1], speed[:-1]])
    time_of_day = (ts + TZ_OFFSET_MS) % DAY_MS
    night = (time_of_day >= NIGHT_FROM_MS) | (time_of_day < NIGHT_TO_MS)
    risk, limit = cells.lookup(cell)
    braking = along < -harsh.BRAKE_ENTRY_MPS2
    open_end = np.zeros(n, bool)
    open_end[seg.last[seg.is_open]] = True
    connected = ~trip_start & (dt_raw <= harsh.EPISODE_GAP_MS)
    h = harsh.harsh_columns(along, alat, fcw, connected, open_end, is_carry)
    contrib = np.column_stack([
        (prev_speed + speed) * 0.5 * drive_s / 3600.0,
        drive_s,
        drive_s * night,
        drive_s * (speed > SPEEDING_MARGIN * limit),
        drive_s * ((speed >= UNSAFE_SPEED_KMH) & (headway < UNSAFE_HEADWAY_S)),
        drive_s * ~belt,
        drive_s * braking,
        drive_s * (braking & (power < 0)),
        drive_s * risk,
        h.hard_brake_n,
        h.harsh_accel_n,
        h.harsh_turn_n,
        h.fcw_n,
    ]).reshape(n, len(ROW_SUMS))
    new_row = (~is_carry).astype(np.int64)

    out = Update(late_dropped=late)
    touched: set[tuple[int, int]] = set()

    def day_row(v: int, day: int) -> list[float]:
        touched.add((v, day))
        days = vs[v].days
        for row in reversed(days):
            if row[0] == day:
                return row
            if row[0] < day:
                break
        row = [float(day)] + [0.0] * len(DAILY_SUMS)
        days.append(row)
        days.sort(key=lambda r: r[0])
        return row

    # per-vehicle SOC readings (finite only: flush_idle's synthetic states have none)
    soc_ok = np.isfinite(st.soc_pct)
    soc_v, soc_ts, soc_val = sv[soc_ok], st.ts_ms[soc_ok], st.soc_pct[soc_ok]
    soc_order = np.lexsort((soc_ts, soc_v))
    soc_v, soc_ts, soc_val = soc_v[soc_order], soc_ts[soc_order], soc_val[soc_order]
    soc_key = (soc_v << _KEY_SHIFT) | (soc_ts - t0)

    def soc_around(v: int, t: int) -> tuple[tuple[float, int] | None, tuple[float, int] | None]:
        j = int(np.searchsorted(soc_key, (v << _KEY_SHIFT) | (t - t0), side="right"))
        before = (float(soc_val[j - 1]), int(soc_ts[j - 1])) if j > 0 and soc_v[j - 1] == v else None
        s = vs[v]
        if s.soc_pct is not None and s.soc_ts_ms <= t and (before is None or s.soc_ts_ms > before[1]):
            before = (s.soc_pct, s.soc_ts_ms)
        after = (float(soc_val[j]), int(soc_ts[j])) if j < len(soc_v) and soc_v[j] == v else None
        return before, after

    seen_new = seen.copy()
    for v_arr, t_arr in ((vidx, ts), (sv, st.ts_ms), (_vehicle_index(vids, al.vehicle_id), al.ts_ms),
                         (_vehicle_index(vids, cr.vehicle_id), cr.ts_ms)):
        np.maximum.at(seen_new, v_arr, t_arr)
    for v in range(nv):
        vs[v].seen_ts_ms = int(seen_new[v])

    if n:
        trip_sums = np.add.reduceat(contrib, seg.first, axis=0)
        samples = np.add.reduceat(new_row, seg.first)
        max_speed = np.maximum.reduceat(speed, seg.first)
        for k in range(len(seg.first)):
            v, first = int(seg.vidx[k]), int(seg.first[k])
            s = vs[v]
            if seg.continues[k]:
                trip = s.trip
                trip.sums = (np.asarray(trip.sums) + trip_sums[k]).tolist()
                trip.samples_n += int(samples[k])
                trip.max_speed_kmh = max(trip.max_speed_kmh, float(max_speed[k]))
                soc_at_start(trip.start_ts_ms, None, soc_around(v, trip.start_ts_ms)[1], trip)
            else:
                trip = OpenTrip(int(ts[first]), trip_sums[k].tolist(), int(samples[k]), float(max_speed[k]))
                soc_at_start(trip.start_ts_ms, *soc_around(v, trip.start_ts_ms), trip)
            if seg.is_open[k]:
                s.trip = trip
                continue
            s.trip = None
            rec = trip_record(str(vids[v]), trip, int(ts[seg.last[k]]), bool(seg.parked[k]) and not idle_close,
                              s.seen_ts_ms)
            out.trips.append(rec)
            row = day_row(v, local_day(trip.start_ts_ms))
            row[1 + COL["trips_n"]] += 1
            if rec.soc_start_pct is not None:
                row[1 + COL["soc_start_sum_pct"]] += rec.soc_start_pct
                row[1 + COL["soc_start_n"]] += 1

        # what the next batch must continue from: each vehicle's last row
        last_rows = seg.last[np.append(seg.vidx[1:] != seg.vidx[:-1], True)]
        for r in last_rows:
            s = vs[vidx[r]]
            s.last_ts_ms, s.last_speed_kmh = int(ts[r]), float(speed[r])
            if s.trip is None:
                s.brake_peak_mps2 = s.accel_peak_mps2 = s.turn_peak_mps2 = 0.0
                s.fcw_open = False
            else:
                s.brake_peak_mps2, s.accel_peak_mps2 = float(h.brake_peak_mps2[r]), float(h.accel_peak_mps2[r])
                s.turn_peak_mps2, s.fcw_open = float(h.turn_peak_mps2[r]), bool(fcw[r])

        _visits(vids, vs, out, contrib, new_row, trip_start, seg, is_carry, cell, ts, speed, drive_s)

        day = local_day(ts)
        gkey = (vidx << 20) | day
        gfirst = np.flatnonzero(np.diff(gkey, prepend=gkey[0] - 1) != 0)
        day_sums = np.add.reduceat(contrib, gfirst, axis=0)
        for g, r in enumerate(gfirst):
            if day_sums[g].any():
                row = day_row(int(vidx[r]), int(day[r]))
                row[1: 1 + len(ROW_SUMS)] = (np.asarray(row[1: 1 + len(ROW_SUMS)]) + day_sums[g]).tolist()

    # latest SOC reading per vehicle, after the trips used the earlier ones
    for j in range(len(soc_v)):
        s = vs[soc_v[j]]
        if j + 1 == len(soc_v) or soc_v[j + 1] != soc_v[j]:
            if s.soc_pct is None or soc_ts[j] >= s.soc_ts_ms:
                s.soc_pct, s.soc_ts_ms = float(soc_val[j]), int(soc_ts[j])

    for v, t in zip(_vehicle_index(vids, al.vehicle_id), al.ts_ms):
        day_row(int(v), int(local_day(t)))[1 + COL["thermal_alarm_n"]] += 1
    crash_cells = cells_of(cr.lat, cr.lon)
    for v, t, eid, c in zip(_vehicle_index(vids, cr.vehicle_id), cr.ts_ms, cr.event_id, crash_cells):
        day_row(int(v), int(local_day(t)))[1 + COL["crash_n"]] += 1
        out.crashes.append(CellCrashV1(event_id=str(eid), vehicle_id=str(vids[v]), ts_ms=int(t), cell=int(c)))

    for v, day in sorted(touched):
        s = vs[v]
        row = next(r for r in s.days if r[0] == day)
        out.daily.append(DailyV1(vehicle_id=str(vids[v]), day=day, version_ts_ms=s.seen_ts_ms,
                                 **dict(zip(DAILY_SUMS, row[1:], strict=True))))
    for s in vs:
        if s.days:
            s.days = [r for r in s.days if r[0] > s.days[-1][0] - KEEP_DAYS]
    out.states = dict(zip(vids.tolist(), vs, strict=True))
    return out


def _visits(vids, vs, out: Update, contrib, new_row, trip_start, seg, is_carry, cell, ts, speed, drive_s) -> None:
    """Cell visits: runs of rows in one cell within one trip; emit each one touched."""
    start = trip_start | np.concatenate([[True], cell[1:] != cell[:-1]])
    first = np.flatnonzero(start)
    visit_id = np.cumsum(start) - 1
    sums = np.add.reduceat(contrib, first, axis=0)
    new_rows = np.add.reduceat(new_row, first)
    hist = np.bincount(visit_id * SPEED_BINS + speed_bin(speed), weights=drive_s,
                       minlength=len(first) * SPEED_BINS).reshape(len(first), SPEED_BINS)
    trip_of = (np.cumsum(trip_start) - 1)[first]
    last_in_trip = np.append(trip_of[1:] != trip_of[:-1], True)
    still_open = last_in_trip & seg.is_open[trip_of]
    vidx_of_visit = seg.vidx[trip_of]
    for j, r in enumerate(first):
        s = vs[vidx_of_visit[j]]
        if is_carry[r]:
            visit = s.visit
            visit.sums = (np.asarray(visit.sums) + sums[j]).tolist()
            visit.speed_hist_s = (np.asarray(visit.speed_hist_s) + hist[j]).tolist()
        else:
            visit = OpenVisit(int(cell[r]), int(ts[r]), sums[j].tolist(), hist[j].tolist())
        s.visit = visit if still_open[j] else None
        if new_rows[j] or sums[j].any():
            v = visit.sums
            out.visits.append(CellVisitV1(
                vehicle_id=str(vids[vidx_of_visit[j]]), cell=visit.cell, day=int((visit.start_ts_ms + TZ_OFFSET_MS) // DAY_MS),
                start_ts_ms=visit.start_ts_ms, distance_km=v[COL["distance_km"]], driving_s=v[COL["driving_s"]],
                hard_brake_n=v[COL["hard_brake_n"]], harsh_accel_n=v[COL["harsh_accel_n"]],
                harsh_turn_n=v[COL["harsh_turn_n"]], speed_hist_s=visit.speed_hist_s, version_ts_ms=s.seen_ts_ms))
