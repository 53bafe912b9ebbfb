"""The fraud agent's telemetry read: claims/s of ``WarehouseTelemetry.records_for``.

A warehouse (chDB) is seeded with the telemetry of ``--vehicles`` insured vehicles
(dynamics at 1 Hz, a state every 10 s, a crash each, over ``--hours``), then served by
``voltrisk warehouse serve --no-sink`` — the read-only endpoint the worker reads, in
its own process. A backlog of one claim per vehicle (the case after a warehouse
outage: the agent's batch of up to 500) is read through it, alternating, with:

- ``per_claim``: ``CLAIMS_PER_QUERY = 1``, three queries per claim (the agent before
  it read in chunks; the baseline of this run);
- ``chunked``: the agent's setting, three queries per ``CLAIMS_PER_QUERY`` claims.

Both must return the same records for every claim. Prints one JSON object:

    .venv/bin/python bench/bench_fraud_lookup.py --vehicles 500 --json
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

from contracts.examples import RAW_EXAMPLES
from fraudring import lookup
from stream import topics as T
from voltrisk.harness import free_port, http_ok, wait_for
from voltrisk.settings import WarehouseSettings
from warehouse.client import http_client, writer_client
from warehouse.migrate import migrate

BASE_MS = 1_767_225_600_000  # 2026-01-01 00:00 UTC


def seed(dsn: str, vehicles: int, hours: int) -> list:
    """Telemetry of ``vehicles`` vehicles and one claim each, its loss inside the span."""
    ws = WarehouseSettings(clickhouse_dsn=dsn)
    client = writer_client(ws)
    migrate(client, ws)
    span_s = hours * 3600
    kinds = (("telemetry_dynamics", T.DYNAMICS, 1), ("telemetry_state", T.STATE, 10), ("telemetry_crash", T.CRASH, span_s))
    for table, spec, every_s in kinds:
        example = RAW_EXAMPLES[spec.name].record
        for v0 in range(0, vehicles, 50):  # inserts of a few hundred thousand rows
            rows = [msgspec.json.encode({**msgspec.to_builtins(msgspec.structs.replace(
                        example, event_id=f"{table}-{v}-{s}", ts_ms=BASE_MS + s * 1000 + v)), "vehicle_id": f"veh-{v}"})
                    for v in range(v0, min(v0 + 50, vehicles)) for s in range(0, span_s, every_s)]
            client.raw_insert(table, None, b"\n".join(rows), fmt="JSONEachRow")
    client.close()
    example = RAW_EXAMPLES[T.FNOL.name].record
    claims = []
    for v in range(vehicles):
        parties = [msgspec.structs.replace(p, vehicle_id=f"veh-{v}") if p.role == "insured" else p for p in example.parties]
        loss = BASE_MS + (v * 7919 % span_s) * 1000
        claims.append(msgspec.structs.replace(example, claim_id=f"claim-{v}", loss_ts_ms=loss, parties=parties))
    return claims


def timed(url: str, claims: list, per_query: int) -> tuple[float, dict, int]:
    """Seconds to read every claim's records, the records, and the queries sent."""
    client = http_client(url)
    sent = 0
    query = client.query

    def counting(*args, **kwargs):
        nonlocal sent
        sent += 1
        return query(*args, **kwargs)

    client.query = counting
    saved, lookup.CLAIMS_PER_QUERY = lookup.CLAIMS_PER_QUERY, per_query
    try:
        t0 = time.perf_counter()
        got = lookup.WarehouseTelemetry(lambda: client).records_for(claims)
        return time.perf_counter() - t0, got, sent
    finally:
        lookup.CLAIMS_PER_QUERY = saved
        client.close()


def main() -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--vehicles", type=int, default=500, help="insured vehicles, one claim each (the agent takes 500 a batch)")
    ap.add_argument("--hours", type=int, default=2, help="hours of telemetry per vehicle")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args()
    chunk = lookup.CLAIMS_PER_QUERY
    with tempfile.TemporaryDirectory(prefix="voltrisk-lookup-") as home:
        dsn = f"chdb://{Path(home) / 'warehouse'}"
        t0 = time.perf_counter()
        claims = seed(dsn, a.vehicles, a.hours)
        print(f"seeded {a.vehicles} vehicles x {a.hours} h in {time.perf_counter() - t0:.0f} s", file=sys.stderr)
        port = free_port()
        env = {**os.environ, "VOLTRISK_CLICKHOUSE_DSN": dsn, "VOLTRISK_WAREHOUSE_HTTP_PORT": str(port),
               "VOLTRISK_HOME": str(Path(home) / "home")}
        log = open(Path(home) / "warehouse.log", "w")
        proc = subprocess.Popen([sys.executable, "-m", "voltrisk", "warehouse", "serve", "--no-sink"], env=env,
                                stdout=log, stderr=subprocess.STDOUT)
        url = f"http://127.0.0.1:{port}"
        try:
            wait_for(lambda: http_ok(url + "/ping"), 120, "the read-only endpoint")
            runs: dict[str, list[float]] = {"per_claim": [], "chunked": []}
            queries, reference = {}, None
            for _ in range(a.repeats):
                for name, per_query in (("per_claim", 1), ("chunked", chunk)):
                    seconds, got, sent = timed(url, claims, per_query)
                    runs[name].append(len(claims) / seconds)
                    queries[name] = sent
                    ids = {c: [r.event_id for r in recs] for c, recs in got.items()}
                    if reference is None:
                        reference = ids
                    elif ids != reference:
                        raise SystemExit(f"{name} read other records than the first run: the bench is void")
        finally:
            proc.terminate()
            proc.wait(30)
            log.close()
    out = {
        "bench": "fraud_lookup", "date_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "python": platform.python_version(), "claims": len(claims), "hours_per_vehicle": a.hours,
        "records_read": sum(map(len, reference.values())), "claims_per_query": chunk, "queries": queries,
        "claims_per_s": {k: round(max(v)) for k, v in runs.items()},
        "runs": {k: [round(x) for x in v] for k, v in runs.items()},
    }
    out["speedup"] = round(out["claims_per_s"]["chunked"] / out["claims_per_s"]["per_claim"], 1)
    print(json.dumps(out) if a.json else json.dumps(out, indent=2))
    return out


if __name__ == "__main__":
    main()
