"""GCJ-02 <-> WGS-84 position conversion.

Chinese carmakers report positions in GCJ-02, the obfuscated datum that Chinese
map services are required to use. It is WGS-84 plus a smooth, position-dependent
offset of a few hundred metres computed on the Krasovsky 1940 ellipsoid. The
forward direction has a closed form; the inverse has none, so ``gcj02_to_wgs84``
solves ``wgs84_to_gcj02(p) = q`` by fixed-point iteration: the offset changes by
well under 1e-4 of itself per metre, so each step gains about four decimal digits
and two or three steps reach sub-millimetre accuracy.

Outside mainland China's bounding box the offset is not applied, by the same
rule the published implementations use; such points pass through unchanged.
"""

from __future__ import annotations

import math

# Krasovsky 1940 ellipsoid, which the GCJ-02 offset formulas are defined on
_A_M = 6_378_245.0
_EE = 0.006_693_421_622_965_943_23
_DEG = math.pi / 180.0
# stop when a step moves the estimate by less than ~1 mm
_TOLERANCE_DEG = 1e-8
_MAX_ITERATIONS = 10


def in_china(lat: float, lon: float) -> bool:
    """True where GCJ-02 differs from WGS-84 (the customary bounding box)."""
    return 72.004 <= lon <= 137.8347 and 0.8293 <= lat <= 55.8271


def _offset_deg(lat: float, lon: float) -> tuple[float, float]:
    """GCJ-02 minus WGS-84, in degrees, at WGS-84 position (lat, lon)."""
    x = lon - 105.0
    y = lat - 35.0
    px = x * math.pi
    py = y * math.pi
    shared = (20.0 * math.sin(6.0 * px) + 20.0 * math.sin(2.0 * px)) * 2.0 / 3.0
    sqrt_abs_x = math.sqrt(abs(x))
    d_lat_m = (
        -100.0 + 2.0 * x + 3.0 * y + 0.2 * y * y + 0.1 * x * y + 0.2 * sqrt_abs_x
        + shared
        + (20.0 * math.sin(py) + 40.0 * math.sin(py / 3.0)) * 2.0 / 3.0
        + (160.0 * math.sin(py / 12.0) + 320.0 * math.sin(py / 30.0)) * 2.0 / 3.0
    )
    d_lon_m = (
        300.0 + x + 2.0 * y + 0.1 * x * x + 0.1 * x * y + 0.1 * sqrt_abs_x
        + shared
        + (20.0 * math.sin(px) + 40.0 * math.sin(px / 3.0)) * 2.0 / 3.0
        + (150.0 * math.sin(px / 12.0) + 300.0 * math.sin(px / 30.0)) * 2.0 / 3.0
    )
    # metres to degrees on the ellipsoid: meridian and parallel radii of curvature
    sin_lat = math.sin(lat * _DEG)
    w = 1.0 - _EE * sin_lat * sin_lat
    sqrt_w = math.sqrt(w)
    meridian_radius_m = _A_M * (1.0 - _EE) / (w * sqrt_w)
    parallel_radius_m = _A_M / sqrt_w * math.cos(lat * _DEG)
    return d_lat_m / (meridian_radius_m * _DEG), d_lon_m / (parallel_radius_m * _DEG)


def wgs84_to_gcj02(lat: float, lon: float) -> tuple[float, float]:
    """WGS-84 -> GCJ-02 (closed form).

    >>> [round(v, 6) for v in wgs84_to_gcj02(31.1774276, 121.5272106)]
    [31.175304, 121.531542]
    """
    if not in_china(lat, lon):
        return lat, lon
    d_lat, d_lon = _offset_deg(lat, lon)
    return lat + d_lat, lon + d_lon


def gcj02_to_wgs84(lat: float, lon: float) -> tuple[float, float]:
    """GCJ-02 -> WGS-84 by iterating the forward transform to ~1 mm.

    >>> [round(v, 6) for v in gcj02_to_wgs84(31.17530398364597, 121.531541859215)]
    [31.177428, 121.527211]
    """
    if not in_china(lat, lon):
        return lat, lon
    w_lat, w_lon = lat, lon
    for _ in range(_MAX_ITERATIONS):
        d_lat, d_lon = _offset_deg(w_lat, w_lon)
        n_lat, n_lon = lat - d_lat, lon - d_lon
        done = abs(n_lat - w_lat) < _TOLERANCE_DEG and abs(n_lon - w_lon) < _TOLERANCE_DEG
        w_lat, w_lon = n_lat, n_lon
        if done:
            break
    return w_lat, w_lon


def haversine_m(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    """Great-circle distance in metres (WGS-84 mean radius)."""
    p1, p2 = lat1 * _DEG, lat2 * _DEG
    h = math.sin((p2 - p1) / 2.0) ** 2 + math.cos(p1) * math.cos(p2) * math.sin((lon2 - lon1) * _DEG / 2.0) ** 2
    return 2.0 * 6_371_008.8 * math.asin(math.sqrt(h))
