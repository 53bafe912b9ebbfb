"""Builders for hand-made event sequences (columns straight from arrays)."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from stream.features import Batch, Dynamics, Replay, States, decode_state, encode_state, flush_idle, update
from stream.features.cells import cells_of

G = 9.80665
# 2026-06-01 00:00:00 China Standard Time (UTC+8), in UTC epoch ms
MIDNIGHT_LOCAL_MS = 1_780_243_200_000


def dynamics(ts_ms, vehicle="v1", speed_kmh=50.0, accel_long_mps2=0.0, accel_lat_mps2=0.0, motor_power_kw=10.0,
             fcw=False, headway_s=np.nan, seatbelt_driver=True, lat=31.23, lon=121.47) -> Dynamics:
    ts = np.asarray(ts_ms, np.int64)
    n = len(ts)

    def col(x, dtype=np.float64):
        return np.broadcast_to(np.asarray(x, dtype), (n,)).copy()

    return Dynamics(vehicle_id=np.array([vehicle] * n, object) if isinstance(vehicle, str) else np.asarray(vehicle, object),
                    ts_ms=ts, speed_kmh=col(speed_kmh), accel_long_mps2=col(accel_long_mps2),
                    accel_lat_mps2=col(accel_lat_mps2), motor_power_kw=col(motor_power_kw), fcw=col(fcw, bool),
                    headway_s=col(headway_s), seatbelt_driver=col(seatbelt_driver, bool), cell=cells_of(col(lat), col(lon)))


def states(ts_ms, vehicle="v1", soc_pct=80.0, parked=False) -> States:
    ts = np.asarray(ts_ms, np.int64)
    n = len(ts)
    return States(vehicle_id=np.array([vehicle] * n, object), ts_ms=ts,
                  soc_pct=np.broadcast_to(np.asarray(soc_pct, np.float64), (n,)).copy(),
                  parked=np.broadcast_to(np.asarray(parked, bool), (n,)).copy())


def run(batches, cells=None, flush=True) -> Replay:
    """Feed batches through ``update`` (states round-tripped through bytes, as the
    agent stores them), then close idle trips."""
    rep = Replay()
    st: dict = {}
    for b in batches:
        u = update(st, b, cells)
        rep.add(u)
        st.update({v: decode_state(encode_state(s)) for v, s in u.states.items()})
    if flush:
        end = max((s.seen_ts_ms for s in st.values()), default=0) + 300_001
        rep.add(flush_idle(st, end, cells))
    rep.states = st
    return rep


def split(d: Dynamics, at: list[int]) -> list[Batch]:
    edges = [0, *at, len(d)]
    return [Batch.of(dynamics=d.take(np.arange(a, b))) for a, b in zip(edges[:-1], edges[1:])]


@pytest.fixture
def mk():
    return SimpleNamespace(dynamics=dynamics, states=states, run=run, split=split, G=G,
                           midnight=MIDNIGHT_LOCAL_MS, Batch=Batch)
