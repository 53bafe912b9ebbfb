"""Dashboard page render time over a large warehouse, cold and warm cache.

1. Fills a chDB warehouse (``--dir``) with ``--rows`` telemetry rows (90 % dynamics,
   10 % state, generated inside chDB with ``numbers()``), derived tables in proportion
   (cell visits, crashes, DLQ) and per-vehicle tables for a 2,000-vehicle fleet over
   30 days (trips, daily rows, window features, scores, claims) plus 5,000 fraud alerts. Tables already
   filled are kept, so a second run re-uses the data.
2. Serves it with ``voltrisk warehouse serve --no-sink`` (the read-only endpoint).
3. Renders every dashboard page with Streamlit's AppTest (the page script, its
   queries over HTTP and the element tree; not the browser's paint): cold = the
   dashboard's query cache cleared (as when its TTL has expired), warm = the same
   session rerun. Median and maximum of ``--repeat`` runs.

Prints one JSON object on stdout; progress on stderr. Example:

    .venv/bin/python bench/bench_dashboard.py --rows 50000000 --dir /tmp/voltrisk-bench-warehouse
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests" / "dashboard"))

VEHICLES = 2_000
CARMAKERS = 8
CHUNK_ROWS = 5_000_000
T0_MS = 1_764_000_000_000
DAY0 = (T0_MS + 8 * 3_600_000) // 86_400_000
DAYS = 30

_DYNAMICS = """
INSERT INTO telemetry_dynamics (event_id, vehicle_id, key_version, ts_ms, speed_kmh, accel_long_mps2, accel_lat_mps2,
    yaw_rate_dps, heading_deg, motor_power_kw, adas_state, fcw, headway_s, seatbelt_driver, lat, lon, h3_r8, carmaker,
    kafka_partition, kafka_offset, sent_ts_ms, ingest_ts_ms, stored_ts_ms)
SELECT concat('d', toString(number)), concat('veh-', leftPad(toString(number % {v}), 5, '0')), 1,
       {t0} + intDiv(number, {v}) * 100 AS ts, number % 120, ((number % 41) - 20) / 10, ((number % 31) - 15) / 10, 0,
       number % 360, 20, 'off', number % 997 = 0, NULL, true, 31.2 + (number % 1000) / 5000, 121.4 + (number % 777) / 5000,
       0, concat('oem-', toString(number % {v} % {c})), number % 12, number, ts + 40, ts + 60, ts + 100 + number % 900
FROM numbers({start}, {n})
"""
_STATE = """
INSERT INTO telemetry_state (event_id, vehicle_id, key_version, ts_ms, vehicle_status, charging_state, speed_kmh,
    odometer_km, pack_voltage_v, pack_current_a, soc_pct, gear, insulation_resistance_kohm, lat, lon, h3_r8,
    cell_voltage_max_v, cell_voltage_min_v, cell_temp_max_c, cell_temp_min_c, alarm_level, alarm_flags, carmaker,
    kafka_partition, kafka_offset, sent_ts_ms, ingest_ts_ms, stored_ts_ms)
SELECT concat('s', toString(number)), concat('veh-', leftPad(toString(number % {v}), 5, '0')), 1,
       {t0} + intDiv(number, {v}) * 1000 AS ts, 'started', 'not_charging', number % 120, 10000 + number / 1000, 380, 20,
       number % 100, 'D', 5000, 31.2, 121.4, 0, 3.9, 3.8, 30, 28, 0, 0, concat('oem-', toString(number % {v} % {c})),
       number % 12, number, ts + 40, ts + 60, ts + 200 + number % 500
FROM numbers({start}, {n})
"""
_CELL_VISITS = """
INSERT INTO cell_visits (vehicle_id, cell, day, start_ts_ms, distance_km, driving_s, hard_brake_n, harsh_accel_n,
    harsh_turn_n, speed_hist_s, version_ts_ms)
SELECT concat('veh-', leftPad(toString(number % {v}), 5, '0')),
       arrayElement({cells}, 1 + (cityHash64(number) % length({cells}))),
       {day0} - (intDiv(number, {v}) % {days}), {t0} + number, 1 + number % 5, 60 + number % 600,
       number % 7 = 0, number % 11 = 0, number % 13 = 0,
       arrayMap(i -> if(i = 2 + number % 8, toFloat64(60 + number % 600), 0.), range(26)), {t0}
