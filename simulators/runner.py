"""Run loops: push a scenario's events into a sink (fast or at wall-clock pace), and
the load generator that holds a target event rate."""

from __future__ import annotations

import asyncio
import heapq
import itertools
import math
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np

from simulators import drivers, fleet

CHUNK = 5_000


def local_midnight_ms(ts_ms: int) -> int:
    """Start of the Shanghai-local day containing ``ts_ms``."""
    return (ts_ms + fleet.LOCAL_UTC_OFFSET_MS) // fleet.DAY_MS * fleet.DAY_MS - fleet.LOCAL_UTC_OFFSET_MS


async def pump(events: Iterator[fleet.Event], sink, realtime: bool, on_progress: Callable[[int, int], None],
               send_from_ms: int | None = None) -> Counter:
    """Send ``events`` to ``sink`` in chunks. Real time: an event is sent once the wall
    clock reaches its timestamp (the backlog before now goes at once). Events before
    ``send_from_ms`` are simulated (the fleet's state depends on them) but not sent."""
    counts: Counter = Counter()
    chunk: list[fleet.Event] = []
    for e in events:
        if send_from_ms is not None and e.ts_ms < send_from_ms:
            continue
        if realtime:
            while e.ts_ms > time.time() * 1000:
                if chunk:
                    await sink.send(chunk)
                    chunk = []
                await asyncio.sleep(min(1.0, e.ts_ms / 1000 - time.time()))
        chunk.append(e)
        counts[e.topic] += 1
        if len(chunk) >= CHUNK:
            await sink.send(chunk)
            on_progress(len(chunk), e.ts_ms)
            chunk = []
    if chunk:
        await sink.send(chunk)
        on_progress(len(chunk), chunk[-1].ts_ms)
    return counts


def percentiles(values: list[float]) -> dict[str, float | None]:
    if not values:
        return {"p50": None, "p95": None, "p99": None}
    a = np.asarray(values)
    return {f"p{q}": round(float(np.percentile(a, q)), 2) for q in (50, 95, 99)}


@dataclass(frozen=True)
class LoadResult:
    target_rate: float
    achieved_rate: float
    events_sent: int
    errors: int
    duration_s: float
    held_within_2pct: bool
    vehicles: int
    dynamics_hz: int
    produce_ack_latency_ms: dict
    flush_s: float
    warmup_s: float
    client_cpu_cores: float  # CPU seconds this process used per second of the run (1.0 = one core)


def load_stream(vehicles: int, rate: float, seed: int, start_ms: int) -> tuple[Iterator[fleet.Event], int]:
    """Every vehicle driving continuously, merged in time order, at the dynamics rate
    that makes the fleet's natural event rate at least ``rate`` (so timestamps never
    run ahead of the wall clock)."""
    hz = math.ceil(rate / vehicles)
    if hz > 10:
        raise ValueError(
            f"--rate {rate:g} with --vehicles {vehicles}: that is {rate / vehicles:.1f} events/s per vehicle, "
            f"but ev.dynamics.v1 is at most 10 Hz; use at least {math.ceil(rate / 10)} vehicles"
        )
    pop = drivers.build_population(vehicles, seed)
    cfg = fleet.FleetConfig(start_ms=local_midnight_ms(start_ms), dynamics_hz=max(hz, 1), crash_scale=0.0)
    # vehicles start spread over the second before ``start_ms``, so no timestamp is ahead of it
    streams = [fleet.continuous_driving(pop, i, cfg, start_ms - 1_000 + i * 997 % 1_000) for i in range(vehicles)]
    return heapq.merge(*streams, key=lambda e: e.ts_ms), max(hz, 1)


# seconds of events the load's token bucket holds: a 2,000 events/s run into the test
# broker once lost 0.4 s of its 4 s to a stall of the busy 2-core machine with 0.5
BUCKET_S = 1.0


async def run_load(
    sink,
    stream: Iterator[fleet.Event],
    rate: float,
    duration_s: float,
    vehicles: int,
    hz: int,
    on_progress: Callable[[int], None],
    tick_s: float = 0.01,
) -> LoadResult:
    """Token bucket over batches: every tick, add rate x elapsed tokens and send that many
    events. The bucket holds ``BUCKET_S`` worth, so a stall (a full partition queue, a busy
    core) is caught up rather than lost; a longer stall shows up as a missed target."""
    # the first event makes every vehicle plan and drive its first trip: do that before the clock starts
    w0 = time.perf_counter()
    stream = itertools.chain([next(stream)], stream)
    warmup_s = time.perf_counter() - w0
    sent = 0
    tokens = 0.0
    c0 = time.process_time()
    t0 = last = time.perf_counter()
    end = t0 + duration_s
    while True:
        now = time.perf_counter()
        if now >= end:
            break
        tokens = min(tokens + rate * (now - last), rate * BUCKET_S)
        last = now
        n = int(tokens)
        if n:
            batch = list(itertools.islice(stream, n))
            await sink.send(batch)
            sent += len(batch)
            tokens -= len(batch)
            on_progress(len(batch))
        await asyncio.sleep(max(0.0, tick_s - (time.perf_counter() - now)))
    send_window = time.perf_counter() - t0
    cpu_share = (time.process_time() - c0) / send_window
    f0 = time.perf_counter()
    await sink.flush()
    flush_s = time.perf_counter() - f0
    achieved = sent / send_window
    return LoadResult(
        target_rate=rate,
        achieved_rate=round(achieved, 1),
        events_sent=sent,
        errors=sink.errors,
        duration_s=round(send_window, 3),
        held_within_2pct=abs(achieved - rate) <= 0.02 * rate and sink.errors == 0,
        vehicles=vehicles,
        dynamics_hz=hz,
        produce_ack_latency_ms=percentiles(sink.ack_latency_ms),
        flush_s=round(flush_s, 3),
        warmup_s=round(warmup_s, 3),
        client_cpu_cores=round(cpu_share, 3),
    )
