"""Records the feature functions emit: ready for the derived topics and for the
ClickHouse tables of ``warehouse/migrations/0010_features.sql`` (same field names).

Rows that grow while data arrives (daily rows, cell visits) are emitted again with
cumulative values and a larger ``version_ts_ms``; the tables are
``ReplacingMergeTree(version_ts_ms)`` on their natural key, so the latest wins and a
re-delivery changes nothing.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated

import msgspec
import numpy as np
from msgspec import Meta, Struct

from stream.features.windows import WINDOWS_D, feature_names

_OUT = dict(frozen=True, kw_only=True)


class TripV1(Struct, **_OUT):
    """``trips.v1``: one closed trip. Key ``(vehicle_id, start_ts_ms)``."""

    vehicle_id: str
    start_ts_ms: int
    end_ts_ms: int
    end_reason: str  # "park" (ignition off / gear P) or "gap" (> 5 min without dynamics)
    samples_n: int
    duration_s: float
    distance_km: float
    mean_speed_kmh: float
    max_speed_kmh: float
    night_share: float
    speeding_share: float
    unsafe_following_share: float
    unbuckled_share: float
    regen_share: float
    soc_start_pct: float | None
    hard_brake_n: int
    harsh_accel_n: int
    harsh_turn_n: int
    fcw_n: int
    version_ts_ms: int


class DailyV1(Struct, **_OUT):
    """Per-vehicle partial aggregates of one local day (``windows.DAILY_SUMS``).
    Key ``(vehicle_id, day)``; the input of every window feature."""

    vehicle_id: str
    day: int
    distance_km: float
    driving_s: float
    night_s: float
    speeding_s: float
    unsafe_following_s: float
    unbuckled_s: float
    brake_s: float
    regen_brake_s: float
    cell_risk_s: float
    hard_brake_n: float
    harsh_accel_n: float
    harsh_turn_n: float
    fcw_n: float
    trips_n: float
    soc_start_sum_pct: float
    soc_start_n: float
    thermal_alarm_n: float
    crash_n: float
    version_ts_ms: int


class CellVisitV1(Struct, **_OUT):
    """A vehicle's run of samples inside one H3 res-8 cell within a trip.
    Key ``(vehicle_id, cell, start_ts_ms)``; cell aggregates are group-bys over these."""

    vehicle_id: str
    cell: int  # H3 res-8 cell as an unsigned 64-bit integer
    day: int
    start_ts_ms: int
    distance_km: float
    driving_s: float
    hard_brake_n: float
    harsh_accel_n: float
    harsh_turn_n: float
    speed_hist_s: list[float]  # driving seconds per 10 km/h speed bin, 26 bins
    version_ts_ms: int


class CellCrashV1(Struct, **_OUT):
    """A crash located in its H3 res-8 cell. Key ``event_id``."""

    event_id: str
    vehicle_id: str
    ts_ms: int
    cell: int


def _vehicle_features_fields() -> list[tuple[str, type]]:
    names = [n for w in WINDOWS_D for n in feature_names(w)]
    return [("vehicle_id", str), ("as_of_day", int), *[(n, float) for n in names], ("version_ts_ms", int)]


# ``features.vehicle.v1``: one vehicle's window features as of a local day, one field
# per contract column (``windows.feature_names`` for 7 d and 30 d). Key ``(vehicle_id, as_of_day)``.
VehicleFeaturesV1 = msgspec.defstruct("VehicleFeaturesV1", _vehicle_features_fields(), **_OUT)


class ScoreV1(Struct, **_OUT):
    """``scores.ubi.v1``: one vehicle's score by one scorer. Key ``(vehicle_id, as_of_day, scorer)``."""

    vehicle_id: str
    as_of_day: int
    scorer: Annotated[str, Meta(description=(
        "What computed the score: 'reference' (the published-formula safety score, 0-100) or the exact pricing "
        "model version as NAME@vVERSION in the model registry, e.g. 'telematics@v3' (the telematics multiplier); "
        "after a promotion the new version's rows sit beside the old version's, they do not replace them"))]
    score: float
    version_ts_ms: int
    through_ts_ms: int = 0  # newest event time (any kind) the score reflects: its data freshness


def vehicle_feature_records(features: Mapping[str, np.ndarray], version_ts_ms: int) -> list:
    """``VehicleFeaturesV1`` records from ``vehicle_features_from_daily`` output."""
    names = VehicleFeaturesV1.__struct_fields__[:-1]
    cols = [features[n].tolist() for n in names]
    return [VehicleFeaturesV1(**dict(zip(names, row, strict=True)), version_ts_ms=version_ts_ms) for row in zip(*cols)]


def as_columns(rows: list[Struct]) -> dict[str, list]:
    """Column lists (field name -> values) for a ClickHouse insert of one record type."""
    if not rows:
        return {}
    names = rows[0].__struct_fields__
    cols = zip(*(msgspec.structs.astuple(r) for r in rows), strict=True)
    return dict(zip(names, (list(c) for c in cols), strict=True))
