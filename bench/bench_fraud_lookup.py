"""The fraud agent's telemetry read: claims/s of ``WarehouseTelemetry``, records against facts.

A warehouse (chDB) is seeded, through the sink's own Arrow columns (the H3 cell
included), with the telemetry of ``--vehicles`` insured vehicles over ``--hours``:
dynamics at ``--hz``, a state every second, now and then an impact-hard sample, a
crash pulse on every tenth vehicle. It is then served by ``voltrisk warehouse serve
--no-sink``, the read-only endpoint the worker reads, in its own process. A backlog of
one claim per vehicle (the case after a warehouse outage: the agent's batch of up to
500) is judged through it, alternating, with:

- ``records``: ``records_for`` (the window's rows, a query per table for 100 claims)
  then ``facts_from_telemetry`` in Python: the agent before the warehouse aggregated;
- ``facts``: ``facts_for``, each window aggregated in the warehouse: the agent now.

Both must give the same facts for every claim. Prints one JSON object:

    .venv/bin/python bench/bench_fraud_lookup.py --vehicles 200 --hz 10 --json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import msgspec
import numpy as np
import pyarrow as pa

from contracts.examples import RAW_EXAMPLES
from fraudring import lookup
from fraudring.verify import facts_from_telemetry
from stream import topics as T
from stream.features.cells import cells_of
from voltrisk.harness import free_port, http_ok, wait_for
from voltrisk.settings import WarehouseSettings
from warehouse.client import http_client, writer_client
from warehouse.migrate import migrate
from warehouse.sink import INSERT_SETTINGS, ROUTES

LAT0, LON0 = 31.2304, 121.4737


def _table(spec: T.TopicSpec, vehicles: np.ndarray, ts: np.ndarray, lat: np.ndarray, lon: np.ndarray,
           **columns: np.ndarray) -> pa.Table:
    """The rows as the sink's Arrow insert has them: the contract example's values, with
    these vehicles, times, positions and ``columns``, the sink's columns and the H3 cell."""
    columnar = ROUTES[T.clean_name(spec.name)].columnar
    example = msgspec.to_builtins(RAW_EXAMPLES[spec.name].record)
    n = len(ts)
    given = {"ts_ms": ts, "lat": lat, "lon": lon, **columns,
             "event_id": np.char.add(f"{spec.name}-", np.arange(n).astype(str)).astype(object)}
    names, arrays = [], []
    for name, t in columnar.fields:
        names.append(name)
        arrays.append(pa.array(given[name], t) if name in given else pa.array([example[name]] * n, t))
    for name, t in columnar.SINK:
        names.append(name)
        sink = vehicles if name == "vehicle_id" else [""] * n if t == pa.string() else np.zeros(n, np.int64)
        arrays.append(pa.array(sink, t))
    return pa.Table.from_arrays(arrays + [pa.array(cells_of(lat, lon), pa.uint64())], names=names + ["h3_r8"])