FROM numbers({start}, {n})
"""
_CELL_CRASHES = """
INSERT INTO cell_crashes (event_id, vehicle_id, ts_ms, cell)
SELECT concat('c', toString(number)), concat('veh-', leftPad(toString(number % {v}), 5, '0')),
       {t0} - (number % {days}) * 86400000, arrayElement({cells}, 1 + (cityHash64(number, 7) % length({cells})))
FROM numbers({start}, {n})
"""
_DLQ = """
INSERT INTO dlq (source_topic, source_partition, source_offset, error_class, reason, message, key, payload,
    dlq_partition, dlq_offset, stored_ts_ms)
SELECT ['ev.dynamics.v1', 'ev.state.v1'][1 + number % 2], number % 12, number, 'ValidationError',
       ['schema', 'range', 'nan', 'late', 'duplicate'][1 + number % 5], 'generated', 'k', '{{}}', number % 3, number,
       {t0} + number * 10
FROM numbers({start}, {n})
"""


_TRIPS = """
INSERT INTO trips (vehicle_id, start_ts_ms, end_ts_ms, end_reason, samples_n, duration_s, distance_km, mean_speed_kmh,
    max_speed_kmh, night_share, speeding_share, unsafe_following_share, unbuckled_share, regen_share, soc_start_pct,
    hard_brake_n, harsh_accel_n, harsh_turn_n, fcw_n, version_ts_ms)
SELECT concat('veh-', leftPad(toString(number % {v}), 5, '0')), {t0} - intDiv(number, {v}) * 10800000 AS start,
       start + 1800000, 'ignition_off', 1800, 1800, 5 + number % 30, 30, 90, (number % 10) / 100, (number % 7) / 100, 0.01,
       0, 0.6, 80, number % 4, number % 3, number % 2, number % 5 = 0, {t0}
FROM numbers({start}, {n})
"""
_VEHICLE_DAILY = """
INSERT INTO vehicle_daily (vehicle_id, day, distance_km, driving_s, night_s, speeding_s, unsafe_following_s, unbuckled_s,
    brake_s, regen_brake_s, cell_risk_s, hard_brake_n, harsh_accel_n, harsh_turn_n, fcw_n, trips_n, soc_start_sum_pct,
    soc_start_n, thermal_alarm_n, crash_n, version_ts_ms)
SELECT concat('veh-', leftPad(toString(number % {v}), 5, '0')), {day0} - intDiv(number, {v}), 10 + number % 60,
       1200 + number % 5000, 0, 60, 10, 0, 300, 200, 3000, number % 6, number % 4, number % 3, number % 2, 4, 300, 4, 0,
       number % 997 = 0, {t0}
FROM numbers({start}, {n})
"""
_CLAIMS_FNOL = """
INSERT INTO claims_fnol (event_id, claim_id, policy_id, ts_ms, loss_ts_ms, lat, lon, h3_r8, amount_eur, parties, garage,
    tow_company, lawyer, clinic, description, kafka_partition, kafka_offset, sent_ts_ms, ingest_ts_ms, stored_ts_ms)
SELECT concat('fnol-', toString(number)), concat('claim-', toString(number)), concat('pol-', toString(number % {v})),
       {t0} - (number % {days}) * 86400000, {t0} - (number % {days}) * 86400000 - 3600000, 31.2, 121.4, 0,
       500 + cityHash64(number) % 9000, '[]', NULL, NULL, NULL, NULL, '', number % 3, number, {t0}, {t0}, {t0}
FROM numbers({start}, {n})
"""
_SCORES = """
INSERT INTO scores (vehicle_id, as_of_day, scorer, score, version_ts_ms)
SELECT concat('veh-', leftPad(toString(intDiv(number, 2) % {v}), 5, '0')), {day0} - intDiv(number, 2 * {v}),
       ['reference', 'ubi-telematics@v1'][1 + number % 2], if(number % 2 = 0, 50 + cityHash64(number) % 50,
       0.6 + (cityHash64(number) % 90) / 100), {t0}
FROM numbers({start}, {n})
"""
_FRAUD_ALERTS = """
INSERT INTO fraud_alerts (alert_id, claim_id, ring_id, created_ts_ms, claim_ts_ms, score, amount_eur, expected_saving_eur,
    verdict, members, evidence, reasons, version)
