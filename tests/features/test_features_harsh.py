"""Harsh-event episodes: exact counts on hand-made 1 Hz and 10 Hz sequences,
including every possible batch boundary inside an episode."""

from __future__ import annotations

import numpy as np
import pytest

T0 = 1_780_000_000_000


def _only_trip(rep):
    (trip,) = rep.trips.values()
    return trip


def _brake_profile(hz: int, peak_g: float, G: float) -> np.ndarray:
    """60 s at steady speed with one 2 s triangular braking pulse reaching ``peak_g``."""
    n = 60 * hz
    a = np.zeros(n)
    pulse = np.interp(np.arange(2 * hz + 1), [0, hz, 2 * hz], [0.0, peak_g * G, 0.0])
    a[20 * hz: 20 * hz + len(pulse)] = pulse
    return a


@pytest.mark.parametrize("hz", [1, 10])
@pytest.mark.parametrize(("peak_g", "hard"), [(-0.35, 1), (-0.29, 0), (-0.31, 1), (-0.09, 0)])
def test_braking_episode_is_hard_only_when_its_peak_is_below_minus_0_3_g(mk, hz, peak_g, hard):
    a = _brake_profile(hz, peak_g, mk.G)
    ts = T0 + np.arange(len(a)) * (1000 // hz)
    trip = _only_trip(mk.run([mk.Batch.of(dynamics=mk.dynamics(ts, accel_long_mps2=a))]))
    assert trip.hard_brake_n == hard
    assert trip.harsh_accel_n == 0


def test_batch_boundary_anywhere_inside_a_braking_episode_counts_it_once(mk):
    a = _brake_profile(10, -0.4, mk.G)
    d = mk.dynamics(T0 + np.arange(len(a)) * 100, accel_long_mps2=a)
    for cut in range(195, 225):  # the pulse spans rows 200-220
        rep = mk.run(mk.split(d, [cut]))
        assert _only_trip(rep).hard_brake_n == 1, f"cut at row {cut}"
    # one row per batch: the episode crosses 20 boundaries
    assert _only_trip(mk.run(mk.split(d, list(range(1, len(a)))))).hard_brake_n == 1


def test_peak_reached_after_the_batch_boundary_still_decides(mk):
    # entry beyond 0.1 g in batch 1, peak -0.45 g only in batch 2
    a = np.array([0, -0.15, -0.2, -0.25, -0.45, -0.2, 0, 0]) * mk.G
    d = mk.dynamics(T0 + np.arange(8) * 1000, accel_long_mps2=a)
    assert _only_trip(mk.run(mk.split(d, [3]))).hard_brake_n == 1


@pytest.mark.parametrize(("peak_g", "harsh"), [(0.45, 1), (0.39, 0)])
@pytest.mark.parametrize("side", [1, -1])
def test_turn_counts_when_lateral_peak_exceeds_0_4_g(mk, peak_g, harsh, side):
    lat = np.zeros(30)
    lat[10:14] = side * np.array([0.25, 0.35, peak_g, 0.3]) * mk.G
    d = mk.dynamics(T0 + np.arange(30) * 1000, accel_lat_mps2=lat)
    assert _only_trip(mk.run([mk.Batch.of(dynamics=d)])).harsh_turn_n == harsh


def test_left_then_right_swerve_is_two_turns(mk):
    lat = np.zeros(20)
    lat[5:8] = 0.45 * mk.G
    lat[8:11] = -0.45 * mk.G
    d = mk.dynamics(T0 + np.arange(20) * 1000, accel_lat_mps2=lat)
    assert _only_trip(mk.run(mk.split(d, [7]))).harsh_turn_n == 2


def test_harsh_acceleration_beyond_0_3_g(mk):
    a = np.zeros(40)
    a[5:8] = np.array([0.15, 0.32, 0.2]) * mk.G  # harsh
    a[20:23] = np.array([0.15, 0.28, 0.2]) * mk.G  # not harsh
    d = mk.dynamics(T0 + np.arange(40) * 1000, accel_long_mps2=a)
    assert _only_trip(mk.run([mk.Batch.of(dynamics=d)])).harsh_accel_n == 1


def test_a_sample_gap_over_3_s_splits_an_episode(mk):
    # two hard samples 5 s apart in one trip: two episodes
    ts = T0 + np.array([0, 1000, 2000, 7000, 8000]) * 1
    a = np.array([0, -0.35, 0, -0.35, 0]) * mk.G
    a2 = np.array([0, -0.35, -0.35, -0.35, 0]) * mk.G
    assert _only_trip(mk.run([mk.Batch.of(dynamics=mk.dynamics(ts, accel_long_mps2=a))])).hard_brake_n == 2
    assert _only_trip(mk.run([mk.Batch.of(dynamics=mk.dynamics(ts, accel_long_mps2=a2))])).hard_brake_n == 2


def test_episode_open_at_trip_end_is_counted_when_the_trip_closes(mk):
    a = np.array([0, 0, -0.2, -0.4]) * mk.G
    d = mk.dynamics(T0 + np.arange(4) * 1000, accel_long_mps2=a)
    assert _only_trip(mk.run([mk.Batch.of(dynamics=d)], flush=True)).hard_brake_n == 1
    open_rep = mk.run([mk.Batch.of(dynamics=d)], flush=False)
    assert open_rep.trips == {}
    assert open_rep.states["v1"].brake_peak_mps2 == pytest.approx(-0.4 * mk.G)


def test_fcw_run_counts_once_even_across_batches(mk):
    fcw = np.zeros(50, bool)
    fcw[10:15] = True  # one warning lasting 0.5 s at 10 Hz
    fcw[30:32] = True
    d = mk.dynamics(T0 + np.arange(50) * 100, fcw=fcw)
    assert _only_trip(mk.run(mk.split(d, [12, 31]))).fcw_n == 2


def test_unsafe_following_and_unbuckled_are_time_shares(mk):
    n = 601  # 600 one-second intervals
    idx = np.arange(n)
    headway = np.where((idx >= 1) & (idx <= 180), 0.8, 2.0)  # 180 s closer than 1 s
    speed = np.where(idx <= 120, 90.0, 70.0)  # ...of which 120 s at >= 80 km/h
    belt = idx > 60  # first 60 intervals unbuckled
    d = mk.dynamics(T0 + idx * 1000, speed_kmh=speed, headway_s=headway, seatbelt_driver=belt)
    trip = _only_trip(mk.run(mk.split(d, [100, 350])))
    assert trip.duration_s == 600.0
    assert trip.unsafe_following_share == pytest.approx(120 / 600)
    assert trip.unbuckled_share == pytest.approx(60 / 600)


def test_regen_share_is_braking_time_with_negative_motor_power(mk):
    a = np.zeros(21)
    a[1:11] = -0.15 * mk.G  # 10 s braking
    power = np.where(np.arange(21) <= 7, -30.0, 5.0)  # regenerative for the first 7 of them
    d = mk.dynamics(T0 + np.arange(21) * 1000, accel_long_mps2=a, motor_power_kw=power)
    assert _only_trip(mk.run([mk.Batch.of(dynamics=d)])).regen_share == pytest.approx(0.7)
