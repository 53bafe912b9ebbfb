"""The feature tables (warehouse/migrations/0010_features.sql) in the real engine
(chDB): every re-emitted version inserted, read back with FINAL, equals the pure
functions' final rows; training features read from ClickHouse equal the stream's."""

from __future__ import annotations

import random
from pathlib import Path

import msgspec
import numpy as np
import pytest

from stream.features import (
    Alarms,
    Batch,
    Crashes,
    Dynamics,
    ScoreV1,
    States,
    VehicleFeaturesV1,
    cell_aggregates,
    decode_state,
    encode_state,
    feature_names,
    features_offline,
    flush_idle,
    merge_history,
    update,
    vehicle_feature_records,
    vehicle_features_from_daily,
    vehicle_features_from_states,
)
from stream.features.cells import cells_of
from stream.features.outputs import CellCrashV1, CellVisitV1, DailyV1, TripV1, as_columns
from stream.features.synthetic import synthetic_stream
from stream.score import ReferenceScorer, matrix, score_records
from voltrisk.settings import WarehouseSettings
from warehouse.migrate import MIGRATIONS_DIR, Migration

MIGRATION = MIGRATIONS_DIR / "0010_features.sql"
TABLES = {"trips": TripV1, "vehicle_daily": DailyV1, "cell_visits": CellVisitV1, "cell_crashes": CellCrashV1,
          "vehicle_features": VehicleFeaturesV1, "scores": ScoreV1}


@pytest.fixture(scope="module")
def ch(tmp_path_factory):
    from chdb import session

    s = session.Session(str(tmp_path_factory.mktemp("chdb")))
    for number, name, path in ((10, "features", MIGRATION), (11, "score_freshness", MIGRATIONS_DIR / "0011_score_freshness.sql")):
        for statement in Migration(number, name, Path(path).read_text()).statements(WarehouseSettings()):
            s.query(statement)
    yield s
    s.close()


def _insert(ch, table: str, rows: list) -> None:
    if rows:
        ch.query(f"INSERT INTO {table} FORMAT JSONEachRow\n" + b"\n".join(msgspec.json.encode(r) for r in rows).decode())


def test_tables_have_exactly_the_record_fields(ch):
    for table, record in TABLES.items():
        cols = ch.query(f"SELECT name FROM system.columns WHERE table = '{table}' ORDER BY position", "CSV")
        assert [c.strip('"') for c in str(cols).split()] == list(record.__struct_fields__), table


