"""Per-vehicle streaming state: everything a batch needs from the batches before it.

One ``VehicleState`` per pseudonymous vehicle id, stored by the agent as bytes in a
persistent Faust table (``encode_state`` / ``decode_state``, msgpack, a few hundred
bytes plus ~170 bytes per kept day). Holds the open trip, the open cell visit, the
open harsh episodes' peaks, the last SOC reading and the last ``KEEP_DAYS`` daily rows.
"""

from __future__ import annotations

import msgspec
from msgspec import Struct

KEEP_DAYS = 31  # one more than the longest window, so a 30 d window is complete on day change


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
    days: list[list[float]] = []  # [day, *windows.DAILY_SUMS], oldest first


_ENCODER = msgspec.msgpack.Encoder()
_DECODER = msgspec.msgpack.Decoder(VehicleState)


def encode_state(state: VehicleState) -> bytes:
    return _ENCODER.encode(state)


def decode_state(data: bytes) -> VehicleState:
    return _DECODER.decode(data)
