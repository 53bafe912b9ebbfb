"""Streaming features end to end on the real broker and warehouse: the trips,
harsh-event counts and cell visits in ClickHouse equal what the pure feature
functions compute offline from the same events, exactly."""

from __future__ import annotations

import asyncio
import json
import random
from pathlib import Path

import msgspec
import pytest

from platform_helpers import produce_ordered, random_vin, topic_configs
from stream import records as R
from stream.featuring import CELLS
from stream.features import Batch, features_offline
from stream.features.synthetic import synthetic_stream
from stream.pseudonym import Pseudonymiser
from voltrisk.harness import wait_for, worker_stats
from voltrisk.settings import WorkerSettings
from warehouse.client import http_client

pytestmark = pytest.mark.integration

TOPIC_OF = {R.StateV1: "ev.state.v1", R.DynamicsV1: "ev.dynamics.v1", R.AlarmV1: "ev.alarm.v1", R.CrashV1: "ev.crash.v1"}
HEADERS = [("schema_version", b"1"), ("source_protocol", b"oem-json"), ("coord_sys", b"WGS84"),
           ("consent_scope", b"pricing,fraud")]


@pytest.fixture
def platform_env(platform_env):
    """The whole history is produced up front and read as a backlog, in which the four
    topics' event-time skew can exceed the default 2-min reorder window on a loaded
    machine (a park state then arrives after the next trip's dynamics and is late): this
    replay runs with a reorder window that covers the stream's gaps, as a replay should."""
    return {**platform_env, "VOLTRISK_REORDER_MS": str(3_600_000)}


def _produce_synthetic_fleet(kafka_bootstrap: str, poisoned: str | None = None):
    """Four vehicles' trips produced as they would report them; what the platform should
    compute from them (the pure functions over the pseudonymised events) and their ids.
    ``poisoned``: the event ids of the second vehicle carry it."""
    rng = random.Random()
    pairs = synthetic_stream(vehicles=4, trips_per_vehicle=2, seed=11, max_trip_s=300, max_gap_h=1.0)
    vins = {vid: random_vin(rng) for vid, _ in pairs}
    tag = f"ft{rng.randrange(10**9)}"
    marked = sorted(vins)[1] if poisoned else None
    pairs = [(vid, msgspec.structs.replace(rec, event_id=f"{tag}-{poisoned if vid == marked else ''}{i}"))
             for i, (vid, rec) in enumerate(pairs)]

    # what the platform should compute: the pure functions over the same events, pseudonymised ids
    w = WorkerSettings()
    pseudo = Pseudonymiser(w.pseudonym_key.get_secret_value().encode(), w.pseudonym_key_version)
    expected = features_offline(Batch.from_records([(pseudo.vehicle_id(vins[v]), r) for v, r in pairs]))
    assert len(expected.trips) >= 8

    # produce as a vehicle reports: in time order across topics, each run of one
    # topic's records sent as a batch message when another kind of record comes
    ordered: list[tuple[str, tuple]] = []
    runs: dict[str, tuple[str, list[bytes]]] = {}

    def flush(vid):
        topic, recs = runs.pop(vid)
        ordered.append((topic, (vins[vid].encode(), b"[" + b",".join(recs) + b"]", HEADERS)))

    for vid, rec in pairs:
        topic = TOPIC_OF[type(rec)]
        if vid in runs and (runs[vid][0] != topic or len(runs[vid][1]) == 10):
            flush(vid)
        runs.setdefault(vid, (topic, []))[1].append(msgspec.json.encode(rec))
    for vid in list(runs):
        flush(vid)
    asyncio.run(produce_ordered(kafka_bootstrap, ordered))
    ids = sorted({pseudo.vehicle_id(v) for v in vins.values()})
    if marked is None:
        return expected, ids
    others = features_offline(Batch.from_records([(pseudo.vehicle_id(vins[v]), r) for v, r in pairs if v != marked]))
    return expected, ids, (pseudo.vehicle_id(vins[marked]), others, sum(1 for v, _ in pairs if v == marked))


