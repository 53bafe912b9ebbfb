"""Telemetry around a claimed loss, read from the warehouse for the live fraud agent.

What the insured vehicle's state, dynamics and crash records within ±10 min of the
claimed loss time say about a claim, over the read-only endpoint or a server, one
parameterised query per table for up to ``CLAIMS_PER_QUERY`` claims:

- ``facts_for`` (what the agent uses): the warehouse aggregates each claim's window
  (in the claimed cell, nearest position, the records nearest the loss time, the
  hardest impact) and only those few values, and the rare crash pulses, come back,
  to ``fraudring.verify.facts_from_window``. A window at 10 Hz holds ~12,000 rows.
- ``records_for``: the window's records themselves, for ``facts_from_telemetry``, the
  definition the aggregates are tested against.

Raw positions expire (``raw_position_ttl_days``, 30 by default: the table then holds
0, 0) while each row's H3 cell stays; a claim reported or re-read after that is judged
on the cells, a row's position taken as its cell's centre. Without it, every such row
was "12,956 km from the claimed place" (the distance to 0° N 0° E) and not in the cell.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import replace
from operator import attrgetter
from typing import Any

import msgspec

from fraudring.verify import (IMPACT_ACCEL_MPS2, NO_TELEMATICS, PARKED_LOOKBACK_MS, WINDOW_MS, TelematicsFacts,
                              facts_from_window, facts_parked_at, impact_delta_v, near_cells, parked)
from stream.features.cells import cell_centre
from stream.records import CrashV1, DynamicsV1, FnolV1, StateV1

# claims whose windows one query reads: three queries a chunk, not three a claim (a
# backlog of claims after an outage was read at ~40 claims/s one by one); a chunk's
# parameters are a few kB, which clickhouse-connect sends in the body past 4 KiB
CLAIMS_PER_QUERY = 100
_TS = attrgetter("ts_ms")
_TABLES = (("telemetry_state", StateV1), ("telemetry_dynamics", DynamicsV1), ("telemetry_crash", CrashV1))


def party_vehicle(claim: FnolV1, role: str = "insured") -> str | None:
    """The (pseudonymous) vehicle id of the claim's party in ``role``, if it names one."""
    return next((p.vehicle_id for p in claim.parties if p.role == role and p.vehicle_id), None)


def stored_position(lat: float, lon: float, cell: int) -> tuple[float, float]:
    """A stored row's position: its own, or, once the raw position expired (the table
    gives 0, 0 where a cell was stored), its cell's centre."""
    return cell_centre(cell) if lat == 0.0 and lon == 0.0 and cell else (lat, lon)


