"""Per-vehicle streaming state: everything a batch needs from the batches before it.

One ``VehicleState`` per pseudonymous vehicle id, stored by the agent as bytes in a
persistent Faust table (``encode_state`` / ``decode_state``, msgpack, ~1 KB while a
trip is open). Holds the open trip, the open cell visit, the open harsh episodes'
peaks, the last SOC reading and the daily rows that can still change (``HOT_DAYS``:
today and yesterday, where a trip that is still running may have started).

Older daily rows are final: ``update`` hands them over once in
``Update.closed_days`` and the agent keeps them in a second table that changes at
most once a day per vehicle (``merge_history``, ``encode_history``), so the state
written after every batch stays small.
"""

from __future__ import annotations

import msgspec
from msgspec import Struct

HOT_DAYS = 2
HISTORY_DAYS = 31  # one more than the longest window, so a 30 d window is complete on day change


class OpenTrip(Struct, array_like=True):
    start_ts_ms: int
    sums: list[float]  # windows.ROW_SUMS, accumulated over the trip so far
    samples_n: int
    max_speed_kmh: float
    soc_start_pct: float | None = None  # latest SOC <= 10 min before the start
    soc_next_pct: float | None = None  # else the first SOC within 10 min after the start...
    soc_next_ts_ms: int = 0  # ...used if the trip is still running at that time


class OpenVisit(Struct, array_like=True):
    cell: int
    start_ts_ms: int
    sums: list[float]  # windows.ROW_SUMS
    speed_hist_s: list[float]


RECENT_IDS = 32  # per record kind other than dynamics: the newest ids taken, kept to tell a redelivery from a late record


class RecentIds(Struct, array_like=True):
    """The newest records of one kind a vehicle's state took, as (event time, event id).
    A record after ``floor_ts_ms`` and not among them is new, however late it comes (the
    gate lets alarms and crashes through hours late); at or before it, where older ids
    were let go, it cannot be told from a redelivery and is skipped."""

    floor_ts_ms: int = -1
    taken: list[tuple[int, str]] = []


class VehicleState(Struct, array_like=True):
    last_ts_ms: int = -1  # last dynamics sample taken (older samples are dropped as late)
    last_speed_kmh: float = 0.0
    seen_ts_ms: int = -1  # newest event of any kind; the version of rows emitted for it
    trip: OpenTrip | None = None
    visit: OpenVisit | None = None
    brake_peak_mps2: float = 0.0  # open episodes' peaks, 0 when closed (harsh.HarshColumns)
    accel_peak_mps2: float = 0.0
    turn_peak_mps2: float = 0.0
    fcw_open: bool = False
    soc_pct: float | None = None
    soc_ts_ms: int = 0
    days: list[list[float]] = []  # hot daily rows [day, *windows.DAILY_SUMS], oldest first
    shipped_day: int = -1  # newest day handed over in Update.closed_days; it and older days are final
    # per record kind (dynamics, state, alarm, crash): the newest event time taken and the
    # event ids taken at that time; a record at or before it is a redelivery (a consumer
    # resumed behind the state, or a gate re-sent after a partition move) and is skipped
    taken: list[tuple[int, list[str]]] = []
    # per record kind (the dynamics' entry unused: a late sample is dropped anyway)
    recent: list[RecentIds] = []


_ENCODER = msgspec.msgpack.Encoder()
_DECODER = msgspec.msgpack.Decoder(VehicleState)


_HISTORY_DECODER = msgspec.msgpack.Decoder(list[list[float]])


def encode_state(state: VehicleState) -> bytes:
    return _ENCODER.encode(state)


def decode_state(data: bytes) -> VehicleState:
    return _DECODER.decode(data)


def encode_history(days: list[list[float]]) -> bytes:
    return _ENCODER.encode(days)


def decode_history(data: bytes) -> list[list[float]]:
    return _HISTORY_DECODER.decode(data)


def merge_history(history: list[list[float]], closed: list[list[float]]) -> list[list[float]]:
    """A vehicle's final daily rows plus the newly closed ones, the last ``HISTORY_DAYS`` days."""
    rows = sorted(history + closed, key=lambda r: r[0])
    return [r for r in rows if r[0] > rows[-1][0] - HISTORY_DAYS] if rows else []