def _assert_features_equal_the_pure_functions(ch, expected, ids, worker_proc) -> None:
    """Trips, harsh-event counts, cell visits and scores in ClickHouse as the pure functions say."""
    q = ("SELECT vehicle_id, start_ts_ms, end_reason, samples_n, round(distance_km, 6), hard_brake_n, harsh_accel_n, "
         "harsh_turn_n, fcw_n FROM trips FINAL WHERE vehicle_id IN {ids:Array(String)} ORDER BY vehicle_id, start_ts_ms")
    want = sorted((t.vehicle_id, t.start_ts_ms, t.end_reason, t.samples_n, round(t.distance_km, 6), t.hard_brake_n,
                   t.harsh_accel_n, t.harsh_turn_n, t.fcw_n) for t in expected.trips.values())
    closed = [t for t in want if t[2] == "park"]
    parked = lambda: [t for t in (tuple(x) for x in ch.query(q, parameters={"ids": ids}).result_rows) if t[2] == "park"]  # noqa: E731
    try:
        wait_for(lambda: parked() == closed, 120, "the closed trips in ClickHouse", worker_proc)
    finally:
        assert parked() == closed
    assert sum(t[5] for t in closed) > 0  # the synthetic stream brakes hard: the counts compared are not all zero

    visits = lambda: {tuple(v) for v in ch.query(  # noqa: E731
        "SELECT vehicle_id, cell, start_ts_ms, round(driving_s, 6) FROM cell_visits FINAL "
        "WHERE vehicle_id IN {ids:Array(String)} ORDER BY vehicle_id, cell, start_ts_ms", parameters={"ids": ids},
    ).result_rows}
    closed_starts = {(t[0], t[1]) for t in closed}
    closed_visits = sorted((c.vehicle_id, c.cell, c.start_ts_ms, round(c.driving_s, 6)) for c in expected.visits.values()
                           if any(c.vehicle_id == v and s <= c.start_ts_ms for v, s in closed_starts))
    want_visits = {v for v in closed_visits if v[3] > 0} - {v for v in closed_visits if v[2] > max(s for _, s in closed_starts)}
    try:
        wait_for(lambda: visits() >= want_visits, 60, "the closed trips' cell visits in ClickHouse", worker_proc)
    finally:
        assert visits() >= want_visits
    scored = lambda: ch.query(  # noqa: E731
        "SELECT uniqExact(vehicle_id), min(score), max(score) FROM scores FINAL WHERE vehicle_id IN {ids:Array(String)}",
        parameters={"ids": ids}).result_rows[0]
    n, lo, hi = wait_for(lambda: (r := scored())[0] == len(ids) and r, 60, "a score for every vehicle", worker_proc)
    assert 0 <= lo <= hi <= 100


def test_trips_and_cells_in_clickhouse_equal_the_pure_functions(kafka_bootstrap, warehouse_proc, worker_proc):
    expected, ids = _produce_synthetic_fleet(kafka_bootstrap)
    _assert_features_equal_the_pure_functions(http_client(warehouse_proc.url), expected, ids, worker_proc)
    # the features took part of the stream straight from the gate (stream.handoff): both paths ran
    stats = worker_stats(worker_proc.env)
    assert stats["features"]["handed_over"] > 0  # clean messages


def test_a_failed_send_of_derived_rows_stops_the_worker_and_its_restart_delivers_them(
        kafka_bootstrap, warehouse_proc, worker_proc):
    """The broker refuses the worker's cell-visit rows (a topic limit far below their
    size): the worker stops with an error instead of going on without them, and once the
    topic takes them again, the restarted worker delivers every row, exactly as the pure
    functions compute them (the state of the failed steps was never made durable)."""
    own = asyncio.run(topic_configs(kafka_bootstrap, CELLS))
    assert asyncio.run(topic_configs(kafka_bootstrap, CELLS, {**own, "max.message.bytes": "64"}))["max.message.bytes"] == "64"
    try:
        expected, ids = _produce_synthetic_fleet(kafka_bootstrap)
        stopped = wait_for(lambda: worker_proc.proc.poll() is not None, 120, "the worker to stop")
        assert stopped and worker_proc.proc.returncode != 0
        log = worker_proc.log.read_text(errors="replace")
        assert "a send of derived rows failed" in log and "MessageSizeTooLarge" in log, worker_proc.tail(60)
    finally:
        assert asyncio.run(topic_configs(kafka_bootstrap, CELLS, own)) == own
    worker_proc.start_and_wait()
    _assert_features_equal_the_pure_functions(http_client(warehouse_proc.url), expected, ids, worker_proc)


def _restart_with(worker_proc, tmp_path: Path, sitecustomize: str) -> dict:
    """Restart the worker with ``sitecustomize`` run at its start (a defect injected); its own env."""
    inject = tmp_path / "inject"
    inject.mkdir()
    (inject / "sitecustomize.py").write_text(sitecustomize)
    own_env = worker_proc.env
    worker_proc.stop()
    worker_proc.env = {**own_env, "PYTHONPATH": str(inject)}
    worker_proc.start_and_wait()
    return own_env


