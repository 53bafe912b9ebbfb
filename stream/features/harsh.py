"""Harsh-event episodes from the dynamics stream (1-10 Hz), vectorised over a batch.

An *episode* is a maximal run of consecutive samples of one vehicle, inside one trip,
beyond an entry threshold, with no more than ``EPISODE_GAP_MS`` between samples. It
is judged by its peak once it closes:

- braking: ``accel_long < -0.1 g``; hard braking if the peak is below ``-0.3 g``;
- acceleration: ``accel_long > +0.1 g``; harsh if the peak exceeds ``+0.3 g``;
- turning: ``|accel_lat| > 0.2 g`` on one side (left and right are separate runs);
  aggressive if the peak exceeds ``0.4 g``;
- forward-collision warnings: each run of ``fcw = true`` samples counts once, at its start.

An episode still running at the end of a batch stays open: its peak travels in the
vehicle state and the next batch continues it (the agent sees the same counts
whatever the batch boundaries). An episode is counted on its last in-run sample, so
its day and H3 cell are those of that sample.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

G_MPS2 = 9.80665
BRAKE_ENTRY_MPS2 = 0.1 * G_MPS2
HARD_BRAKE_MPS2 = 0.3 * G_MPS2
ACCEL_ENTRY_MPS2 = 0.1 * G_MPS2
HARSH_ACCEL_MPS2 = 0.3 * G_MPS2
TURN_ENTRY_MPS2 = 0.2 * G_MPS2
HARSH_TURN_MPS2 = 0.4 * G_MPS2
EPISODE_GAP_MS = 3_000


class Runs(NamedTuple):
    """Runs of ``mask`` rows: first row, last row, peak of ``value`` over the run,
    and whether the run is still open (touches the end of an open trip)."""

    starts: np.ndarray
    ends: np.ndarray
    peaks: np.ndarray
    open: np.ndarray

    def peak_at_end(self, n: int) -> np.ndarray:
        """Per row: the peak of the run that ends there (0 elsewhere)."""
        out = np.zeros(n)
        out[self.ends] = self.peaks
        return out


def runs(mask: np.ndarray, value: np.ndarray, connected: np.ndarray, open_end: np.ndarray) -> Runs:
    """``connected[i]``: row i continues row i-1 (same vehicle and trip, short gap);
    ``open_end[i]``: row i is the last row of a trip that stays open after this batch."""
    linked = np.empty(len(mask), bool)
    linked[0:1] = False
    linked[1:] = mask[:-1] & connected[1:]
    start = mask & ~linked
    cont_next = np.zeros(len(mask), bool)
    cont_next[:-1] = mask[1:] & connected[1:]
    starts = np.flatnonzero(start)
    ends = np.flatnonzero(mask & ~cont_next)
    if len(starts) == 0:
        return Runs(starts, ends, np.zeros(0), np.zeros(0, bool))
    # rows between one run's end and the next run's start are -inf, so reduceat over
    # [start_k, start_k+1) is exactly the run's maximum
    peaks = np.maximum.reduceat(np.where(mask, value, -np.inf), starts)
    return Runs(starts, ends, peaks, open_end[ends])


def count_closed(r: Runs, threshold: float, n: int) -> np.ndarray:
    """Per row: closed runs ending there whose peak exceeds ``threshold``."""
    hit = ~r.open & (r.peaks > threshold)
    return np.bincount(r.ends[hit], minlength=n).astype(np.float64)


class HarshColumns(NamedTuple):
    hard_brake_n: np.ndarray
    harsh_accel_n: np.ndarray
    harsh_turn_n: np.ndarray
    fcw_n: np.ndarray
    # carried into the vehicle state from each open trip's last row
    brake_peak_mps2: np.ndarray  # < -BRAKE_ENTRY when a braking episode is open, else 0
    accel_peak_mps2: np.ndarray  # > +ACCEL_ENTRY when an acceleration episode is open, else 0
    turn_peak_mps2: np.ndarray  # |.| > TURN_ENTRY (signed) when a turn is open, else 0


def harsh_columns(accel_long: np.ndarray, accel_lat: np.ndarray, fcw: np.ndarray, connected: np.ndarray,
                  open_end: np.ndarray, is_carry: np.ndarray) -> HarshColumns:
    """Per-row harsh-event counts and open-episode peaks for rows sorted by vehicle and
    time. Carry rows (one per vehicle with an open trip, first in its rows) hold the
    open episodes' peaks in ``accel_long`` / ``accel_lat`` and ``fcw``."""
    n = len(accel_long)
    brake = runs(accel_long < -BRAKE_ENTRY_MPS2, -accel_long, connected, open_end)
    accel = runs(accel_long > ACCEL_ENTRY_MPS2, accel_long, connected, open_end)
    left = runs(accel_lat > TURN_ENTRY_MPS2, accel_lat, connected, open_end)
    right = runs(accel_lat < -TURN_ENTRY_MPS2, -accel_lat, connected, open_end)
    warn = runs(fcw, np.zeros(n), connected, open_end)
    fcw_start = warn.starts[~is_carry[warn.starts]]
    return HarshColumns(
        hard_brake_n=count_closed(brake, HARD_BRAKE_MPS2, n),
        harsh_accel_n=count_closed(accel, HARSH_ACCEL_MPS2, n),
        harsh_turn_n=count_closed(left, HARSH_TURN_MPS2, n) + count_closed(right, HARSH_TURN_MPS2, n),
        fcw_n=np.bincount(fcw_start, minlength=n).astype(np.float64),
        brake_peak_mps2=-brake.peak_at_end(n),
        accel_peak_mps2=accel.peak_at_end(n),
        turn_peak_mps2=left.peak_at_end(n) - right.peak_at_end(n),
    )