def test_every_emitted_version_collapses_to_the_offline_rows(ch):
    pairs = synthetic_stream(vehicles=5, trips_per_vehicle=5, seed=21, max_trip_s=400, max_gap_h=20)
    offline = features_offline(Batch.from_records(pairs))
    rng, states, history, i = random.Random(5), {}, {}, 0
    emitted = {t: [] for t in TABLES}
    while i < len(pairs):
        k = rng.randint(50, 800)
        u = update(states, Batch.from_records(pairs[i: i + k]))
        states.update({v: decode_state(encode_state(s)) for v, s in u.states.items()})
        history.update({v: merge_history(history.get(v, []), rows) for v, rows in u.closed_days.items()})
        for t, rows in (("trips", u.trips), ("vehicle_daily", u.daily), ("cell_visits", u.visits), ("cell_crashes", u.crashes)):
            emitted[t].extend(rows)
        i += k
    u = flush_idle(states, max(s.seen_ts_ms for s in states.values()) + 300_001)
    emitted["trips"] += u.trips
    emitted["vehicle_daily"] += u.daily
    emitted["cell_visits"] += u.visits
    states.update(u.states)
    history.update({v: merge_history(history.get(v, []), rows) for v, rows in u.closed_days.items()})
    assert history and len(emitted["cell_visits"]) > len(offline.visits)  # visits re-emitted as they grew
    for table, rows in emitted.items():
        _insert(ch, table, rows)
        _insert(ch, table, rows[: len(rows) // 3])  # a re-delivered part changes nothing

    def final(table: str):
        return ch.query(f"SELECT * FROM {table} FINAL", "DataFrame")

    trips = final("trips")
    assert len(trips) == len(offline.trips) == 25
    assert trips["hard_brake_n"].sum() == sum(t.hard_brake_n for t in offline.trips.values())
    assert trips["distance_km"].sum() == pytest.approx(sum(t.distance_km for t in offline.trips.values()), rel=1e-9)
    assert len(final("cell_crashes")) == len(offline.crashes)

    # training path: window features from ClickHouse rows == serving path from the stream state
    daily = final("vehicle_daily")
    as_of = int(daily["day"].max())
    training = vehicle_features_from_daily(daily, as_of)
    serving = vehicle_features_from_states(states, as_of, history)
    assert training["vehicle_id"].tolist() == serving["vehicle_id"].tolist()
    for name in feature_names(7) + feature_names(30):
        np.testing.assert_allclose(training[name], serving[name], rtol=1e-9, err_msg=name)

    visits = final("cell_visits")
    from_ch = cell_aggregates(visits, final("cell_crashes"))
    pure = cell_aggregates({k: np.asarray(v) for k, v in as_columns(list(offline.visits.values())).items()},
                           {"cell": np.array([c.cell for c in offline.crashes.values()], np.uint64)})
    assert from_ch["cell"].tolist() == pure["cell"].tolist()
    for col in ("exposure_h", "harsh_n", "crash_n", "vehicle_n", "risk_index", "speed_limit_kmh"):
        np.testing.assert_allclose(from_ch[col], pure[col], rtol=1e-9, err_msg=col)

    # features and reference scores land with contract column names
    records = vehicle_feature_records(training, version_ts_ms=1)
    _insert(ch, "vehicle_features", records)
    scorer = ReferenceScorer()
    _insert(ch, "scores", score_records(training, scorer, version_ts_ms=1))
    back = final("vehicle_features").sort_values("vehicle_id")
    np.testing.assert_allclose(back["hard_brake_per_100km_by_vehicle_30d"], training["hard_brake_per_100km_by_vehicle_30d"])
    scores = final("scores").sort_values("vehicle_id")
    np.testing.assert_allclose(scores["score"], scorer.score(matrix(training, scorer.feature_names)))
    assert set(scores["scorer"]) == {"reference"} and (scores["as_of_day"] == as_of).all()


def test_replay_from_the_telemetry_tables_gives_the_streams_trips(ch):
    """Training from raw history: events stored by the sink in telemetry_* tables,
    read back and replayed, give the trips the stream computed from the records."""
    s = ch  # one chDB data directory per process: share the module's
    mig = Migration(1, "telemetry", (MIGRATIONS_DIR / "0001_telemetry.sql").read_text())
    for statement in mig.statements(WarehouseSettings()):
        s.query(statement)
    pairs = synthetic_stream(vehicles=4, trips_per_vehicle=3, seed=14)
    table_of = {"DynamicsV1": "telemetry_dynamics", "StateV1": "telemetry_state", "AlarmV1": "telemetry_alarm",
                "CrashV1": "telemetry_crash"}
    rows: dict[str, list[bytes]] = {t: [] for t in table_of.values()}
    for vid, rec in pairs:
        fields = msgspec.structs.asdict(rec)
        if "lat" in fields:
            fields["h3_r8"] = int(cells_of(np.array([fields["lat"]]), np.array([fields["lon"]]))[0])
        rows[table_of[type(rec).__name__]].append(msgspec.json.encode({"vehicle_id": vid, **fields}))
    assert all(rows.values()), {t: len(v) for t, v in rows.items()}
    for table, lines in rows.items():
        s.query(f"INSERT INTO {table} FORMAT JSONEachRow\n" + b"\n".join(lines).decode())

    def read(table: str):
        return s.query(f"SELECT * FROM {table} FINAL ORDER BY vehicle_id, ts_ms", "DataFrame")

    replayed = Batch.of(Dynamics.from_columns(read("telemetry_dynamics")), States.from_columns(read("telemetry_state")),
                        Alarms.from_columns(read("telemetry_alarm")), Crashes.from_columns(read("telemetry_crash")))
    stream = features_offline(Batch.from_records(pairs))
    history = features_offline(replayed)
    assert len(replayed.dynamics) == sum(1 for _, r in pairs if type(r).__name__ == "DynamicsV1")
    assert history.trips.keys() == stream.trips.keys() and len(stream.trips) == 12
    for key, trip in stream.trips.items():
        again = history.trips[key]
        # telemetry_dynamics stores Float32: distances agree to float32 precision
        assert again.distance_km == pytest.approx(trip.distance_km, rel=1e-5)
        assert (again.hard_brake_n, again.harsh_turn_n, again.samples_n) == (trip.hard_brake_n, trip.harsh_turn_n,
                                                                              trip.samples_n)
