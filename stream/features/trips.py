"""Trip segmentation per vehicle, vectorised over a batch sorted by vehicle and time.

A trip is a run of a vehicle's dynamics samples. It ends

- at an ignition-off or park ``StateV1`` (``vehicle_status == "off"`` or ``gear == "P"``)
  dated at or after its last sample (``end_reason = "park"``), or
- when the next sample comes more than ``TRIP_GAP_MS`` (5 min) later, or no sample
  comes for 5 min of event time (``flush_idle``) (``end_reason = "gap"``).

Each sample stands for the interval since the previous sample of the same trip
(the first sample of a trip stands for nothing): driving time is the sum of those
intervals and distance integrates speed over them with the trapezoid rule. Time
shares (night, speeding, ...) weight each interval by the sample that closes it.

SOC at trip start: the latest ``StateV1`` SOC at most 10 min before the first sample;
otherwise the first one within 10 min after it, if the trip is still running then;
otherwise unknown (None).
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from stream.features.outputs import TripV1
from stream.features.state import OpenTrip
from stream.features.windows import COL

TRIP_GAP_MS = 300_000
SOC_WINDOW_MS = 600_000


class Segments(NamedTuple):
    """Trips present in a batch (one per run of rows), in row order."""

    first: np.ndarray  # first row of each trip
    last: np.ndarray  # last row of each trip
    vidx: np.ndarray  # vehicle index of each trip
    is_open: np.ndarray  # still running after this batch
    continues: np.ndarray  # started in an earlier batch (first row is the carry row)
    parked: np.ndarray  # closed by a park/off state (else by a gap)


def segment(vidx: np.ndarray, ts_ms: np.ndarray, is_carry: np.ndarray, park_break: np.ndarray,
            ends_parked: np.ndarray) -> tuple[np.ndarray, Segments]:
    """Trip boundaries for rows sorted by (vehicle, time).

    ``park_break[i]``: a park state lies between row i-1 and row i of the same vehicle;
    ``ends_parked[v]``: a park state follows vehicle v's last row. Returns the per-row
    flag "first row of a trip" and the trips.
    """
    n = len(vidx)
    new_vehicle = np.ones(n, bool)
    new_vehicle[1:] = vidx[1:] != vidx[:-1]
    dt = np.zeros(n, np.int64)
    dt[1:] = ts_ms[1:] - ts_ms[:-1]
    start = new_vehicle | (dt > TRIP_GAP_MS) | park_break
    first = np.flatnonzero(start)
    last = np.append(first[1:] - 1, n - 1).astype(np.int64)
    seg_v = vidx[first]
    last_of_vehicle = np.append(seg_v[1:] != seg_v[:-1], True)
    next_parked = np.append(park_break[first[1:]], False)
    parked = np.where(last_of_vehicle, ends_parked[seg_v], next_parked)
    return start, Segments(first, last, seg_v, last_of_vehicle & ~ends_parked[seg_v], is_carry[first], parked)


def soc_at_start(start_ts_ms: int, before: tuple[float, int] | None, after: tuple[float, int] | None,
                 trip: OpenTrip) -> None:
    """Fill the trip's SOC fields from the nearest SOC readings around its start
    (``(soc_pct, ts_ms)``, None if there is none)."""
    if trip.soc_start_pct is not None or trip.soc_next_pct is not None:
        return
    if before is not None and start_ts_ms - before[1] <= SOC_WINDOW_MS:
        trip.soc_start_pct = before[0]
    elif after is not None and after[1] - start_ts_ms <= SOC_WINDOW_MS:
        trip.soc_next_pct, trip.soc_next_ts_ms = after


def trip_record(vehicle_id: str, trip: OpenTrip, end_ts_ms: int, parked: bool, version_ts_ms: int) -> TripV1:
    s = trip.sums
    drive, dist = s[COL["driving_s"]], s[COL["distance_km"]]

    def share(col: str, den: float = drive) -> float:
        return s[COL[col]] / den if den > 0 else 0.0

    soc = trip.soc_start_pct
    if soc is None and trip.soc_next_pct is not None and trip.soc_next_ts_ms <= end_ts_ms:
        soc = trip.soc_next_pct
    return TripV1(
        vehicle_id=vehicle_id,
        start_ts_ms=trip.start_ts_ms,
        end_ts_ms=end_ts_ms,
        end_reason="park" if parked else "gap",
        samples_n=trip.samples_n,
        duration_s=drive,
        distance_km=dist,
        mean_speed_kmh=dist / drive * 3600.0 if drive > 0 else 0.0,
        max_speed_kmh=trip.max_speed_kmh,
        night_share=share("night_s"),
        speeding_share=share("speeding_s"),
        unsafe_following_share=share("unsafe_following_s"),
        unbuckled_share=share("unbuckled_s"),
        regen_share=share("regen_brake_s", s[COL["brake_s"]]),
        soc_start_pct=soc,
        hard_brake_n=int(s[COL["hard_brake_n"]]),
        harsh_accel_n=int(s[COL["harsh_accel_n"]]),
        harsh_turn_n=int(s[COL["harsh_turn_n"]]),
        fcw_n=int(s[COL["fcw_n"]]),
        version_ts_ms=version_ts_ms,
    )