def seed(dsn: str, vehicles: int, hours: int, hz: int) -> list:
    """Telemetry of ``vehicles`` vehicles and one claim each, its loss inside the span."""
    ws = WarehouseSettings(clickhouse_dsn=dsn)
    client = writer_client(ws)
    migrate(client, ws)
    rng = np.random.default_rng(7)
    span_s = hours * 3600
    base_ms = (int(time.time()) - 86_400 - span_s) * 1000  # recent: raw positions kept (they expire after 30 days)
    example = RAW_EXAMPLES[T.FNOL.name].record
    claims = []
    for v in range(vehicles):
        n = span_s * hz
        ts = base_ms + np.arange(n, dtype=np.int64) * (1000 // hz) + v
        lat = LAT0 + v * 1e-3 + np.cumsum(rng.normal(0, 2e-5, n))
        lon = LON0 + np.cumsum(rng.normal(0, 2e-5, n))
        speed = np.abs(np.cumsum(rng.normal(0, 0.5, n))).clip(0, 130).astype(np.float32)
        accel = rng.normal(0, 1.5, n).astype(np.float32)
        accel[rng.random(n) < 2e-5] = 25.0  # an impact-hard sample now and then
        vid = np.full(n, f"veh-{v}", dtype=object)
        tables = [("telemetry_dynamics", _table(T.DYNAMICS, vid, ts, lat, lon, speed_kmh=speed, accel_long_mps2=accel))]
        s = slice(None, None, hz)  # a state a second
        tables.append(("telemetry_state", _table(T.STATE, vid[s], ts[s], lat[s], lon[s], speed_kmh=speed[s])))
        if v % 10 == 0:
            k = n // 2
            tables.append(("telemetry_crash", _table(T.CRASH, vid[k:k + 1], ts[k:k + 1], lat[k:k + 1], lon[k:k + 1])))
        for table, arrow in tables:
            client.insert_arrow(table, arrow, settings=dict(INSERT_SETTINGS, insert_deduplication_token=f"{table}:{v}"))
        at = int(rng.integers(0, n))  # the claimed loss: where and when the vehicle was
        parties = [msgspec.structs.replace(p, vehicle_id=f"veh-{v}") if p.role == "insured" else p for p in example.parties]
        claims.append(msgspec.structs.replace(example, claim_id=f"claim-{v}", loss_ts_ms=int(ts[at]),
                                              lat=float(lat[at]), lon=float(lon[at]), parties=parties))
    client.close()
    return claims


def timed(url: str, claims: list, how: str) -> tuple[float, dict, int, int]:
    """Seconds to judge every claim's telemetry, the facts, the queries sent, and the rows
    that came back (records, or one aggregate per claim and table)."""
    client = http_client(url)
    sent = 0
    query = client.query

    def counting(*args, **kwargs):
        nonlocal sent
        sent += 1
        return query(*args, **kwargs)

    client.query = counting
    reader = lookup.WarehouseTelemetry(lambda: client)
    try:
        t0 = time.perf_counter()
        if how == "records":
            records = reader.records_for(claims)
            facts = {c.claim_id: facts_from_telemetry(c.loss_ts_ms, c.lat, c.lon, records[c.claim_id]) for c in claims}
            rows = sum(map(len, records.values()))
        else:
            facts, rows = reader.facts_for(claims), 0
        return time.perf_counter() - t0, facts, sent, rows
    finally:
        client.close()


def main() -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--vehicles", type=int, default=200, help="insured vehicles, one claim each (the agent takes 500 a batch)")
    ap.add_argument("--hours", type=int, default=1, help="hours of telemetry per vehicle")
    ap.add_argument("--hz", type=int, default=10, choices=range(1, 11), metavar="1-10", help="dynamics rate")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="voltrisk-lookup-") as home:
        dsn = f"chdb://{Path(home) / 'warehouse'}"
        t0 = time.perf_counter()
        claims = seed(dsn, a.vehicles, a.hours, a.hz)
        print(f"seeded {a.vehicles} vehicles x {a.hours} h at {a.hz} Hz in {time.perf_counter() - t0:.0f} s", file=sys.stderr)
        port = free_port()
        env = {**os.environ, "VOLTRISK_CLICKHOUSE_DSN": dsn, "VOLTRISK_WAREHOUSE_HTTP_PORT": str(port),
               "VOLTRISK_HOME": str(Path(home) / "home")}
        log = open(Path(home) / "warehouse.log", "w")
        proc = subprocess.Popen([sys.executable, "-m", "voltrisk", "warehouse", "serve", "--no-sink"], env=env,
                                stdout=log, stderr=subprocess.STDOUT)
        url = f"http://127.0.0.1:{port}"
        try:
            wait_for(lambda: http_ok(url + "/ping"), 120, "the read-only endpoint")
            runs: dict[str, list[float]] = {"records": [], "facts": []}
            queries, rows, reference = {}, 0, None
            for _ in range(a.repeats):
                for how in runs:
                    seconds, facts, sent, got_rows = timed(url, claims, how)
                    runs[how].append(len(claims) / seconds)
                    queries[how], rows = sent, max(rows, got_rows)
                    if reference is None:
                        reference = facts
                    elif facts != reference:
                        bad = next(c for c in reference if facts.get(c) != reference[c])
                        raise SystemExit(f"{how} judged {bad} otherwise than the records: the bench is void")
        finally:
            proc.terminate()
            proc.wait(30)
            log.close()
    out = {
        "bench": "fraud_lookup", "date_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "python": platform.python_version(), "claims": len(claims), "hours_per_vehicle": a.hours, "dynamics_hz": a.hz,
        "records_read": rows, "claims_per_query": lookup.CLAIMS_PER_QUERY, "queries": queries,
        "with_crash_pulse": sum(f.crash_pulse_found for f in reference.values()),
        "claims_per_s": {k: round(max(v), 1) for k, v in runs.items()},
        "runs": {k: [round(x, 1) for x in v] for k, v in runs.items()},
    }
    out["speedup"] = round(out["claims_per_s"]["facts"] / out["claims_per_s"]["records"], 1)
    print(json.dumps(out) if a.json else json.dumps(out, indent=2))
    return out


if __name__ == "__main__":
    main()
