"""A small warehouse with known contents, served by a real warehouse process.

The numbers below are what the dashboard tests expect to see on the pages.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from contextlib import contextmanager
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]

BASE_TS_MS = 1_764_000_000_000  # 2025-11-24 16:00:00 UTC
CARMAKERS = {"byd": 6, "nio": 4, "xpeng": 2}  # vehicles per carmaker
VEHICLES = [(f"veh-{i:02d}", maker) for i, maker in enumerate(m for m, n in CARMAKERS.items() for _ in range(n))]
DYNAMICS_PER_VEHICLE = 250  # 1 Hz
STATE_PER_VEHICLE = 30  # every 10 s
STATE_LATENCY_MS = 300
DLQ = [("ev.dynamics.v1", "schema", "ValidationError", 3), ("ev.state.v1", "range", "RangeError", 2)]
LOCAL_DAY = (BASE_TS_MS + 8 * 3_600_000) // 86_400_000
# res-7 cells (hex of the parent) -> (lat, lon, vehicles that drove there); with k = 5, "C" is hidden
CELLS = {
    "87309959dffffff": (31.23, 121.47, 8),
    "873099400ffffff": (31.30, 121.60, 5),
    "87309b90dffffff": (31.10, 121.30, 3),
}
VISITS_PER_VEHICLE, VISIT_DRIVING_S, VISIT_HARSH_N = 2, 1800.0, 2.0
CRASHES_IN = {"87309959dffffff": 2}
# fraud: (alert_id, ring_id, score, claimed €, expected saving €, telematics verdict, member claims)
ALERTS = [
    ("alert-c1", "ring-1", 0.92, 12_000.0, 11_040.0, "contradicted", ["c1", "c2", "c3"]),
    ("alert-c4", "ring-2", 0.61, 4_000.0, 2_440.0, "consistent", ["c4", "c5"]),
    ("alert-c6", "ring-3", 0.40, 1_500.0, 600.0, "no_telematics", ["c6"]),
    ("alert-c7", "ring-4", 0.55, 1_000.0, 550.0, "consistent", ["c7", "c8"]),
]
TRIPS_PER_VEHICLE, TRIP_KM = 3, 12.5
SCORED_DAYS = 3
DAILY_DAYS, DAILY_KM, DAILY_DRIVING_S = 73, 20.0, 3600.0  # 12 vehicles x 73 days = 2.4 vehicle-years
CLAIMS = [("cl-1", 2_500.0, 0), ("cl-2", 800.0, 0), ("cl-3", 4_100.0, 2)]  # (claim id, amount, days after BASE)


def hard_brake_per_100km(i: int) -> float:
    return 0.5 * (i + 1)  # vehicle i of VEHICLES: veh-00 brakes least, veh-11 most


DECIDED = {"alert-c6": ("investigating", "li.na"), "alert-c7": ("dismissed", "zhao.lei")}
# alerts re-issued after their decision because the ring grew: alert id -> the ring's
# claims now (the alert's members are the nearest of them)
GREW = {"alert-c7": 250}
# a warehouse seeded with confirmed_ring=True also holds this alert: a new claim of a ring
# in which investigators confirmed CONFIRMED_IN_RING claims as fraud (the engine's
# ring_confirmed). Its expected saving is the lowest of all, yet it leads the queue.
CONFIRMED_ALERT = ("alert-c9", "ring-5", 0.08, 2_000.0, 160.0, "consistent", ["c9", "c10", "c11"])
CONFIRMED_IN_RING = 2
CONFIRMED_REASON = f"ring holds {CONFIRMED_IN_RING} claims confirmed as fraud by investigators (latest 2025-11-24)"
# entities shared inside rings: c1-c3 one phone, c1-c2 one garage, c4-c5 one lawyer
SHARED_ENTITIES = [("phone", "13800138000", ["c1", "c2", "c3"]), ("garage", "quickfix motors", ["c1", "c2"]),
                   ("lawyer", "wang and partners", ["c4", "c5"])]


def dynamics_latency_ms(j: int) -> int:
    return 200 + 100 * (j % 10)  # 200 .. 1100 ms


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _dynamics_rows() -> list[list]:
    rows = []
    for vid, maker in VEHICLES:
        for j in range(DYNAMICS_PER_VEHICLE):
            ts = BASE_TS_MS + j * 1000
            sent = ts + 50
            rows.append([f"{vid}-d{j}", vid, 1, ts, 40.0 + j % 30, -1.0, 0.5, 0.0, 90.0, 20.0, "off", False, None, True,
                         31.23, 121.47, 0, maker, 0, j, sent, sent + 10, sent + dynamics_latency_ms(j)])
    return rows


def _state_rows() -> list[list]:
    rows = []
    for vid, maker in VEHICLES:
        for j in range(STATE_PER_VEHICLE):
            ts = BASE_TS_MS + j * 10_000
            rows.append([f"{vid}-s{j}", vid, 1, ts, "started", "not_charging", 40.0, 12_000.0 + j, 380.0, 20.0, 80.0, "D",
                         5_000.0, 31.23, 121.47, 0, 3.9, 3.8, 30.0, 28.0, 0, 0, maker, 0, j, ts, ts + 10, ts + STATE_LATENCY_MS])
    return rows


def _cell_visit_rows() -> list[list]:
    import h3

    rows = []
    for lat, lon, n in CELLS.values():
        cell = h3.str_to_int(h3.latlng_to_cell(lat, lon, 8))
        for vid, _ in VEHICLES[:n]:
            for j in range(VISITS_PER_VEHICLE):
                hist = [0.0] * 26
                hist[4] = VISIT_DRIVING_S  # 40-50 km/h
                rows.append([vid, cell, LOCAL_DAY, BASE_TS_MS + j * 3_600_000, 10.0, VISIT_DRIVING_S,
                             VISIT_HARSH_N / 2, VISIT_HARSH_N / 2, 0.0, hist, BASE_TS_MS])
    return rows


def _crash_rows() -> list[list]:
    import h3

    rows = []
    for hex7, n in CRASHES_IN.items():
        lat, lon, _ = CELLS[hex7]
        cell = h3.str_to_int(h3.latlng_to_cell(lat, lon, 8))
        rows += [[f"crash-{hex7}-{j}", VEHICLES[j][0], BASE_TS_MS + j * 60_000, cell] for j in range(n)]
    return rows


def _fraud_rows(confirmed_ring: bool) -> dict[str, tuple[list[str], list[list]]]:
    alerts, claims, entities = [], [], []
    for n, (alert_id, ring, score, amount, saving, verdict, members) in enumerate(
            ALERTS + [CONFIRMED_ALERT] * confirmed_ring):
        created = BASE_TS_MS + 120_000 if alert_id in GREW else BASE_TS_MS + n  # decisions are at + 60 s
        confirmed = CONFIRMED_IN_RING if alert_id == CONFIRMED_ALERT[0] else 0
        reasons = [CONFIRMED_REASON] * bool(confirmed) + [f"{len(members)} claims in one ring"]
        alerts.append([alert_id, members[0], ring, created, BASE_TS_MS, score, amount, saving, verdict, members,
                       GREW.get(alert_id, len(members)), confirmed, [f"{verdict}: seeded evidence for {members[0]}"],
                       reasons, created])
        for i, cid in enumerate(members):
            claims.append([cid, f"pol-{cid}", BASE_TS_MS, BASE_TS_MS - 3_600_000, 31.23, 121.47, 0, amount / len(members),
                           ring, verdict if i == 0 else "consistent", verdict != "no_telematics", True, True,
                           verdict == "consistent", None, 0.0, verdict == "contradicted", [f"checked {cid}"], 1])
            entities.append(["person", f"person-{cid}", cid, BASE_TS_MS, 1])
    for kind, key, cids in SHARED_ENTITIES:
        entities += [[kind, key, cid, BASE_TS_MS, 1] for cid in cids]
    decided = [[f"dec-{a}", a, BASE_TS_MS + 60_000, status, who, "seeded", BASE_TS_MS + 60_000]
               for a, (status, who) in DECIDED.items()]
    return {
        "fraud_alerts": (["alert_id", "claim_id", "ring_id", "created_ts_ms", "claim_ts_ms", "score", "amount_eur",
                          "expected_saving_eur", "verdict", "members", "ring_claims", "ring_confirmed", "evidence", "reasons",
                          "version"],
                         alerts),
        "fraud_claims": (["claim_id", "policy_id", "ts_ms", "loss_ts_ms", "lat", "lon", "cell_h3", "amount_eur", "ring_id",
                          "verdict", "telematics_available", "insured_in_cell", "third_party_in_cell", "crash_pulse_found",
                          "crash_delta_v_kmh", "speed_at_loss_kmh", "parked_or_charging_at_loss", "evidence", "version"],
                         claims),
        "fraud_claim_entities": (["kind", "entity_key", "claim_id", "ts_ms", "version"], entities),
        "fraud_decisions": (["event_id", "alert_id", "ts_ms", "status", "investigator", "note", "version"], decided),
    }


def _feature_rows() -> dict[str, tuple[list[str], list[list]]]:
    from pricing.testing import synthetic_book
    from stream.features.outputs import VehicleFeaturesV1

    book = synthetic_book(len(VEHICLES), seed=5)
    fields = list(VehicleFeaturesV1.__struct_fields__)
    features, trips, scores = [], [], []
    for i, (vid, _) in enumerate(VEHICLES):
        values = book.iloc[i]
        row = {"vehicle_id": vid, "as_of_day": LOCAL_DAY, "version_ts_ms": BASE_TS_MS}
        for f in fields:
            if f not in row:
                value = values[f.replace("_7d", "_30d")]
                row[f] = hard_brake_per_100km(i) if f.startswith("hard_brake_per_100km") else float(value)
        features.append([row[f] for f in fields])
        for t in range(TRIPS_PER_VEHICLE):
            start = BASE_TS_MS + t * 3_600_000
            trips.append([vid, start, start + 1_800_000, "ignition_off", 1800, 1800.0, TRIP_KM, 25.0, 60.0, 0.0, 0.05,
                          0.0, 0.0, 0.6, 80.0, t + 1, 1, 0, 0, BASE_TS_MS])
        for d in range(SCORED_DAYS):
            scores += [[vid, LOCAL_DAY - d, "reference", 80.0 - i - d, BASE_TS_MS], [vid, LOCAL_DAY - d, "ubi-telematics@v1", 1.0 + 0.01 * i, BASE_TS_MS]]
    daily = [[vid, LOCAL_DAY - d, DAILY_KM, DAILY_DRIVING_S, 0.0, 0.0, 0.0, 0.0, 100.0, 60.0, 0.0,
              hard_brake_per_100km(i) * DAILY_KM / 100, 0.0, 0.0, 0.0, 2.0, 160.0, 2.0, 0.0, float(i == 0 and d == 0), BASE_TS_MS]
             for i, (vid, _) in enumerate(VEHICLES) for d in range(DAILY_DAYS)]
    claims = [[f"fnol-{cid}", cid, f"pol-{cid}", BASE_TS_MS + days * 86_400_000, BASE_TS_MS, 31.23, 121.47, 0, amount, "[]",
               None, None, None, None, "", 0, k, BASE_TS_MS, BASE_TS_MS, BASE_TS_MS] for k, (cid, amount, days) in enumerate(CLAIMS)]
    return {
        "vehicle_daily": (["vehicle_id", "day", "distance_km", "driving_s", "night_s", "speeding_s", "unsafe_following_s",
                           "unbuckled_s", "brake_s", "regen_brake_s", "cell_risk_s", "hard_brake_n", "harsh_accel_n",
                           "harsh_turn_n", "fcw_n", "trips_n", "soc_start_sum_pct", "soc_start_n", "thermal_alarm_n",
                           "crash_n", "version_ts_ms"], daily),
        "claims_fnol": (["event_id", "claim_id", "policy_id", "ts_ms", "loss_ts_ms", "lat", "lon", "h3_r8", "amount_eur",
                         "parties", "garage", "tow_company", "lawyer", "clinic", "description", "kafka_partition",
                         "kafka_offset", "sent_ts_ms", "ingest_ts_ms", "stored_ts_ms"], claims),
        "vehicle_features": (fields, features),
        "trips": (["vehicle_id", "start_ts_ms", "end_ts_ms", "end_reason", "samples_n", "duration_s", "distance_km",
                   "mean_speed_kmh", "max_speed_kmh", "night_share", "speeding_share", "unsafe_following_share",
                   "unbuckled_share", "regen_share", "soc_start_pct", "hard_brake_n", "harsh_accel_n", "harsh_turn_n",
                   "fcw_n", "version_ts_ms"], trips),
        "scores": (["vehicle_id", "as_of_day", "scorer", "score", "version_ts_ms"], scores),
    }


def seed_registry(root: Path) -> None:
    """A model registry with a production telematics model (v1) and a candidate (v2)."""
    from pricing.registry import Registry
    from pricing.telematics import TelematicsMultiplier
    from pricing.testing import synthetic_book

    registry = Registry(root)
    for seed in (0, 1):
        book = synthetic_book(3_000, seed=seed)
        model = TelematicsMultiplier.fit_book(book, seed=seed, nthread=1)
        registry.register("ubi-telematics", model, f"{len(book)}:seed{seed}",
                          {"test_poisson_deviance_x100": 50.0 - seed, "test_gini": 0.30 + 0.02 * seed})
    registry.promote("ubi-telematics", 1)


def seed(path: Path, *, with_data: bool = True, confirmed_ring: bool = False) -> None:
    """Create and migrate a chDB warehouse at ``path``, with the known rows unless ``with_data`` is false
    (and ``CONFIRMED_ALERT`` among the fraud alerts if ``confirmed_ring``)."""
    from voltrisk.settings import WarehouseSettings
    from warehouse.client import writer_client
    from warehouse.migrate import migrate

    settings = WarehouseSettings(clickhouse_dsn=f"chdb://{path}")
    client = writer_client(settings)
    try:
        migrate(client, settings)
        if not with_data:
            return
        common = ["carmaker", "kafka_partition", "kafka_offset", "sent_ts_ms", "ingest_ts_ms", "stored_ts_ms"]
        client.insert("telemetry_dynamics", _dynamics_rows(), column_names=[
            "event_id", "vehicle_id", "key_version", "ts_ms", "speed_kmh", "accel_long_mps2", "accel_lat_mps2", "yaw_rate_dps",
            "heading_deg", "motor_power_kw", "adas_state", "fcw", "headway_s", "seatbelt_driver", "lat", "lon", "h3_r8", *common])
        client.insert("telemetry_state", _state_rows(), column_names=[
            "event_id", "vehicle_id", "key_version", "ts_ms", "vehicle_status", "charging_state", "speed_kmh", "odometer_km",
            "pack_voltage_v", "pack_current_a", "soc_pct", "gear", "insulation_resistance_kohm", "lat", "lon", "h3_r8",
            "cell_voltage_max_v", "cell_voltage_min_v", "cell_temp_max_c", "cell_temp_min_c", "alarm_level", "alarm_flags", *common])
        dlq_rows = [[topic, 0, 1000 + k, error_class, reason, f"{reason} check failed on record {k}", "key", "{}", 0, k,
                     BASE_TS_MS + 60_000 + k]
                    for topic, reason, error_class, n in DLQ for k in range(n)]
        client.insert("dlq", dlq_rows, column_names=[
            "source_topic", "source_partition", "source_offset", "error_class", "reason", "message", "key", "payload",
            "dlq_partition", "dlq_offset", "stored_ts_ms"])
        client.insert("cell_visits", _cell_visit_rows(), column_names=[
            "vehicle_id", "cell", "day", "start_ts_ms", "distance_km", "driving_s", "hard_brake_n", "harsh_accel_n",
            "harsh_turn_n", "speed_hist_s", "version_ts_ms"])
        client.insert("cell_crashes", _crash_rows(), column_names=["event_id", "vehicle_id", "ts_ms", "cell"])
        for table, (columns, rows) in (_fraud_rows(confirmed_ring) | _feature_rows()).items():
            client.insert(table, rows, column_names=columns)
    finally:
        client.close()


@contextmanager
def running(argv: list[str], env: dict[str, str], log: Path, health_url: str, timeout_s: float = 120):
    """Start ``argv`` (output to ``log``), wait until ``health_url`` answers, stop it on exit."""
    with open(log, "ab") as out:
        proc = subprocess.Popen(argv, env={**os.environ, **env}, stdout=out, stderr=subprocess.STDOUT, cwd=REPO)
    try:
        deadline = time.monotonic() + timeout_s
        while True:
            if proc.poll() is not None:
                raise AssertionError(f"{argv[2:5]} exited ({proc.returncode}):\n{log.read_text()[-2000:]}")
            try:
                with urllib.request.urlopen(health_url, timeout=1):
                    break
            except OSError:
                if time.monotonic() > deadline:
                    raise AssertionError(f"{health_url} did not answer within {timeout_s:.0f} s") from None
                time.sleep(0.2)
        yield
    finally:
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)


@contextmanager
def served(path: Path, log: Path, timeout_s: float = 120):
    """Run ``voltrisk warehouse serve --no-sink`` on ``path``; yield its endpoint URL."""
    port = free_port()
    env = {"VOLTRISK_CLICKHOUSE_DSN": f"chdb://{path}", "VOLTRISK_WAREHOUSE_HTTP_PORT": str(port),
           "VOLTRISK_HOME": str(path.parent / "home")}
    url = f"http://127.0.0.1:{port}"
    with running([sys.executable, "-m", "voltrisk", "warehouse", "serve", "--no-sink"], env, log, url + "/ping", timeout_s):
        yield url


def run_page(relative: str):
    """Run a dashboard script (``views/pipeline.py``, ``app.py``) once in AppTest; fail on any exception."""
    from streamlit.testing.v1 import AppTest

    at = AppTest.from_file(str(REPO / "dashboard" / relative), default_timeout=30)
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def frame_with(at, *columns: str):
    """The one dataframe on the page that has all of ``columns``."""
    found = [d.value for d in at.dataframe if set(columns) <= set(d.value.columns)]
    assert len(found) == 1, f"{len(found)} dataframes have columns {columns}"
    return found[0]