class WarehouseTelemetry:
    """``connect`` makes the ClickHouse client, on first use and again after a failed
    read, so a worker starts while the warehouse is away and reconnects when it is back."""

    def __init__(self, connect: Callable[[], Any]):
        self._connect = connect
        self._client = None

    @property
    def client(self):
        if self._client is None:
            self._client = self._connect()
        return self._client

    def records_for(self, claims: Sequence[FnolV1], role: str = "insured", before_ms: int = WINDOW_MS) -> dict[str, list]:
        """claim id -> the records of the vehicle of its party in ``role`` from ``before_ms``
        before the loss to 10 min after (claims without one are left out: for the insured,
        judged ``no_telematics``). A failed read drops the client, to connect again on
        the next call."""
        try:
            return self._records_for(claims, role, before_ms)
        except Exception:
            self._client = None
            raise

    def _records_for(self, claims: Sequence[FnolV1], role: str, before_ms: int) -> dict[str, list]:
        wanted = [(claim, vid) for claim in claims if (vid := party_vehicle(claim, role)) is not None]
        out: dict[str, list] = {claim.claim_id: [] for claim, _ in wanted}
        for i in range(0, len(wanted), CLAIMS_PER_QUERY):
            self._read_windows(wanted[i:i + CLAIMS_PER_QUERY], out, before_ms)
        for recs in out.values():
            recs.sort(key=_TS)  # stable: a state, then dynamics, then a crash at one instant
        return out

    def _read_windows(self, part: Sequence[tuple[FnolV1, str]], out: dict[str, list], before_ms: int) -> None:
        """One query per table for a chunk of claims: the OR of their (vehicle, time window)
        ranges, which the tables' sort key (vehicle_id, ts_ms, ...) reads range by range;
        each row goes to every claim of its vehicle whose window holds it."""
        windows: dict[str, list[tuple[int, int, str]]] = defaultdict(list)
        params: dict[str, object] = {}
        for k, (claim, vid) in enumerate(part):
            a, b = claim.loss_ts_ms - before_ms, claim.loss_ts_ms + WINDOW_MS
            windows[vid].append((a, b, claim.claim_id))
            params.update({f"v{k}": vid, f"a{k}": a, f"b{k}": b})
        where = " OR ".join(f"(vehicle_id = {{v{k}:String}} AND ts_ms BETWEEN {{a{k}:Int64}} AND {{b{k}:Int64}})"
                            for k in range(len(part)))
        for table, typ in _TABLES:
            cols = typ.__struct_fields__
            res = self.client.query(
                f"SELECT vehicle_id, h3_r8, {', '.join(cols)} FROM {table} FINAL WHERE {where} ORDER BY vehicle_id, ts_ms",
                parameters=params,
            )
            for vid, cell, *values in res.result_rows:
                row = dict(zip(cols, values))
                row["lat"], row["lon"] = stored_position(row["lat"], row["lon"], cell)
                rec = _record(typ, row)
                for a, b, claim_id in windows[vid]:
                    if a <= rec.ts_ms <= b:
                        out[claim_id].append(rec)

    def facts_for(self, claims: Sequence[FnolV1]) -> dict[str, TelematicsFacts]:
        """claim id -> what the telemetry around its loss says, aggregated in the warehouse:
        ``facts_from_telemetry`` of the insured vehicle's ``records_for``, with
        ``third_party_in_cell`` of the third party's when that vehicle is ours too (it
        sent telemetry in the window). Claims with neither are left out (judged
        ``no_telematics``). A failed read drops the client, as ``records_for``."""
        try:
            out: dict[str, TelematicsFacts] = {}
            third: dict[str, bool] = {}
            for i in range(0, len(claims), CLAIMS_PER_QUERY):  # a chunk's queries read both parties' windows
                part = [(claim, vid, role) for claim in claims[i:i + CLAIMS_PER_QUERY]
                        for role in ("insured", "third_party") if (vid := party_vehicle(claim, role)) is not None]
                if not part:
                    continue
                for (claim, _, role), facts in zip(part, self._window_facts(part)):
                    if role == "insured":
                        out[claim.claim_id] = facts
                    elif facts.telematics_available:
                        third[claim.claim_id] = facts.insured_in_cell  # the third party's own window
            for cid, in_cell in third.items():
                out[cid] = replace(out.get(cid, NO_TELEMATICS), third_party_in_cell=in_cell)
            return out
        except Exception:
            self._client = None
            raise

    def _window_facts(self, part: Sequence[tuple[FnolV1, str, str]]) -> list[TelematicsFacts]:
        """The facts of each (claim, vehicle, role) of a chunk, as if that vehicle were the
        insured: per table one query joining its rows to the chunk's windows (a row can be
        in the windows of several claims of its vehicle) and aggregating them per window;
        a fourth, dynamics, query for the samples around an impact the insured vehicle
        had without a crash pulse."""
        # the vehicle ids are parameters; the numbers, ours, are written into the query (a
        # parameter is a form field, and the read-only endpoint takes at most 1,000)
        params = {f"v{k}": vid for k, (_, vid, _) in enumerate(part)}
        window = {k: (claim.loss_ts_ms - WINDOW_MS, claim.loss_ts_ms + WINDOW_MS) for k, (claim, _, _) in enumerate(part)}
        # before the window, where a parked car's last record is looked for
        lookback = {k: (claim.loss_ts_ms - PARKED_LOOKBACK_MS, claim.loss_ts_ms - WINDOW_MS - 1)
                    for k, (claim, _, _) in enumerate(part)}
        table_of = {k: f"toInt64({int(claim.loss_ts_ms)}), CAST({sorted(near_cells(claim.lat, claim.lon))}, "
                       f"'Array(UInt64)'), toFloat64({float(claim.lat)!r}), toFloat64({float(claim.lon)!r})"
                    for k, (claim, _, _) in enumerate(part)}

        def query(table: str, select: str, ks: Sequence[int] = range(len(part)), final: str = "",
                  bounds: dict[int, tuple[int, int]] = window) -> list[tuple]:
            """``select`` per claim of ``ks`` over ``table``'s rows in its window: the claims as
            a table (``q``), and the OR of their ranges, which the sort key (vehicle_id,
            ts_ms, ...) reads range by range, before the join gives each row to its claims.
            Without ``FINAL`` a redelivered row not merged yet is read twice, which none of
            the window's aggregates (any, nearest, argmin, argmax, distinct) can tell from
            once; FINAL costs ~40 % more."""
            claims = ", ".join(f"({k}, {{v{k}:String}}, toInt64({bounds[k][0]}), toInt64({bounds[k][1]}), {table_of[k]})"
                               for k in ks)
            ranges = " OR ".join(f"(t.vehicle_id = {{v{k}:String}} AND t.ts_ms BETWEEN {bounds[k][0]} AND {bounds[k][1]})"
                                 for k in ks)
            return self.client.query(
                f"SELECT q.k, {select} FROM {table} AS t {final} INNER JOIN (SELECT c.1 AS k, c.2 AS vid, c.3 AS a, "
                f"c.4 AS b, c.5 AS loss, c.6 AS cells, c.7 AS y, c.8 AS x FROM system.one ARRAY JOIN [{claims}] AS c) "
                f"AS q ON t.vehicle_id = q.vid WHERE ({ranges}) AND t.ts_ms BETWEEN q.a AND q.b GROUP BY q.k",
                parameters=params).result_rows

        windows: dict[int, _Window] = defaultdict(_Window)
        for k, *seen, (ts, speed, *state) in query("telemetry_state", _STATE):
            windows[k].add(*seen, (abs(ts - part[k][0].loss_ts_ms), ts, 0, speed), state)
        impacts = {}
        for k, *seen, (ts, speed), hits, hit in query("telemetry_dynamics", _DYNAMICS):
            windows[k].add(*seen, (abs(ts - part[k][0].loss_ts_ms), ts, 1, speed), None)
            if hits:
                impacts[k] = hit
        for k, *seen, crashes in query("telemetry_crash", _CRASH):
            windows[k].add(*seen, None, None)
            windows[k].crashes = [(float(d), float(s)) for _, d, s in sorted(crashes)]
        around = {k: hit for k, hit in impacts.items() if not windows[k].crashes and part[k][2] == "insured"}
        if around:  # the samples two before and two after each impact, clamped to the window
            hit_ts = "multiIf(" + ", ".join(f"q.k = {k}, {int(hit[0])}" for k, hit in around.items()) + ", 0)"
            for k, before, after in query("telemetry_dynamics",
                                          f"groupArraySortedIf(2)((-t.ts_ms, t.speed_kmh), t.ts_ms < {hit_ts}), "
                                          f"groupArraySortedIf(2)((t.ts_ms, t.speed_kmh), t.ts_ms > {hit_ts})",
                                          sorted(around), final="FINAL"):  # a sample twice would move the edges
                hit_speed = around[k][1]
                edge = lambda xs: xs[min(len(xs), 2) - 1][1] if xs else hit_speed  # noqa: E731
                windows[k].impact = impact_delta_v(edge(before), edge(after))
        silent = [k for k in range(len(part)) if not windows[k].n]
        if silent:  # nothing in the window: the last record before it, if a parked car's state
            last_driving = dict(query("telemetry_dynamics", "max(t.ts_ms)", silent, bounds=lookback))
            for k, (ts, lat, lon, cell, speed, *state) in query("telemetry_state", _LAST_STATE, silent, bounds=lookback):
                if ts >= last_driving.get(k, ts) and parked(*state):  # sent with the last sample: parked
                    claim = part[k][0]
                    windows[k].stood = facts_parked_at(claim.lat, claim.lon, *stored_position(lat, lon, cell), speed)
        return [windows[k].facts(claim) for k, (claim, _, _) in enumerate(part)]