SELECT concat('alert-', toString(number)), concat('claim-', toString(number * 3)), concat('ring-', toString(number)),
       {t0} + number, {t0}, (cityHash64(number) % 100) / 100 AS score, 1000 + cityHash64(number, 1) % 20000 AS amount,
       score * amount, ['contradicted', 'consistent', 'no_telematics'][1 + number % 3],
       [concat('claim-', toString(number * 3)), concat('claim-', toString(number * 3 + 1)), concat('claim-', toString(number * 3 + 2))],
       ['no crash pulse within 5 min of the claimed loss'], ['3 claims share one phone'], 1
FROM numbers({start}, {n})
"""
_FRAUD_CLAIMS = """
INSERT INTO fraud_claims (claim_id, policy_id, ts_ms, loss_ts_ms, lat, lon, cell_h3, amount_eur, ring_id, verdict,
    telematics_available, insured_in_cell, third_party_in_cell, crash_pulse_found, crash_delta_v_kmh, speed_at_loss_kmh,
    parked_or_charging_at_loss, evidence, version)
SELECT concat('claim-', toString(number)), concat('pol-', toString(number)), {t0}, {t0} - 3600000, 31.2, 121.4, 0,
       1000 + number % 5000, concat('ring-', toString(intDiv(number, 3))), ['contradicted', 'consistent'][1 + number % 2],
       true, true, number % 2 = 0, number % 2 = 1, NULL, 30, false, ['checked'], 1
FROM numbers({start}, {n})
"""
_FRAUD_ENTITIES = """
INSERT INTO fraud_claim_entities (kind, entity_key, claim_id, ts_ms, version)
SELECT ['phone', 'garage', 'person', 'address'][1 + number % 4],
       if(number % 4 < 2, concat('shared-', toString(intDiv(number, 12))), concat('own-', toString(number))),
       concat('claim-', toString(intDiv(number, 4))), {t0}, 1
FROM numbers({start}, {n})
"""
_FRAUD_DECISIONS = """
INSERT INTO fraud_decisions (event_id, alert_id, ts_ms, status, investigator, note, version)
SELECT concat('dec-', toString(number)), concat('alert-', toString(number * 5)), {t0} + number,
       ['investigating', 'confirmed', 'dismissed'][1 + number % 3], 'bench', '', {t0} + number
