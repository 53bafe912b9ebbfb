"""The simulated city: a local metric frame around Shanghai, a street grid, and a
road class (hence a speed limit) for every H3 resolution-8 cell.

Shanghai's road network is approximated by what matters for driving features:
concentric ring expressways (Inner ~5 km, Middle ~9 km, Outer ~15 km from
People's Square), an arterial grid every 3 km, and local streets in between.
The road class of a cell depends only on the cell, so the streaming features can
look up the same speed limit from a position (`speed_limit_kmh(cell)`).
"""

from __future__ import annotations

import math
from functools import lru_cache

import h3
import numpy as np

from stream.features.cells import cell_of, cells_of  # noqa: F401  (the simulators use them as city.cell_of, city.cells_of)

H3_RES = 8
CENTRE_LAT, CENTRE_LON = 31.2304, 121.4737  # People's Square
_M_PER_DEG_LAT = 110_574.0
_M_PER_DEG_LON = 111_320.0 * math.cos(math.radians(CENTRE_LAT))

ARTERIAL_SPACING_M = 3_000.0
# a res-8 cell reaches ~530 m from its centre: every cell a grid line passes through
# has its centre this close to the line
_LINE_HALF_WIDTH_M = 550.0
RING_RADII_M = (5_000.0, 9_000.0, 15_000.0)
SUBURB_RADIUS_M = 12_000.0

SPEED_LIMIT_KMH = {"local": 40.0, "arterial": 60.0, "expressway": 80.0, "highway": 100.0}

# where people work: Lujiazui, People's Square, Xujiahui, Hongqiao, Zhangjiang, Jing'an
WORK_HUBS = (
    (31.2397, 121.4998),
    (31.2304, 121.4737),
    (31.1950, 121.4370),
    (31.1970, 121.3200),
    (31.2030, 121.5900),
    (31.2290, 121.4480),
)


def to_xy(lat, lon):
    """WGS-84 degrees to metres east/north of the centre (equirectangular; <0.1 %
    error over the 30 km the simulation covers)."""
    return (np.asarray(lon) - CENTRE_LON) * _M_PER_DEG_LON, (np.asarray(lat) - CENTRE_LAT) * _M_PER_DEG_LAT


def to_latlon(x, y):
    """Metres east/north of the centre back to WGS-84 degrees."""
    return CENTRE_LAT + np.asarray(y) / _M_PER_DEG_LAT, CENTRE_LON + np.asarray(x) / _M_PER_DEG_LON


def _dist_to_grid_line(v: float) -> float:
    r = v % ARTERIAL_SPACING_M
    return min(r, ARTERIAL_SPACING_M - r)


def road_class_at(x: float, y: float) -> str:
    """Road class of the point (x, y) in metres, by the rules in the module docstring."""
    r = math.hypot(x, y)
    if abs(r - RING_RADII_M[2]) < _LINE_HALF_WIDTH_M:
        return "highway"
    on_grid = min(_dist_to_grid_line(x), _dist_to_grid_line(y)) < _LINE_HALF_WIDTH_M
    if any(abs(r - R) < _LINE_HALF_WIDTH_M for R in RING_RADII_M[:2]) or (on_grid and r > SUBURB_RADIUS_M):
        return "expressway"
    return "arterial" if on_grid else "local"


@lru_cache(maxsize=200_000)
def cell_road_class(cell: int) -> str:
    """Road class of an H3 res-8 cell (given as int), judged at the cell centre."""
    lat, lon = h3.cell_to_latlng(h3.int_to_str(cell))
    x, y = to_xy(lat, lon)
    return road_class_at(float(x), float(y))


def speed_limit_kmh(cell: int) -> float:
    """Speed limit of an H3 res-8 cell (int), km/h: the limit the speeding features use."""
    return SPEED_LIMIT_KMH[cell_road_class(cell)]


# Cell risk index: a fixed property of place (junction density, mixed traffic) the
# simulator knows; expressways are safer per km than local streets with cyclists.
_CLASS_RISK = {"local": 1.3, "arterial": 1.0, "expressway": 0.7, "highway": 0.6}


@lru_cache(maxsize=200_000)
def cell_risk_index(cell: int) -> float:
    """True crash-risk index of an H3 res-8 cell (1.0 = average arterial)."""
    lat, lon = h3.cell_to_latlng(h3.int_to_str(cell))
    x, y = to_xy(lat, lon)
    # the dense old town near the centre has more conflicts per km
    centre = 1.0 + 0.3 * math.exp(-math.hypot(float(x), float(y)) / 4_000.0)
    return round(_CLASS_RISK[cell_road_class(cell)] * centre, 4)


def grid_route(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Route from ``a`` to ``b`` (metres) the way a driver would take it: out to the
    nearest arterial, along the arterial grid, back in on local streets. Returns the
    vertices, shape (k, 2); every leg is parallel to an axis."""
    (xa, ya), (xb, yb) = a, b
    if abs(xb - xa) + abs(yb - ya) < 2 * ARTERIAL_SPACING_M / 3:
        pts = [(xa, ya), (xb, ya), (xb, yb)]
    else:
        yl = round(ya / ARTERIAL_SPACING_M) * ARTERIAL_SPACING_M
        xl = round(xb / ARTERIAL_SPACING_M) * ARTERIAL_SPACING_M
        pts = [(xa, ya), (xa, yl), (xl, yl), (xl, yb), (xb, yb)]
    out = [pts[0]]
    for p in pts[1:]:
        if abs(p[0] - out[-1][0]) + abs(p[1] - out[-1][1]) > 1.0:
            out.append(p)
    if len(out) == 1:
        out.append((xb + 1.0, yb))
    return np.asarray(out, dtype=float)


def staircase_route(rng: np.random.Generator, a: np.ndarray, length_m: float) -> np.ndarray:
    """A random axis-parallel route of exactly ``length_m`` starting at ``a`` (errands,
    night drives), heading roughly away from the edge of the city."""
    legs = rng.integers(2, 5)
    parts = rng.dirichlet(np.full(legs, 2.0)) * length_m
    inward = -np.sign(a) if np.hypot(*a) > 15_000 else rng.choice([-1.0, 1.0], size=2)
    pts = [np.asarray(a, dtype=float)]
    axis = int(rng.integers(2))
    for p in parts:
        step = np.zeros(2)
        step[axis] = inward[axis] * p
        pts.append(pts[-1] + step)
        axis = 1 - axis
    return np.asarray(pts)


def route_length_m(a: np.ndarray, b: np.ndarray) -> float:
    """Length of ``grid_route(a, b)`` in metres."""
    return float(np.abs(np.diff(grid_route(a, b), axis=0)).sum())