FAILING_STEP = '''
import stream.featuring as featuring

_step = featuring.FeatureEngine.step


def step(self, items, *args, **kwargs):
    """The worker's first features step computes its rows and state, then raises."""
    rows = _step(self, items, *args, **kwargs)
    if items and not isinstance(self.store, dict) and not getattr(featuring, "failed_once", False):
        featuring.failed_once = True
        raise RuntimeError("a defect injected by the test, after the step wrote its state")
    return rows


featuring.FeatureEngine.step = step
'''


def test_a_features_step_that_raises_stops_the_worker_and_its_restart_delivers_the_rows(
        kafka_bootstrap, warehouse_proc, worker_proc, tmp_path):
    """A defect in a features step (here injected into the worker process through
    ``sitecustomize``, after the step wrote its state): the worker stops with the error
    instead of Faust restarting the agent over a state holding the failed step, whose
    records would then be skipped on their redelivery; the restarted worker delivers
    every trip and cell visit as the pure functions compute them."""
    own_env = _restart_with(worker_proc, tmp_path, FAILING_STEP)
    expected, ids = _produce_synthetic_fleet(kafka_bootstrap)
    wait_for(lambda: worker_proc.proc.poll() is not None, 120, "the worker to stop")
    assert worker_proc.proc.returncode != 0
    log = worker_proc.log.read_text(errors="replace")
    assert "features: a features step failed (RuntimeError: a defect injected by the test" in log, worker_proc.tail(60)
    worker_proc.env = own_env
    worker_proc.stop()
    worker_proc.start_and_wait()
    _assert_features_equal_the_pure_functions(http_client(warehouse_proc.url), expected, ids, worker_proc)


POISONED_DATA = '''
import stream.features.batch as batch

_from_records = batch.Batch.from_records.__func__


def from_records(cls, pairs):
    """A defect met by one vehicle's records only: its event ids carry a mark."""
    pairs = pairs if isinstance(pairs, list) else list(pairs)
    if any("poison" in r.event_id for _, r in pairs):
        raise RuntimeError("a defect injected by the test, met by the marked records")
    return _from_records(cls, pairs)


batch.Batch.from_records = classmethod(from_records)
'''


def test_a_defect_met_by_one_vehicle_dead_letters_its_records_and_a_redrive_completes_it(
        kafka_bootstrap, warehouse_proc, worker_proc, tmp_path):
    """A features defect met by one vehicle's records (injected through ``sitecustomize``)
    no longer stops the worker: the other vehicles' trips, cell visits and scores are
    exactly the pure functions', the vehicle's records are all on the dead-letter topic
    (reason features_error) and in the ``dlq`` table; once the fixed worker runs,
    ``voltrisk dlq redrive`` sends them back and the vehicle's trips are exact too."""
    from typer.testing import CliRunner

    from stream.deadletters import redrive
    from voltrisk.cli import app
    from voltrisk.settings import KafkaClientSettings

    own_env = _restart_with(worker_proc, tmp_path, POISONED_DATA)
    expected, ids, (poison, others, n_poisoned) = _produce_synthetic_fleet(kafka_bootstrap, poisoned="poison")
    ch = http_client(warehouse_proc.url)
    _assert_features_equal_the_pure_functions(ch, others, [v for v in ids if v != poison], worker_proc)
    assert worker_proc.proc.poll() is None  # the worker went on
    log = worker_proc.log.read_text(errors="replace")
    assert f"features: the step failed on vehicle {poison} (RuntimeError: a defect injected by the test" in log
    assert not ch.query("SELECT count() FROM trips FINAL WHERE vehicle_id = {v:String}", parameters={"v": poison}).result_rows[0][0]

    k = KafkaClientSettings(kafka_bootstrap=kafka_bootstrap)
    held = wait_for(lambda: (r := asyncio.run(redrive(k, vehicle=poison, dry_run=True))).records == n_poisoned and r,
                    60, "every marked record on the dead-letter topic", worker_proc)
    assert held.sent >= 1 and held.vehicles == 1 and not held.not_redrivable
    stored = "SELECT count() FROM dlq FINAL WHERE reason = 'features_error' AND key = {v:String}"
    wait_for(lambda: ch.query(stored, parameters={"v": poison}).result_rows[0][0] == held.sent, 60,
             "the dead letters in the dlq table", worker_proc)

    cli = CliRunner()
    summary = cli.invoke(app, ["dlq", "summary", "--url", warehouse_proc.url, "--json"])
    assert summary.exit_code == 0, summary.output
    rows = [json.loads(line) for line in summary.stdout.splitlines()]
    mine = [r for r in rows if r["reason"] == "features_error"]
    assert sum(r["messages"] for r in mine) >= held.sent and any(poison in r["latest_message"] for r in mine), rows

    worker_proc.env = own_env  # the defect fixed
    worker_proc.stop()
    worker_proc.start_and_wait()
    out = cli.invoke(app, ["dlq", "redrive", "--vehicle", poison, "--json"], env={"VOLTRISK_KAFKA_BOOTSTRAP": kafka_bootstrap})
    assert out.exit_code == 0, out.output
    sent = json.loads(out.stdout)
    assert (sent["sent"], sent["records"], sent["vehicles"]) == (held.sent, n_poisoned, 1)
    _assert_features_equal_the_pure_functions(ch, expected, ids, worker_proc)


