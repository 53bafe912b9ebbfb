"""What a telemetry insert costs with the warehouse's views and settings, against the
same table alone, measured in one process on the same Arrow tables.

    .venv/bin/python bench/bench_insert.py [--rows 300000] [--batch 100000] [--reps 5]

Variants, inserted in turn (every variant once per round, the table truncated after):
``bare`` a copy of telemetry_dynamics without views (the baseline); ``sink`` the table
with its views and the sink's settings; ``optimize_on_insert`` the same with
optimize_on_insert=1 (the setting before 0042); ``exact_activity`` a copy with the same
views plus the vehicle_activity view 0042 dropped (uniqExactState of every event id per
vehicle); ``before_0042`` that copy with optimize_on_insert=1, i.e. the insert as it
was before both changes. A first round warms up and is not counted. Prints one JSON object: median rows/s
per variant and its ratio to ``bare``; and the sink's shaping of the same messages into
Arrow tables, numeric columns through numpy (``dense``, the sink's) against the plain
per-value conversion, alternating, medians."""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

from voltrisk.benchmark import TOPIC, insert_tables, shape
from voltrisk.settings import WarehouseSettings
from warehouse.client import writer_client
from warehouse.migrate import migrate
from stream import topics as T
from warehouse.sink import INSERT_SETTINGS, ROUTES, TELEMETRY_INSERT_SETTINGS, Columnar

EXACT_ACTIVITY = ("""
CREATE TABLE probe_activity (vehicle_id LowCardinality(String), carmaker LowCardinality(String),
    events AggregateFunction(uniqExact, String), last_ts_ms SimpleAggregateFunction(max, Int64))
ENGINE = AggregatingMergeTree ORDER BY (vehicle_id, carmaker)
""", """
CREATE MATERIALIZED VIEW probe_activity_mv TO probe_activity AS
SELECT vehicle_id, carmaker, uniqExactState(event_id) AS events, max(ts_ms) AS last_ts_ms
FROM probe_exact GROUP BY vehicle_id, carmaker
""")


def shape_rates(batches: list[list], rows: int, reps: int) -> dict[str, list[float]]:
    """Rows/s of shaping the messages into Arrow tables: the sink's ``Columnar`` and the
    same with every column converted value by value (its ``dense`` set emptied)."""
    record_type = ROUTES[T.clean_name(TOPIC)].columnar.record_type
    out: dict[str, list[float]] = {"dense": [], "plain": []}
    for _ in range(reps):
        for name in out:
            columnar = Columnar(record_type)
            if name == "plain":
                columnar.dense = {}
            t0 = time.perf_counter()
            shape(columnar, batches, 0)
            out[name].append(rows / (time.perf_counter() - t0))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=300_000)
    ap.add_argument("--batch", type=int, default=100_000)
    ap.add_argument("--reps", type=int, default=5)
    args = ap.parse_args()
    base = Path(tempfile.mkdtemp(prefix="voltrisk-insert-"))
    try:
        ws = WarehouseSettings(clickhouse_dsn=f"chdb://{base / 'warehouse'}")
        client = writer_client(ws)
        migrate(client, ws)
        client.command("CREATE TABLE probe_bare AS telemetry_dynamics")
        client.command("CREATE TABLE probe_exact AS telemetry_dynamics")
        views = client.query(
            "SELECT name, create_table_query FROM system.tables WHERE database = currentDatabase() "
            "AND engine = 'MaterializedView' AND match(create_table_query, 'FROM [a-z_]*[.]?telemetry_dynamics[^a-z_]')"
        ).result_rows
        for name, sql in views:  # the same views on the copy, writing to the same rollups
            client.command(sql.replace(name, f"probe_{name}").replace("telemetry_dynamics", "probe_exact"))
        for sql in EXACT_ACTIVITY:
            client.command(sql)
        views = sorted(name for name, _ in views)
        batches, tables, shape_s = insert_tables(args.rows, args.batch)
        print(f"{len(tables)} Arrow tables of {args.batch:,} rows shaped in {shape_s:.1f} s; "
              f"views on telemetry_dynamics: {', '.join(views)}", file=sys.stderr)
        variants = {"bare": ("probe_bare", TELEMETRY_INSERT_SETTINGS),
                    "sink": ("telemetry_dynamics", TELEMETRY_INSERT_SETTINGS),
                    "optimize_on_insert": ("telemetry_dynamics", INSERT_SETTINGS),
                    "exact_activity": ("probe_exact", TELEMETRY_INSERT_SETTINGS),
                    "before_0042": ("probe_exact", INSERT_SETTINGS)}
        rates: dict[str, list[float]] = {k: [] for k in variants}
        token = 0
        for rep in range(args.reps + 1):
            for name, (table, settings) in variants.items():
                t0 = time.perf_counter()
                for t in tables:
                    token += 1
                    client.insert_arrow(table, t, settings=dict(settings, insert_deduplication_token=f"probe:{token}"))
                wall = time.perf_counter() - t0
                stored = client.query(f"SELECT count() FROM {table}").result_rows[0][0]
                if stored != args.rows:
                    raise SystemExit(f"{name}: {stored:,} rows stored of {args.rows:,}")
                if rep:
                    rates[name].append(args.rows / wall)
                client.command(f"TRUNCATE TABLE {table}")
            if rep:
                print(f"round {rep}/{args.reps}: " + ", ".join(f"{k} {v[-1]:,.0f}" for k, v in rates.items()),
                      file=sys.stderr)
        client.close()
        shaping = shape_rates(batches, args.rows, args.reps)
        bare = statistics.median(rates["bare"])
        print(json.dumps({
            "rows": args.rows, "batch_rows": args.batch, "reps": args.reps, "views": views,
            "rows_per_s": {k: round(statistics.median(v)) for k, v in rates.items()},
            "ratio_to_bare": {k: round(statistics.median(v) / bare, 3) for k, v in rates.items()},
            "spread": {k: [round(min(v)), round(max(v))] for k, v in rates.items()},
            "shape_rows_per_s": {k: round(statistics.median(v)) for k, v in shaping.items()},
            "shape_spread": {k: [round(min(v)), round(max(v))] for k, v in shaping.items()},
        }))
    finally:
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
