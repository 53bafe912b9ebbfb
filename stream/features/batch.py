"""Columnar batches: decoded topic records turned into numpy columns once, so the
feature functions work on arrays instead of one Python object per event.

The agent collects ``(vehicle_id, record)`` pairs from a ``take()`` batch (any mix of
``DynamicsV1``, ``StateV1``, ``AlarmV1``, ``CrashV1`` from the clean topics) and calls
``Batch.from_records(pairs)``; a replay from the warehouse builds the same columns
with ``Dynamics.from_columns(rows)`` etc. Order inside the batch does not matter:
rows are sorted per vehicle by event time before use. Positions become H3 res-8
cells here, once per record.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, fields
from operator import attrgetter, itemgetter

import numpy as np

from stream.features.cells import cells_of
from stream.records import AlarmV1, CrashV1, DynamicsV1, StateV1

# Battery thermal alarms (GB/T 32960 general alarm flags) counted by
# thermal_alarms_per_1000km; only the raising edge (active=True) counts.
THERMAL_ALARM_CODES = frozenset({"battery_high_temp", "temperature_difference"})


def _ids(values: Sequence[str]) -> np.ndarray:
    out = np.empty(len(values), dtype=object)  # never a 2-D array, whatever the strings
    out[:] = values
    return out


def _cells(cols: Mapping[str, Sequence]) -> np.ndarray:
    if "h3_r8" in cols:
        return np.asarray(cols["h3_r8"], np.uint64)
    return cells_of(np.asarray(cols["lat"], np.float64), np.asarray(cols["lon"], np.float64))


def _column(records: Sequence, name: str, dtype) -> np.ndarray:
    return np.fromiter(map(attrgetter(name), records), dtype=dtype, count=len(records))


@dataclass(frozen=True, slots=True)
class Columns:
    """Base for the per-kind column sets: equal-length arrays, one row per record."""

    vehicle_id: np.ndarray  # object array of str
    ts_ms: np.ndarray  # int64

    def __len__(self) -> int:
        return len(self.ts_ms)

    def take(self, index: np.ndarray):
        return type(self)(**{f.name: getattr(self, f.name)[index] for f in fields(self)})

    @classmethod
    def concat(cls, parts: Sequence):
        return cls(**{f.name: np.concatenate([getattr(p, f.name) for p in parts]) for f in fields(cls)})

    @classmethod
    def empty(cls):
        return cls.from_records([], [])


@dataclass(frozen=True, slots=True)
class Dynamics(Columns):
    speed_kmh: np.ndarray
    accel_long_mps2: np.ndarray
    accel_lat_mps2: np.ndarray
    motor_power_kw: np.ndarray
    fcw: np.ndarray  # bool
    headway_s: np.ndarray  # NaN where the record has no lead vehicle (None)
    seatbelt_driver: np.ndarray  # bool
    cell: np.ndarray  # H3 res-8 cell (uint64) of the WGS-84 position

    @classmethod
    def from_records(cls, vehicle_ids: Sequence[str], records: Sequence[DynamicsV1]) -> Dynamics:
        return cls(
            vehicle_id=_ids(vehicle_ids),
            ts_ms=_column(records, "ts_ms", np.int64),
            speed_kmh=_column(records, "speed_kmh", np.float64),
            accel_long_mps2=_column(records, "accel_long_mps2", np.float64),
            accel_lat_mps2=_column(records, "accel_lat_mps2", np.float64),
            motor_power_kw=_column(records, "motor_power_kw", np.float64),
            fcw=_column(records, "fcw", bool),
            headway_s=np.fromiter((np.nan if h is None else h for h in map(attrgetter("headway_s"), records)),
                                  np.float64, len(records)),
            seatbelt_driver=_column(records, "seatbelt_driver", bool),
            cell=cells_of(_column(records, "lat", np.float64), _column(records, "lon", np.float64)),
        )

    @classmethod
    def from_columns(cls, cols: Mapping[str, Sequence]) -> Dynamics:
        """From ``telemetry_dynamics`` rows as columns (a DataFrame or a dict of arrays),
        for replays from the warehouse; uses ``h3_r8`` when present (raw positions expire)."""
        return cls(
            vehicle_id=_ids(list(cols["vehicle_id"])),
            ts_ms=np.asarray(cols["ts_ms"], np.int64),
            speed_kmh=np.asarray(cols["speed_kmh"], np.float64),
            accel_long_mps2=np.asarray(cols["accel_long_mps2"], np.float64),
            accel_lat_mps2=np.asarray(cols["accel_lat_mps2"], np.float64),
            motor_power_kw=np.asarray(cols["motor_power_kw"], np.float64),
            fcw=np.asarray(cols["fcw"], bool),
            headway_s=np.array([np.nan if h is None else h for h in cols["headway_s"]], np.float64),
            seatbelt_driver=np.asarray(cols["seatbelt_driver"], bool),
            cell=_cells(cols),
        )


@dataclass(frozen=True, slots=True)
class States(Columns):
    """What the features need from ``StateV1``: SOC for trip start, and whether the
    vehicle was switched off or put in park (which ends a trip)."""

    soc_pct: np.ndarray
    parked: np.ndarray  # bool: vehicle_status == "off" or gear == "P"

    @classmethod
    def from_records(cls, vehicle_ids: Sequence[str], records: Sequence[StateV1]) -> States:
        return cls(
            vehicle_id=_ids(vehicle_ids),
            ts_ms=_column(records, "ts_ms", np.int64),
            soc_pct=_column(records, "soc_pct", np.float64),
            parked=np.fromiter((r.vehicle_status == "off" or r.gear == "P" for r in records), bool, len(records)),
        )

    @classmethod
    def from_columns(cls, cols: Mapping[str, Sequence]) -> States:
        """From ``telemetry_state`` rows as columns."""
        return cls(
            vehicle_id=_ids(list(cols["vehicle_id"])),
            ts_ms=np.asarray(cols["ts_ms"], np.int64),
            soc_pct=np.asarray(cols["soc_pct"], np.float64),
            parked=(np.asarray(cols["vehicle_status"], object) == "off") | (np.asarray(cols["gear"], object) == "P"),
        )


@dataclass(frozen=True, slots=True)
class Alarms(Columns):
    """Raised battery thermal alarms only; other alarms do not enter the features."""

    @classmethod
    def from_records(cls, vehicle_ids: Sequence[str], records: Sequence[AlarmV1]) -> Alarms:
        keep = [i for i, r in enumerate(records) if r.active and r.alarm_code in THERMAL_ALARM_CODES]
        return cls(
            vehicle_id=_ids([vehicle_ids[i] for i in keep]),
            ts_ms=np.array([records[i].ts_ms for i in keep], dtype=np.int64),
        )

    @classmethod
    def from_columns(cls, cols: Mapping[str, Sequence]) -> Alarms:
        """From ``telemetry_alarm`` rows as columns."""
        keep = np.asarray(cols["active"], bool) & np.isin(np.asarray(cols["alarm_code"], object),
                                                           list(THERMAL_ALARM_CODES))
        return cls(vehicle_id=_ids(list(cols["vehicle_id"]))[keep], ts_ms=np.asarray(cols["ts_ms"], np.int64)[keep])


@dataclass(frozen=True, slots=True)
class Crashes(Columns):
    event_id: np.ndarray  # object array of str
    cell: np.ndarray  # H3 res-8 cell (uint64)

    @classmethod
    def from_records(cls, vehicle_ids: Sequence[str], records: Sequence[CrashV1]) -> Crashes:
        return cls(
            vehicle_id=_ids(vehicle_ids),
            ts_ms=_column(records, "ts_ms", np.int64),
            event_id=_ids([r.event_id for r in records]),
            cell=cells_of(_column(records, "lat", np.float64), _column(records, "lon", np.float64)),
        )

    @classmethod
    def from_columns(cls, cols: Mapping[str, Sequence]) -> Crashes:
        """From ``telemetry_crash`` rows as columns."""
        return cls(vehicle_id=_ids(list(cols["vehicle_id"])), ts_ms=np.asarray(cols["ts_ms"], np.int64),
                   event_id=_ids(list(cols["event_id"])), cell=_cells(cols))


_KINDS = {DynamicsV1: "dynamics", StateV1: "states", AlarmV1: "alarms", CrashV1: "crashes"}
_VID, _RECORD = itemgetter(0), itemgetter(1)


@dataclass(frozen=True, slots=True)
class Batch:
    """One batch of clean telemetry, split by record kind into columns."""

    dynamics: Dynamics
    states: States
    alarms: Alarms
    crashes: Crashes

    @classmethod
    def from_records(cls, pairs: Iterable[tuple[str, DynamicsV1 | StateV1 | AlarmV1 | CrashV1]]) -> Batch:
        """``pairs``: ``(pseudonymous vehicle id, decoded record)`` in any order."""
        pairs = pairs if isinstance(pairs, list) else list(pairs)
        recs = list(map(_RECORD, pairs))
        if set(map(type, recs)) == {DynamicsV1}:  # a batch of driving samples only (the bulk of the traffic)
            return cls(Dynamics.from_records(list(map(_VID, pairs)), recs), _EMPTY_STATES, _EMPTY_ALARMS, _EMPTY_CRASHES)
        split: dict[str, tuple[list, list]] = {k: ([], []) for k in _KINDS.values()}
        for vehicle_id, record in pairs:
            kind = _KINDS.get(type(record))
            if kind is None:
                raise TypeError(f"Batch.from_records: {type(record).__name__} is not a telemetry record "
                                f"(expected one of {sorted(t.__name__ for t in _KINDS)})")
            ids, recs = split[kind]
            ids.append(vehicle_id)
            recs.append(record)
        return cls(
            dynamics=Dynamics.from_records(*split["dynamics"]),
            states=States.from_records(*split["states"]),
            alarms=Alarms.from_records(*split["alarms"]),
            crashes=Crashes.from_records(*split["crashes"]),
        )

    @classmethod
    def of(cls, dynamics: Dynamics | None = None, states: States | None = None,
           alarms: Alarms | None = None, crashes: Crashes | None = None) -> Batch:
        """A batch from ready-made columns (bench, replay from the warehouse)."""
        return cls(dynamics if dynamics is not None else Dynamics.empty(),
                   states if states is not None else States.empty(),
                   alarms if alarms is not None else Alarms.empty(),
                   crashes if crashes is not None else Crashes.empty())

    def __len__(self) -> int:
        return len(self.dynamics) + len(self.states) + len(self.alarms) + len(self.crashes)

    def vehicle_ids(self) -> list[str]:
        """The vehicles in the batch, sorted: whose stored states ``update`` needs."""
        ids: set[str] = set()
        for part in (self.dynamics, self.states, self.alarms, self.crashes):
            ids.update(part.vehicle_id.tolist())
        return sorted(ids)


_EMPTY_STATES, _EMPTY_ALARMS, _EMPTY_CRASHES = States.empty(), Alarms.empty(), Crashes.empty()