SLOW_FLUSH = '''
import time

import stream.featuring as featuring

_flush = featuring.FeatureEngine.flush


def flush(self, *args, **kwargs):
    """Each release of held records takes longer than the worker's 50 ms release tick."""
    time.sleep(0.08)
    return _flush(self, *args, **kwargs)


featuring.FeatureEngine.flush = flush
'''


def test_releases_longer_than_their_tick_still_deliver_the_rows_and_warn_of_nothing(
        kafka_bootstrap, warehouse_proc, worker_proc, tmp_path):
    """The release of held records runs every 50 ms (``live_hold_ms``), and may take longer
    than that, as behind a backlog (or here, slowed down through ``sitecustomize``): the
    next release waits, the rows are the pure functions', and the log stays quiet (Faust's
    timer warned "is overlapping" at each such tick, some 26 times at every start of
    ``make up``)."""
    own_env = _restart_with(worker_proc, tmp_path, SLOW_FLUSH)
    expected, ids = _produce_synthetic_fleet(kafka_bootstrap)
    _assert_features_equal_the_pure_functions(http_client(warehouse_proc.url), expected, ids, worker_proc)
    assert " is overlapping" not in worker_proc.log.read_text(errors="replace"), worker_proc.tail(40)
    worker_proc.env = own_env


def test_live_every_clean_message_of_the_workers_own_gate_is_handed_over(kafka_bootstrap, warehouse_proc, worker_proc):
    """Live, the features take every message the same worker's gate cleaned from the gate
    itself (stream.handoff), none from the topic: their consumer reads ahead and could
    fetch a copy before the gate's hand-over of it, and would then process it from the
    topic with the live hold (15 % of the messages at 5,000 records/s before the consumer
    waited for the gate's batches in flight: GateIntake.landed)."""
    from aiokafka import AIOKafkaConsumer, TopicPartition

    from voltrisk import benchmark as B

    clean = "clean.ev.dynamics.v1"

    def stats() -> dict:
        return worker_stats(worker_proc.env).get("features", {})

    async def clean_end() -> int:
        c = AIOKafkaConsumer(bootstrap_servers=kafka_bootstrap, enable_auto_commit=False)
        await c.start()
        try:
            tps = [TopicPartition(clean, p) for p in c.partitions_for_topic(clean) or await _partitions(c, clean)]
            return sum((await c.end_offsets(tps)).values())
        finally:
            await c.stop()

    async def _partitions(c, topic):
        await c._client.force_metadata_update()
        return c.partitions_for_topic(topic)

    def live(records: int, tag: str) -> None:
        msgs, n = B.make_batches(records, 120, 10, tag, random.Random(tag), 0)
        asyncio.run(B.produce(kafka_bootstrap, msgs, rate_msgs=100, live=True))

    # a warm-up: the features learn where every partition stands (the first message of a
    # partition comes from the topic: until then its hand-over order is unknown)
    before = stats().get("records", 0)
    live(2_400, "warm")
    wait_for(lambda: stats().get("records", 0) - before >= 2_400, 60, "the warm-up through the features", worker_proc)
    handed0, end0 = stats()["handed_over"], asyncio.run(clean_end())
    live(4_800, "measured")  # 480 messages in ~5 s
    wait_for(lambda: stats().get("records", 0) - before >= 7_200, 60, "the measured run through the features",
             worker_proc)
    cleaned = asyncio.run(clean_end()) - end0
    assert cleaned >= 400, cleaned  # one clean message per vehicle and gate batch
    assert stats()["handed_over"] - handed0 == cleaned
