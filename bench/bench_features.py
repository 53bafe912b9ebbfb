"""Throughput of the streaming feature functions on one core.

Generates a seeded telemetry stream (many vehicles interleaved in event-time order,
1 and 10 Hz dynamics, SOC states, park states, alarms, crashes), encodes it as the
JSON the clean topics carry, then times, in the same run:

- ``decode``: plain msgspec decode of every record into its typed Struct (baseline);
- ``features``: decode, ``Batch.from_records``, ``update`` and the state round trip
  through bytes that the agent does with its RocksDB table, batch by batch;
- ``features_only``: the same without the decode;
- ``engine``: what the worker's features agent runs per batch, ``FeatureEngine.step``
  (decode, reorder buffer, redelivery check, ``update``, state store, the rows to emit
  and the reference score every ``score_every_ms``) on the records packed as the clean
  topics carry them: a vehicle's consecutive records of one kind, up to 10 a message.

Rates are events per second of this process's CPU time (``time.process_time``), i.e.
per core: on a shared machine wall-clock rates move with other people's load; the
wall-clock rate of the features path is reported beside them.

Prints one JSON object on stdout. Example:

    .venv/bin/python bench/bench_features.py --vehicles 400 --batch 2000
"""

from __future__ import annotations

import argparse
import gc
import json
import platform
import statistics
import sys
import time

import msgspec

from stream import topics as T
from stream.featuring import FeatureEngine
from stream.features import Batch, decode_state, encode_state, update
from stream.features.synthetic import synthetic_stream
from stream.records import AlarmV1, CrashV1, DynamicsV1, StateV1

DECODERS = {t: msgspec.json.Decoder(t) for t in (DynamicsV1, StateV1, AlarmV1, CrashV1)}


def _clock() -> tuple[float, float]:
    return time.process_time(), time.perf_counter()


def _since(start: tuple[float, float]) -> tuple[float, float]:
    cpu, wall = _clock()
    return cpu - start[0], wall - start[1]


def run_features(wire: list[tuple[str, type, bytes]], batch_size: int, decode: bool, pairs=None) -> tuple[float, float]:
    states: dict = {}
    t = _clock()
    for i in range(0, len(wire), batch_size):
        if decode:
            chunk = [(vid, DECODERS[kind].decode(raw)) for vid, kind, raw in wire[i: i + batch_size]]
        else:
            chunk = pairs[i: i + batch_size]
        batch = Batch.from_records(chunk)
        stored = {v: decode_state(states[v]) for v in batch.vehicle_ids() if v in states}
        u = update(stored, batch)
        states.update({v: encode_state(s) for v, s in u.states.items()})
    return _since(t)


CLEAN_TOPIC = {t.record: T.clean_name(t.name) for t in T.RAW if t.kind == "telemetry"}  # record type -> clean topic


def clean_messages(pairs, per_message: int = 10) -> list[tuple[str, bytes, bytes]]:
    """(clean topic, vehicle id, JSON array) messages: each vehicle's records of one kind
    in arrival order, ``per_message`` at most, sent when full (the rest at the end)."""
    out, pending = [], {}
    for vid, r in pairs:
        buf = pending.setdefault((vid, type(r)), [])
        buf.append(r)
        if len(buf) == per_message:
            out.append((CLEAN_TOPIC[type(r)], vid.encode(), msgspec.json.encode(buf)))
            pending[(vid, type(r))] = []
    out += [(CLEAN_TOPIC[kind], vid.encode(), msgspec.json.encode(buf))
            for (vid, kind), buf in pending.items() if buf]
    return out


def run_engine(msgs: list[tuple[str, bytes, bytes]], batch_messages: int) -> tuple[float, float]:
    engine = FeatureEngine({}, score_every_ms=5_000, reorder_ms=10_000)
    t = _clock()
    for i in range(0, len(msgs), batch_messages):
        engine.step(msgs[i: i + batch_messages])
        engine.take_settled()
    engine.drain()
    return _since(t)


def run_decode(wire: list[tuple[str, type, bytes]]) -> tuple[float, float]:
    t = _clock()
    for _vid, kind, raw in wire:
        DECODERS[kind].decode(raw)
    return _since(t)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--vehicles", type=int, default=400)
    ap.add_argument("--trips", type=int, default=1, help="trips per vehicle")
    ap.add_argument("--batch", type=int, default=2000, help="records per update() call")
    ap.add_argument("--take", type=int, default=2000, help="messages per FeatureEngine.step (the worker's VOLTRISK_TAKE_BATCH)")
    ap.add_argument("--repeat", type=int, default=3, help="timed runs; the median is reported")
    ap.add_argument("--seed", type=int, default=7)
    a = ap.parse_args()

    print(f"generating {a.vehicles} vehicles x {a.trips} trips ...", file=sys.stderr)
    pairs = synthetic_stream(vehicles=a.vehicles, trips_per_vehicle=a.trips, seed=a.seed, max_trip_s=600)
    wire = [(vid, type(r), msgspec.json.encode(r)) for vid, r in pairs]
    n = len(wire)
    n_dyn = sum(1 for _, kind, _ in wire if kind is DynamicsV1)
    gc.collect()
    gc.freeze()  # the generated stream stays alive; a worker does not hold 700k records

    def median_rates(fn) -> tuple[float, float]:
        runs = [fn() for _ in range(a.repeat)]
        return n / statistics.median(c for c, _ in runs), n / statistics.median(w for _, w in runs)

    decode, _ = median_rates(lambda: run_decode(wire))
    features, features_wall = median_rates(lambda: run_features(wire, a.batch, decode=True))
    features_only, _ = median_rates(lambda: run_features(wire, a.batch, decode=False, pairs=pairs))
    msgs = clean_messages(pairs)
    engine, engine_wall = median_rates(lambda: run_engine(msgs, a.take))
    print(json.dumps({
        "events": n,
        "dynamics_events": n_dyn,
        "vehicles": a.vehicles,
        "batch": a.batch,
        "decode_events_per_s": round(decode),
        "features_events_per_s": round(features),
        "features_only_events_per_s": round(features_only),
        "features_wall_clock_events_per_s": round(features_wall),
        "features_vs_decode": round(features / decode, 3),
        "engine_messages": len(msgs),
        "engine_take": a.take,
        "engine_events_per_s": round(engine),
        "engine_wall_clock_events_per_s": round(engine_wall),
        "target_events_per_s": 20_000,
        "python": platform.python_version(),
    }))


if __name__ == "__main__":
    main()
