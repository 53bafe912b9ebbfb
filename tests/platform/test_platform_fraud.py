"""The fraud agent live on the real broker and warehouse: claims of a simulated book go
through the gate and the worker's fraud agent; every organised ring among them is
alerted on fraud.alerts.v1 and stored in ClickHouse, and claims that arrive while the
warehouse (where the agent reads the insured vehicles' telemetry) is away wait for it
instead of being judged without it or dropped."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import msgspec
import numpy as np
import pandas as pd
import pytest
from platform_helpers import topic_configs

from simulators.claims import to_fnol
from voltrisk.harness import http_ok, wait_for
from fraudring.cli import BOOK_ENTITY_COLS
from warehouse.client import http_client

pytestmark = pytest.mark.integration

HEADERS = [("schema_version", b"1"), ("source_protocol", b"claims-json"), ("consent_scope", b"pricing,fraud")]


def _voltrisk(*argv: str) -> None:
    res = subprocess.run([sys.executable, "-m", "voltrisk", *argv], capture_output=True, text=True)
    assert res.returncode == 0, res.stderr[-2000:]


@pytest.fixture
def ring_claims(platform_env, tmp_path) -> pd.DataFrame:
    """A fraud model in the worker's home, trained on one simulated book (seed 8), and
    the claims of another (seed 7) to replay: every ring claim and the latest 300 others,
    in report-time order. Before the worker starts: its fraud agent needs the model."""
    model = Path(platform_env["VOLTRISK_HOME"]) / "fraud" / "fraud_model.json"
    for seed in (7, 8):
        _voltrisk("simulate", "book", "--vehicle-years", "5000", "--seed", str(seed), "--out", str(tmp_path / f"book{seed}"))
    _voltrisk("fraud", "train", "--claims", str(tmp_path / "book8" / "claims.parquet"), "--label", "is_fraud",
              "--entity-cols", BOOK_ENTITY_COLS, "--model-out", str(model))
    full = pd.read_parquet(tmp_path / "book7" / "claims.parquet").sort_values("ts_ms")
    in_ring = full["ring_id"].notna() & (full["ring_id"] != "")
    return pd.concat([full[in_ring], full[~in_ring].tail(300)]).sort_values("ts_ms")


def _claims_and_rings(book: pd.DataFrame) -> tuple[list, dict[str, set[str]]]:
    """The book's claims as FNOL records, and its rings of three claims or more. The claim
    ids carry a tag of the test's own: the tests of a session share the broker's topics."""
    book = book.assign(claim_id=f"t{uuid.uuid4().hex[:8]}-" + book["claim_id"].astype(str))
    rows = [{k: (None if isinstance(v, float) and np.isnan(v) else v) for k, v in r.items()} for r in book.to_dict("records")]
    rings = book[book["ring_id"].notna() & (book["ring_id"] != "")].groupby("ring_id")["claim_id"].apply(set)
    rings = {ring: ids for ring, ids in rings.items() if len(ids) >= 3}
    assert len(rings) >= 2, "the book should hold organised rings to find"
    return [to_fnol(r) for r in rows], rings


async def _produce(bootstrap: str, claims: list) -> None:
    from aiokafka import AIOKafkaProducer

    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", enable_idempotence=True)
    await producer.start()
    try:
        sent = [await producer.send("claims.fnol.v1", msgspec.json.encode(c), key=c.claim_id.encode(), headers=HEADERS)
                for c in claims]
        await asyncio.gather(*sent)
    finally:
        await producer.stop()


async def _collect_alerts(bootstrap: str, timeout_s: float, quiet_s: float = 15,
                          until: Callable[[list[dict]], bool] = lambda alerts: True) -> list[dict]:
    """Every alert on fraud.alerts.v1, read until ``until(alerts)`` holds and none came
    for ``quiet_s`` since, or ``timeout_s`` passed (the agent may still be reading a
    backlog's telemetry when the reading starts)."""
    from aiokafka import AIOKafkaConsumer

    consumer = AIOKafkaConsumer("fraud.alerts.v1", bootstrap_servers=bootstrap, group_id=f"test-{uuid.uuid4().hex}",
                                auto_offset_reset="earliest")
    await consumer.start()
    alerts: list[dict] = []
    try:
        loop = asyncio.get_running_loop()
        deadline, quiet_since = loop.time() + timeout_s, loop.time()
        while loop.time() < deadline and (loop.time() - quiet_since < quiet_s or not until(alerts)):
            for msgs in (await consumer.getmany(timeout_ms=500)).values():
                alerts += [msgspec.json.decode(m.value) for m in msgs]
                quiet_since = loop.time()
    finally:
        await consumer.stop()
    return alerts


def _missed(alerts: list[dict], claims: list, rings: dict) -> list[str]:
    """The rings of ``rings`` that no alert of this test's claims names."""
    tag = claims[0].claim_id.split("-", 1)[0] + "-"
    named = [{a["claim_id"], *a.get("members", [])} for a in alerts if a["claim_id"].startswith(tag)]
    return [ring for ring, ids in rings.items() if not any(ids & n for n in named)]


def _assert_every_ring_alerted_and_stored(alerts: list[dict], claims: list, rings: dict, warehouse_proc) -> None:
    tag = claims[0].claim_id.split("-", 1)[0] + "-"
    alerts = [a for a in alerts if a["claim_id"].startswith(tag)]  # this test's
    missed = _missed(alerts, claims, rings)
    assert not missed, f"rings not alerted: {missed} of {len(rings)}"
    assert {a["claim_id"] for a in alerts} <= {c.claim_id for c in claims}
    # the warehouse's alert queue holds what the topic carried
    ch = http_client(warehouse_proc.url)
    ids = sorted({a["alert_id"] for a in alerts})
    stored = lambda: sorted(r[0] for r in ch.query(  # noqa: E731
        "SELECT alert_id FROM fraud_alerts FINAL WHERE alert_id IN {ids:Array(String)}", parameters={"ids": ids}).result_rows)
    wait_for(lambda: stored() == ids, 60, "the alerts in ClickHouse", warehouse_proc)
    # and what the investigators' page shows of each: every claim judged, each ring's shared entities
    every = sorted(c.claim_id for c in claims)
    judged = lambda: ch.query("SELECT count() FROM fraud_claims FINAL WHERE claim_id IN {ids:Array(String)} "  # noqa: E731
                              "AND verdict != ''", parameters={"ids": every}).result_rows[0][0]
    wait_for(lambda: judged() == len(every), 60, "every claim in fraud_claims", warehouse_proc)
    linked = lambda a: ch.query(  # noqa: E731
        "SELECT kind, entity_key, uniqExact(claim_id) AS n FROM fraud_claim_entities FINAL "
        "WHERE has({m:Array(String)}, claim_id) GROUP BY kind, entity_key HAVING n > 1",
        parameters={"m": a["members"]}).result_rows
    for a in alerts:
        wait_for(lambda: linked(a), 30, f"an entity linking the claims of {a['alert_id']}'s ring", warehouse_proc)


def test_rings_are_alerted_live_and_claims_wait_out_a_warehouse_outage(
        kafka_bootstrap, ring_claims, warehouse_proc, worker_proc):
    claims, rings = _claims_and_rings(ring_claims)
    warehouse_proc.stop()  # away while the claims arrive: the agent cannot read their telemetry
    asyncio.run(_produce(kafka_bootstrap, claims))
    wait_for(lambda: "fraud: reading the telemetry of" in worker_proc.log.read_text(errors="replace"),
             120, "the fraud agent to meet the warehouse outage", worker_proc)
    time.sleep(3)  # a few retries: the worker stays up, nothing is judged meanwhile
    assert worker_proc.proc.poll() is None, worker_proc.tail(40)
    warehouse_proc.start()
    wait_for(lambda: http_ok(warehouse_proc.url + "/ping"), 60, "the warehouse back", warehouse_proc)

    alerts = asyncio.run(_collect_alerts(kafka_bootstrap, 180, until=lambda got: not _missed(got, claims, rings)))
    assert "failed attempts" in worker_proc.log.read_text(errors="replace"), worker_proc.tail(40)  # the batch waited
    _assert_every_ring_alerted_and_stored(alerts, claims, rings, warehouse_proc)


def test_alerts_kafka_refused_are_sent_by_the_restarted_worker(kafka_bootstrap, ring_claims, warehouse_proc, worker_proc):
    """The broker refuses the alerts (a topic limit far below their size): the worker
    stops with an error, and once the topic takes them again the restarted worker sends
    them from the engine's journal, although the redelivered claims are known to it."""
    claims, rings = _claims_and_rings(ring_claims)
    own = asyncio.run(topic_configs(kafka_bootstrap, "fraud.alerts.v1"))
    asyncio.run(topic_configs(kafka_bootstrap, "fraud.alerts.v1", {**own, "max.message.bytes": "64"}))
    try:
        asyncio.run(_produce(kafka_bootstrap, claims))
        wait_for(lambda: worker_proc.proc.poll() is not None, 120, "the worker to stop")
        assert worker_proc.proc.returncode != 0
        assert "fraud: sending" in worker_proc.log.read_text(errors="replace"), worker_proc.tail(60)
    finally:
        assert asyncio.run(topic_configs(kafka_bootstrap, "fraud.alerts.v1", own)) == own
    worker_proc.start_and_wait()
    alerts = asyncio.run(_collect_alerts(kafka_bootstrap, 120, until=lambda got: not _missed(got, claims, rings)))
    assert "the last run did not send" in worker_proc.log.read_text(errors="replace"), worker_proc.tail(60)
    _assert_every_ring_alerted_and_stored(alerts, claims, rings, warehouse_proc)
