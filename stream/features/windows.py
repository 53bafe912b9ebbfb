"""Per-vehicle daily partial aggregates and the rolling 7 d / 30 d window features.

Every window feature is a ratio of sums of additive daily columns, so one function,
``vehicle_features_from_daily``, computes them from any set of daily rows: those
the stream keeps in its vehicle state, those stored in ClickHouse
(``vehicle_daily FINAL``), or those of an offline replay. That is the "one
definition serves training and serving" rule.

Days are local calendar days in China Standard Time (UTC+8, no DST), numbered from
1970-01-01: ``day = (ts_ms + 8 h) // 24 h``. A window of ``w`` days ending on
``as_of_day`` covers days ``as_of_day - w + 1`` to ``as_of_day``.

Empty denominators: a vehicle with no driving in the window gets 0 for every rate
and share, 1.0 (the fleet average) for the exposure-weighted cell risk and NaN for
the mean SOC at trip start (no trip, no SOC).
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

TZ_OFFSET_MS = 8 * 3_600_000  # Asia/Shanghai, no daylight saving
DAY_MS = 86_400_000
WINDOWS_D = (7, 30)

# Additive per-row columns (one value per dynamics sample, summed per trip, visit and day).
ROW_SUMS = (
    "distance_km",
    "driving_s",
    "night_s",
    "speeding_s",
    "unsafe_following_s",
    "unbuckled_s",
    "brake_s",
    "regen_brake_s",
    "cell_risk_s",
    "hard_brake_n",
    "harsh_accel_n",
    "harsh_turn_n",
    "fcw_n",
)
# Added per closed trip (on the day the trip started) or per alarm / crash record.
DAILY_EXTRA = ("trips_n", "soc_start_sum_pct", "soc_start_n", "thermal_alarm_n", "crash_n")
DAILY_SUMS = ROW_SUMS + DAILY_EXTRA
COL = {name: i for i, name in enumerate(DAILY_SUMS)}


def local_day(ts_ms: np.ndarray | int) -> np.ndarray | int:
    return (ts_ms + TZ_OFFSET_MS) // DAY_MS


def feature_names(window_d: int = 30) -> list[str]:
    """The contract's per-vehicle feature columns for one window, in a fixed order."""
    return [
        f"{stem}_by_vehicle_{window_d}d"
        for stem in (
            "distance_km",
            "driving_hours",
            "trips",
            "mean_speed_kmh",
            "hard_brake_per_100km",
            "harsh_accel_per_100km",
            "harsh_turn_per_100km",
            "unsafe_following_share",
            "fcw_per_1000km",
            "unbuckled_share",
            "night_share",
            "speeding_share",
            "regen_share",
            "thermal_alarms_per_1000km",
            "soc_trip_start_mean",
            "cell_risk_exposure_weighted",
        )
    ]


# Below this exposure (km, seconds, samples) a rate is ``empty``: real driving is far
# above it, and a sub-nanometre distance would make a rate per 100 km overflow to inf.
MIN_EXPOSURE = 1e-9


def _ratio(num: np.ndarray, den: np.ndarray, scale: float = 1.0, empty: float = 0.0) -> np.ndarray:
    return np.divide(num * scale, den, out=np.full(len(num), empty), where=den > MIN_EXPOSURE)


def features_from_sums(s: Mapping[str, np.ndarray], window_d: int) -> dict[str, np.ndarray]:
    """Window features from the window's summed daily columns (arrays, one per vehicle)."""
    dist, drive = s["distance_km"], s["driving_s"]
    values = [
        dist,
        drive / 3600.0,
        s["trips_n"],
        _ratio(dist, drive, 3600.0),
        _ratio(s["hard_brake_n"], dist, 100.0),
        _ratio(s["harsh_accel_n"], dist, 100.0),
        _ratio(s["harsh_turn_n"], dist, 100.0),
        _ratio(s["unsafe_following_s"], drive),
        _ratio(s["fcw_n"], dist, 1000.0),
        _ratio(s["unbuckled_s"], drive),
        _ratio(s["night_s"], drive),
        _ratio(s["speeding_s"], drive),
        _ratio(s["regen_brake_s"], s["brake_s"]),
        _ratio(s["thermal_alarm_n"], dist, 1000.0),
        _ratio(s["soc_start_sum_pct"], s["soc_start_n"], empty=np.nan),
        _ratio(s["cell_risk_s"], drive, empty=1.0),
    ]
    return dict(zip(feature_names(window_d), values, strict=True))


def vehicle_features_from_daily(daily: Mapping[str, np.ndarray], as_of_day: int,
                                windows_d: tuple[int, ...] = WINDOWS_D) -> dict[str, np.ndarray]:
    """Rolling window features per vehicle from daily rows.

    ``daily``: columns ``vehicle_id``, ``day`` and every name in ``DAILY_SUMS`` (a dict
    of arrays, a pandas DataFrame or a ClickHouse query result as columns). Returns
    ``vehicle_id`` (sorted), ``as_of_day`` and each window's ``feature_names(w)``;
    vehicles with no row in the longest window are left out.

    >>> import numpy as np
    >>> row = {c: np.array([0.0]) for c in DAILY_SUMS}
    >>> row.update(vehicle_id=np.array(["v1"]), day=np.array([20000]), distance_km=np.array([50.0]),
    ...            driving_s=np.array([3600.0]), hard_brake_n=np.array([2.0]))
    >>> f = vehicle_features_from_daily(row, as_of_day=20006)
    >>> float(f["hard_brake_per_100km_by_vehicle_7d"][0]), float(f["mean_speed_kmh_by_vehicle_30d"][0])
    (4.0, 50.0)
    """
    day = np.asarray(daily["day"], np.int64)
    in_any = (day <= as_of_day) & (day > as_of_day - max(windows_d))
    vehicles, inv = np.unique(np.asarray(daily["vehicle_id"], object)[in_any], return_inverse=True)
    day = day[in_any]
    out: dict[str, np.ndarray] = {"vehicle_id": vehicles, "as_of_day": np.full(len(vehicles), as_of_day, np.int64)}
    for w in windows_d:
        weight = (day > as_of_day - w).astype(np.float64)
        sums = {c: np.bincount(inv, weights=np.asarray(daily[c], np.float64)[in_any] * weight, minlength=len(vehicles))
                for c in DAILY_SUMS}
        out.update(features_from_sums(sums, w))
    return out