# the record nearest the loss time; between two as near, the earlier (as ``min`` over records in time order)
_AT_LOSS = "argMin(({cols}), (abs(t.ts_ms - q.loss), t.ts_ms))"
# a row whose raw position expired (0, 0 where a cell was stored): its cell's centre instead
_EXPIRED = "(t.lat = 0 AND t.lon = 0 AND t.h3_r8 != 0)"
# The position nearest the claimed place: the haversine of ``verify._haversine_km``, in
# the same steps (its value is recomputed from the position in Python)
_NEAREST = (f"argMinIf((t.lat, t.lon), asin(sqrt(pow(sin((radians(t.lat) - radians(q.y)) / 2), 2) + "
            f"cos(radians(q.y)) * cos(radians(t.lat)) * pow(sin(radians(t.lon - q.x) / 2), 2))), NOT {_EXPIRED})")
_WINDOW = (f"count(), max(has(q.cells, t.h3_r8)), countIf(NOT {_EXPIRED}), {_NEAREST}, "
           f"groupUniqArrayIf(t.h3_r8, {_EXPIRED})")
_STATE = f"{_WINDOW}, {_AT_LOSS.format(cols='t.ts_ms, t.speed_kmh, t.gear, t.vehicle_status, t.charging_state')}"
_ACCEL = "hypot(toFloat64(t.accel_long_mps2), toFloat64(t.accel_lat_mps2))"
_HARD = f"{_ACCEL} >= {IMPACT_ACCEL_MPS2}"
# the hardest impact-hard sample; between two as hard, the earlier
_DYNAMICS = (f"{_WINDOW}, {_AT_LOSS.format(cols='t.ts_ms, t.speed_kmh')}, countIf({_HARD}), "
             f"argMaxIf((t.ts_ms, t.speed_kmh), ({_ACCEL}, -t.ts_ms), {_HARD})")
