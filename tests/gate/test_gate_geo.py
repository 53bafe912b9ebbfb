"""GCJ-02 <-> WGS-84 against published point pairs and the forward transform."""

from __future__ import annotations

import pytest

from stream.geo import gcj02_to_wgs84, haversine_m, in_china, wgs84_to_gcj02

# (WGS-84 lat, lon) -> (GCJ-02 lat, lon) as published with open-source
# implementations of the transform (Shanghai, Shenzhen, Beijing x2)
PUBLISHED = [
    ((31.1774276, 121.5272106), (31.17530398364597, 121.531541859215)),
    ((22.543847, 113.912316), (22.540796131694766, 113.9171764808363)),
    ((39.911954, 116.377817), (39.91334545536069, 116.38404722455657)),
    ((39.915, 116.404), (39.91640428150164, 116.41024449916938)),
]


@pytest.mark.parametrize(("wgs", "gcj"), PUBLISHED)
def test_forward_matches_published_pairs(wgs, gcj):
    assert haversine_m(*wgs84_to_gcj02(*wgs), *gcj) < 0.001


@pytest.mark.parametrize(("wgs", "gcj"), PUBLISHED)
def test_inverse_recovers_published_wgs84_within_half_a_metre(wgs, gcj):
    assert haversine_m(*gcj02_to_wgs84(*gcj), *wgs) < 0.5


def test_inverse_of_forward_on_a_grid_over_china_is_sub_millimetre():
    worst_m = 0.0
    for lat in [18.3 + 0.9 * i for i in range(40)]:  # Hainan to Heilongjiang
        for lon in [74.0 + 1.5 * j for j in range(40)]:  # Xinjiang to the east coast
            back = gcj02_to_wgs84(*wgs84_to_gcj02(lat, lon))
            worst_m = max(worst_m, haversine_m(*back, lat, lon))
    assert worst_m < 0.001


def test_offset_in_china_is_hundreds_of_metres():
    assert 100 < haversine_m(*wgs84_to_gcj02(31.2304, 121.4737), 31.2304, 121.4737) < 1000


@pytest.mark.parametrize("point", [(48.8566, 2.3522), (40.7128, -74.006), (-33.8688, 151.2093), (1.29, 103.0 - 40)])
def test_points_outside_china_are_unchanged(point):
    assert not in_china(*point)
    assert gcj02_to_wgs84(*point) == point
    assert wgs84_to_gcj02(*point) == point