FROM numbers({start}, {n})
"""


def vehicle_features_sql() -> str:
    """Insert of {n} rows of every contract feature (values from a hash of the row number)."""
    from stream.features.outputs import VehicleFeaturesV1

    fields = [f for f in VehicleFeaturesV1.__struct_fields__ if f not in ("vehicle_id", "as_of_day", "version_ts_ms")]
    values = ", ".join(f"(cityHash64(number, {i}) % 1000) / 100" for i in range(len(fields)))
    return (f"INSERT INTO vehicle_features (vehicle_id, as_of_day, {', '.join(fields)}, version_ts_ms) "
            "SELECT concat('veh-', leftPad(toString(number % {v}), 5, '0')), {day0} - intDiv(number, {v}), "
            f"{values.replace('{', '{{').replace('}', '}}')}, {{t0}} FROM numbers({{start}}, {{n}})")


def shanghai_cells() -> str:
    """About 1,300 res-8 cells around central Shanghai, as a ClickHouse array literal."""
    import h3

    centre = h3.latlng_to_cell(31.23, 121.47, 8)
    return "[" + ",".join(str(h3.str_to_int(c)) for c in sorted(h3.grid_disk(centre, 20))) + "]"


def fill(path: Path, rows: int) -> dict[str, int]:
    from rich.progress import Progress

    from voltrisk.settings import WarehouseSettings
    from warehouse.client import writer_client
    from warehouse.migrate import migrate

    settings = WarehouseSettings(clickhouse_dsn=f"chdb://{path}")
    client = writer_client(settings)
    cells = shanghai_cells()
    plan = {
        "telemetry_dynamics": (_DYNAMICS, rows * 9 // 10),
        "telemetry_state": (_STATE, rows - rows * 9 // 10),
        "cell_visits": (_CELL_VISITS, max(rows // 40, 1_000)),
        "cell_crashes": (_CELL_CRASHES, max(rows // 100_000, 10)),
        "dlq": (_DLQ, max(rows // 5_000, 10)),
        "trips": (_TRIPS, VEHICLES * DAYS * 4),
        "vehicle_daily": (_VEHICLE_DAILY, VEHICLES * DAYS),
        "claims_fnol": (_CLAIMS_FNOL, 3_000),
        "vehicle_features": (vehicle_features_sql(), VEHICLES * DAYS),
        "scores": (_SCORES, VEHICLES * DAYS * 2),
        "fraud_alerts": (_FRAUD_ALERTS, 5_000),
        "fraud_claims": (_FRAUD_CLAIMS, 15_000),
        "fraud_claim_entities": (_FRAUD_ENTITIES, 60_000),
        "fraud_decisions": (_FRAUD_DECISIONS, 1_000),
    }
    try:
        migrate(client, settings)
        with Progress(transient=True, console=None) as progress:
            for table, (sql, n) in plan.items():
                have = client.query(f"SELECT count() FROM {table}").result_rows[0][0]
                task = progress.add_task(f"{table}", total=n, completed=have)
                for start in range(have, n, CHUNK_ROWS):
                    client.command(sql.format(v=VEHICLES, c=CARMAKERS, t0=T0_MS, day0=DAY0, days=DAYS, cells=cells,
                                              start=start, n=min(CHUNK_ROWS, n - start)))
                    progress.update(task, completed=min(start + CHUNK_ROWS, n))
        return {table: client.query(f"SELECT count() FROM {table}").result_rows[0][0] for table in plan}
    finally:
        client.close()


def pages() -> list[str]:
    return sorted(p.name for p in (REPO / "dashboard" / "views").glob("*.py"))


def render_times(url: str, repeat: int, only: set[str]) -> dict[str, dict[str, float]]:
    import streamlit as st
    from streamlit.testing.v1 import AppTest

    os.environ["VOLTRISK_DASHBOARD_CLICKHOUSE_URL"] = url
    out = {}
    for page in pages():
        if only and page.removesuffix(".py") not in only:
            continue
        cold, warm = [], []
        for _ in range(repeat):
            st.cache_data.clear()
            at = AppTest.from_file(str(REPO / "dashboard" / "views" / page), default_timeout=120)
            t = time.perf_counter()
            at.run()
            cold.append(time.perf_counter() - t)
            if at.exception or at.error:
                raise RuntimeError(f"{page} failed: {[e.value for e in (*at.exception, *at.error)]}")
            t = time.perf_counter()
            at.run()
            warm.append(time.perf_counter() - t)
        name = page.removesuffix(".py")
        out[name] = {"cold_s": round(statistics.median(cold), 3), "cold_max_s": round(max(cold), 3),
                     "warm_s": round(statistics.median(warm), 3), "warm_max_s": round(max(warm), 3),
                     "tables_shown": len(at.dataframe), "notices": [i.value for i in (*at.info, *at.warning)]}
        print(f"{name}: cold {out[name]['cold_s']} s, warm {out[name]['warm_s']} s", file=sys.stderr)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=50_000_000, help="telemetry rows (dynamics + state)")
    ap.add_argument("--dir", type=Path, default=Path("/tmp/voltrisk-bench-warehouse"), help="chDB warehouse directory (kept)")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--pages", default="", help="comma-separated page modules to time (default: all), e.g. pipeline,risk_map")
    args = ap.parse_args()
    from dashboard_seed import seed_registry, served

    path = args.dir.resolve()
    models = path.parent / f"{path.name}-models"
    if not models.exists():
        seed_registry(models)  # a production telematics model, for the vehicle page's quote
    os.environ["VOLTRISK_MODEL_REGISTRY_DIR"] = str(models)
    t = time.perf_counter()
    counts = fill(path, args.rows)
    fill_s = time.perf_counter() - t
    print(f"warehouse ready in {fill_s:.0f} s: {counts}", file=sys.stderr)
    # a first serve applies pending migrations, whose backfills read every stored row
    with served(path, path.parent / f"{path.name}.log", timeout_s=1800) as url:
        times = render_times(url, args.repeat, {p for p in args.pages.split(",") if p})
    print(json.dumps({"rows": counts, "fill_s": round(fill_s, 1), "vehicles": VEHICLES, "pages": times,
                      "cpus": os.cpu_count()}))


if __name__ == "__main__":
    main()