# the last state before the window
_LAST_STATE = ("argMax((t.ts_ms, t.lat, t.lon, t.h3_r8, t.speed_kmh, t.gear, t.vehicle_status, t.charging_state), "
               "t.ts_ms)")
_CRASH = f"{_WINDOW}, groupUniqArray((t.event_id, t.delta_v_kmh, t.speed_before_kmh))"


class _Window:
    """One claim's window, from the per-table aggregates."""

    def __init__(self) -> None:
        self.n, self.in_cell, self.positions = 0, False, []
        self.at_loss: tuple | None = None  # (|dt|, ts, table: state 0 / dynamics 1, speed)
        self.state: tuple | None = None  # (gear, status, charging) of the state nearest the loss time
        self.crashes: list[tuple[float, float]] = []
        self.impact = 0.0
        self.stood = NO_TELEMATICS  # the facts of a parked car, for an empty window

    def add(self, n: int, in_cell: bool, fixed: int, nearest: tuple[float, float], expired: list[int],
            at_loss: tuple | None, state) -> None:
        """A table's aggregates: rows, any in the claimed cells, rows with their own
        position and the nearest of those, the cells of rows whose position expired."""
        self.n += n
        self.in_cell = self.in_cell or bool(in_cell)
        if fixed:
            self.positions.append(tuple(nearest))
        self.positions.extend(cell_centre(c) for c in expired)
        if at_loss is not None and (self.at_loss is None or at_loss[:3] < self.at_loss[:3]):
            self.at_loss = at_loss
        if state is not None:
            self.state = tuple(state)

    def facts(self, claim: FnolV1) -> TelematicsFacts:
        """The claim's facts: from the window's aggregates, or, for an empty window, ``stood``."""
        if not self.n:
            return self.stood
        return facts_from_window(claim.lat, claim.lon, in_cell=self.in_cell, positions=self.positions,
                                 speed_at_loss=self.at_loss[3] if self.at_loss else None,
                                 parked_at_loss=self.state is not None and parked(*self.state), crashes=self.crashes,
                                 impact_delta_v=self.impact)


def _record(typ: type, row: dict):
    """A stored row as its record. The gate validated it; what the table gives back may
    sit just outside the contract's bounds (a Float32 column rounds a heading of
    359.99999° to 360.0), which must not make the claim unreadable: such a row is taken
    as stored, without the bounds."""
    try:
        return msgspec.convert(row, typ, strict=False)
    except msgspec.ValidationError:
        return typ(**row)
