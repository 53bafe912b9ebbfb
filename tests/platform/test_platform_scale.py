"""Scale-out: a second worker joins the group while the fleet produces, then the
first one leaves. The partitions move twice, in the middle of every vehicle's trip;
every event lands once (count with FINAL equals what was produced), none is
dead-lettered, and each vehicle's trip comes out whole: the new owner of a partition
continues its vehicles' open trips from the state changelog."""

from __future__ import annotations

import random
import time
from pathlib import Path

import pytest

from platform_helpers import (dynamics_messages, paced_producer, random_vin, stored_counter, time_ordered_batches,
                              trips_per_vehicle, with_closing_samples)
from voltrisk.harness import ServiceProcess, wait_for
from warehouse.client import http_client

pytestmark = pytest.mark.integration
TRIP_SAMPLES = 1_000


def test_a_worker_joining_and_one_leaving_lose_nothing(kafka_bootstrap, warehouse_proc, worker_proc, platform_env, tmp_path):
    rng = random.Random()
    tag = f"sc{rng.randrange(10**9)}"
    vins = [random_vin(rng) for _ in range(40)]
    start_ms = int(time.time() * 1000) - 3_600_000
    records = dynamics_messages(vins, per_vehicle=TRIP_SAMPLES, start_ts_ms=start_ms, tag=tag)
    records = with_closing_samples(records, TRIP_SAMPLES, start_ms)
    n = len(records)
    # 10 s of 1 Hz samples per message, as a gateway sends them; vehicles interleaved in time
    msgs = time_ordered_batches(records, 10)
    t = paced_producer(kafka_bootstrap, msgs, 100, 1.0)
    ch = http_client(warehouse_proc.url)
    stored = stored_counter(ch, tag)

    wait_for(lambda: stored() > 4_000, 90, "first rows", worker_proc)
    # a second worker of the same app (its own state directory) joins: the partitions are shared
    second_env = dict(platform_env, VOLTRISK_HOME=str(tmp_path / "second-home"))
    second = ServiceProcess("worker-2", ["worker", "run", "--loglevel", "info"], second_env, tmp_path / "worker2.log").start()
    try:
        wait_for((Path(second_env["VOLTRISK_HOME"]) / "run" / "worker.ready").exists, 90, "the second worker", second)
        stats = Path(second_env["VOLTRISK_HOME"]) / "run" / "worker.stats.json"
        wait_for(lambda: stats.exists() and '"gate"' in stats.read_text(), 120, "the second worker's first batch", second)
        # then the first one leaves (a graceful stop, as in a rolling deploy): all partitions go to the second
        worker_proc.stop()
        t.join(180)
        wait_for(lambda: stored("FINAL") == n, 180, f"{n} unique rows", second)
        # every vehicle's trip is one trip of all its samples, though its partition moved mid-trip
        trips = wait_for(lambda: trips_per_vehicle(ch, len(vins)), 90,
                         "a closed trip per vehicle", second)
    finally:
        second.stop()
    assert stored("FINAL") == n
    dead = ch.query("SELECT count() FROM dlq WHERE payload LIKE {p:String}", parameters={"p": f"%{tag}-%"}).result_rows[0][0]
    assert dead == 0
    # the second worker produced features for vehicles it took over
    features_rows = ch.query("SELECT count() FROM vehicle_daily FINAL").result_rows[0][0]
    assert features_rows > 0
    raw = stored()
    assert sorted(samples for _, samples in trips) == [TRIP_SAMPLES] * len(vins), trips
    print(f"produced={n} stored_final={stored('FINAL')} stored_raw={raw} duplicates_before_final={raw - n} trips={len(trips)}")

