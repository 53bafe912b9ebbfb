"""H3 cells: resolution-8 cells for features, resolution-7 rollups for people.

The stream writes one *cell visit* row per maximal run of a vehicle's samples inside
one res-8 cell within a trip (``CellVisitV1``, keyed ``(vehicle_id, cell, start_ts_ms)``,
re-emitted with cumulative sums while it grows). Every cell aggregate is a plain
group-by over visit rows plus crash rows, so distinct vehicle counts stay exact and
the same function serves the stream, the warehouse and tests.

Cell risk index (1.0 = fleet average), credibility-weighted so a cell seen for a few
minutes does not get an extreme value:

    rel_harsh = (harsh_c + mu_h * H0) / ((hours_c + H0) * mu_h)
    rel_crash = (crash_c + mu_k * K0) / ((hours_c + K0) * mu_k)      (1 when mu_k = 0)
    risk_index = rel_harsh ** 0.7 * rel_crash ** 0.3

with ``mu_h`` and ``mu_k`` the fleet-wide harsh events and crashes per driving hour,
``H0 = 5`` h and ``K0 = 200`` h of prior exposure.

Speed-limit proxy per cell (we have no road map): the smallest posted Chinese limit
(30, 40, ..., 120 km/h) at or above the cell's time-weighted 85th-percentile speed;
cells with less than ``MIN_PROFILE_HOURS`` of driving get ``DEFAULT_LIMIT_KMH`` (the
expressway limit), so speeding is only counted where a profile exists.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from itertools import repeat

import h3.api.basic_int as h3i
import numpy as np

FEATURE_RES = 8
DISPLAY_RES = 7
SPEED_BIN_KMH = 10.0
SPEED_BINS = 26  # 0-10, ..., 240-250, 250+ km/h
POSTED_LIMITS_KMH = np.array([30.0, 40.0, 50.0, 60.0, 70.0, 80.0, 90.0, 100.0, 110.0, 120.0])
DEFAULT_LIMIT_KMH = 120.0
MIN_PROFILE_HOURS = 0.5
HARSH_PRIOR_HOURS = 5.0
CRASH_PRIOR_HOURS = 200.0
HARSH_WEIGHT = 0.7
DEFAULT_K_VEHICLES = 5


def cell_of(lat: float, lon: float, res: int = FEATURE_RES) -> int:
    """H3 cell id of one WGS-84 position: the one place the platform turns a position
    into a cell (the features, the sink's ``h3_r8``, claim verification, the simulators)."""
    return h3i.latlng_to_cell(lat, lon, res)


def cell_centre(cell: int) -> tuple[float, float]:
    """(lat, lon) of a cell's centre: where a stored row whose raw position has expired
    (the warehouse keeps its cell) is taken to have been."""
    return h3i.cell_to_latlng(cell)


def cells_of(lat: np.ndarray, lon: np.ndarray, res: int = FEATURE_RES) -> np.ndarray:
    """H3 cell ids (uint64) of WGS-84 positions. h3 has no array call; ~0.4 µs a point."""
    return np.fromiter(map(h3i.latlng_to_cell, lat.tolist(), lon.tolist(), repeat(res, len(lat))), np.uint64, len(lat))


def speed_bin(speed_kmh: np.ndarray) -> np.ndarray:
    return np.minimum((speed_kmh // SPEED_BIN_KMH).astype(np.int64), SPEED_BINS - 1)


@dataclass(frozen=True)
class CellTable:
    """Per-cell lookups the stream applies to every sample: risk index and speed-limit
    proxy. A snapshot, refreshed by the agent (e.g. hourly) from ``cell_aggregates``;
    training replays must use the same snapshot to reproduce the features."""

    cell: np.ndarray  # uint64, sorted
    risk_index: np.ndarray
    speed_limit_kmh: np.ndarray

    @classmethod
    def empty(cls) -> CellTable:
        return cls(np.zeros(0, np.uint64), np.zeros(0), np.zeros(0))

    @classmethod
    def from_aggregates(cls, aggregates: Mapping[str, np.ndarray]) -> CellTable:
        order = np.argsort(aggregates["cell"])
        return cls(np.asarray(aggregates["cell"], np.uint64)[order],
                   np.asarray(aggregates["risk_index"], np.float64)[order],
                   np.asarray(aggregates["speed_limit_kmh"], np.float64)[order])

    def lookup(self, cells: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(risk_index, speed_limit_kmh) per cell; unknown cells get 1.0 and the default limit."""
        risk = np.ones(len(cells))
        limit = np.full(len(cells), DEFAULT_LIMIT_KMH)
        if len(self.cell):
            pos = np.minimum(np.searchsorted(self.cell, cells), len(self.cell) - 1)
            hit = self.cell[pos] == cells
            risk[hit] = self.risk_index[pos[hit]]
            limit[hit] = self.speed_limit_kmh[pos[hit]]
        return risk, limit


def _quantile_from_hist(hist: np.ndarray, q: float) -> np.ndarray:
    """Time-weighted speed quantile per row of a (cells × bins) histogram, linear inside a bin."""
    total = hist.sum(axis=1)
    cum = np.cumsum(hist, axis=1)
    target = q * total
    b = np.minimum((cum < target[:, None]).sum(axis=1), SPEED_BINS - 1)
    below = np.where(b > 0, cum[np.arange(len(b)), b - 1], 0.0)
    inside = hist[np.arange(len(b)), b]
    frac = np.divide(target - below, inside, out=np.zeros_like(target), where=inside > 0)
    return np.where(total > 0, (b + frac) * SPEED_BIN_KMH, np.nan)


def cell_aggregates(visits: Mapping[str, np.ndarray], crashes: Mapping[str, np.ndarray] | None = None,
                    res: int = FEATURE_RES) -> dict[str, np.ndarray]:
    """Per-cell aggregates from cell-visit rows (columns of ``CellVisitV1``: ``cell``,
    ``vehicle_id``, ``driving_s``, ``distance_km``, ``hard_brake_n``, ``harsh_accel_n``,
    ``harsh_turn_n``, ``speed_hist_s`` (rows × 26)) and crash rows (``cell``), keyed by
    res-8 cells. ``res`` < 8 rolls cells up to their parents first.

    Returns columns: cell, exposure_h, distance_km, vehicle_n, harsh_n, harsh_per_h,
    crash_n, speed_p50_kmh, speed_p85_kmh, speed_limit_kmh, risk_index.
    """
    cell = np.asarray(visits["cell"], np.uint64)
    crash_cell = np.asarray(crashes["cell"], np.uint64) if crashes is not None else np.zeros(0, np.uint64)
    if res != FEATURE_RES:
        cell, crash_cell = to_parent(cell, res), to_parent(crash_cell, res)
    keys, inv = np.unique(np.concatenate([cell, crash_cell]), return_inverse=True)
    v_inv, c_inv = inv[: len(cell)], inv[len(cell):]
    n = len(keys)

    def total(col: str) -> np.ndarray:
        return np.bincount(v_inv, weights=np.asarray(visits[col], np.float64), minlength=n)

    exposure_h = total("driving_s") / 3600.0
    harsh = total("hard_brake_n") + total("harsh_accel_n") + total("harsh_turn_n")
    crash_n = np.bincount(c_inv, minlength=n).astype(np.float64)
    hist = np.zeros((n, SPEED_BINS))
    np.add.at(hist, v_inv, np.array(list(visits["speed_hist_s"]), np.float64).reshape(len(cell), SPEED_BINS))
    vehicle = np.unique(np.asarray(visits["vehicle_id"], object), return_inverse=True)[1].astype(np.int64)
    cell_vehicle = np.unique(v_inv * (len(cell) + 1) + vehicle)  # distinct (cell, vehicle) pairs
    vehicle_n = np.bincount(cell_vehicle // (len(cell) + 1), minlength=n)

    hours = exposure_h.sum()
    mu_h = harsh.sum() / hours if hours > 0 else 0.0
    mu_k = crash_n.sum() / hours if hours > 0 else 0.0
    rel_h = (harsh + mu_h * HARSH_PRIOR_HOURS) / ((exposure_h + HARSH_PRIOR_HOURS) * mu_h) if mu_h > 0 else np.ones(n)
    rel_k = (crash_n + mu_k * CRASH_PRIOR_HOURS) / ((exposure_h + CRASH_PRIOR_HOURS) * mu_k) if mu_k > 0 else np.ones(n)
    p85 = _quantile_from_hist(hist, 0.85)
    limit_idx = np.minimum(np.searchsorted(POSTED_LIMITS_KMH, np.nan_to_num(p85)), len(POSTED_LIMITS_KMH) - 1)
    limit = np.where(exposure_h >= MIN_PROFILE_HOURS, POSTED_LIMITS_KMH[limit_idx], DEFAULT_LIMIT_KMH)
    return {
        "cell": keys,
        "exposure_h": exposure_h,
        "distance_km": total("distance_km"),
        "vehicle_n": vehicle_n,
        "harsh_n": harsh,
        "harsh_per_h": np.divide(harsh, exposure_h, out=np.zeros(n), where=exposure_h > 0),
        "crash_n": crash_n,
        "speed_p50_kmh": _quantile_from_hist(hist, 0.5),
        "speed_p85_kmh": p85,
        "speed_limit_kmh": limit,
        "risk_index": rel_h**HARSH_WEIGHT * rel_k ** (1.0 - HARSH_WEIGHT),
    }


def to_parent(cells: np.ndarray, res: int) -> np.ndarray:
    """Parent cells at ``res`` (one h3 call per distinct cell)."""
    uniq, inv = np.unique(np.asarray(cells, np.uint64), return_inverse=True)
    parents = np.fromiter((h3i.cell_to_parent(int(c), res) for c in uniq.tolist()), np.uint64, len(uniq))
    return parents[inv]


def rollup_for_display(visits: Mapping[str, np.ndarray], crashes: Mapping[str, np.ndarray] | None = None,
                       min_vehicles: int = DEFAULT_K_VEHICLES) -> dict[str, np.ndarray]:
    """Resolution-7 aggregates for anything shown to people or shared outside,
    keeping only cells seen by at least ``min_vehicles`` distinct vehicles (k-anonymity)."""
    agg = cell_aggregates(visits, crashes, res=DISPLAY_RES)
    keep = agg["vehicle_n"] >= min_vehicles
    return {k: v[keep] for k, v in agg.items()}
