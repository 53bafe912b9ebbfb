"""The fraud agent live on the real broker and warehouse: claims of a simulated book go
through the gate and the worker's fraud agent; every organised ring among them is
alerted on fraud.alerts.v1 and stored in ClickHouse, and claims that arrive while the
warehouse (where the agent reads the insured vehicles' telemetry) is away wait for it
instead of being judged without it or dropped."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import uuid
from pathlib import Path

import msgspec
import numpy as np
import pandas as pd
import pytest

from simulators.claims import to_fnol
from voltrisk.harness import http_ok, wait_for
from voltrisk.local import FRAUD_ENTITY_COLS
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
              "--entity-cols", FRAUD_ENTITY_COLS, "--model-out", str(model))
    full = pd.read_parquet(tmp_path / "book7" / "claims.parquet").sort_values("ts_ms")
    in_ring = full["ring_id"].notna() & (full["ring_id"] != "")
    return pd.concat([full[in_ring], full[~in_ring].tail(300)]).sort_values("ts_ms")


async def _produce_and_collect_alerts(bootstrap: str, claims: list, until, timeout_s: float) -> list[dict]:
    from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", enable_idempotence=True)
    await producer.start()
    try:
        sent = [await producer.send("claims.fnol.v1", msgspec.json.encode(c), key=c.claim_id.encode(), headers=HEADERS)
                for c in claims]
        await asyncio.gather(*sent)
    finally:
        await producer.stop()
    await until()
    consumer = AIOKafkaConsumer("fraud.alerts.v1", bootstrap_servers=bootstrap, group_id=f"test-{uuid.uuid4().hex}",
                                auto_offset_reset="earliest")
    await consumer.start()
    alerts: list[dict] = []
    try:
        loop = asyncio.get_running_loop()
        deadline, quiet_since = loop.time() + timeout_s, loop.time()
        while loop.time() < deadline and loop.time() - quiet_since < 15:
            got = await consumer.getmany(timeout_ms=500)
            for msgs in got.values():
                alerts += [msgspec.json.decode(m.value) for m in msgs]
                quiet_since = loop.time()
    finally:
        await consumer.stop()
    return alerts


def test_rings_are_alerted_live_and_claims_wait_out_a_warehouse_outage(
        kafka_bootstrap, ring_claims, warehouse_proc, worker_proc):
    rows = [{k: (None if isinstance(v, float) and np.isnan(v) else v) for k, v in r.items()}
            for r in ring_claims.to_dict("records")]
    claims = [to_fnol(r) for r in rows]
    rings = ring_claims[ring_claims["ring_id"].notna() & (ring_claims["ring_id"] != "")].groupby("ring_id")["claim_id"].apply(set)
    rings = {ring: ids for ring, ids in rings.items() if len(ids) >= 3}
    assert len(rings) >= 2, "the book should hold organised rings to find"

    warehouse_proc.stop()  # away while the claims arrive: the agent cannot read their telemetry

    async def outage_seen_then_warehouse_back() -> None:
        await asyncio.to_thread(wait_for, lambda: "fraud: reading the telemetry of" in worker_proc.log.read_text(errors="replace"),
                                120, "the fraud agent to meet the warehouse outage", worker_proc)
        await asyncio.sleep(3)  # a few retries: the worker stays up, nothing is judged meanwhile
        assert worker_proc.proc.poll() is None, worker_proc.tail(40)
        warehouse_proc.start()
        await asyncio.to_thread(wait_for, lambda: http_ok(warehouse_proc.url + "/ping"), 60, "the warehouse back", warehouse_proc)

    alerts = asyncio.run(_produce_and_collect_alerts(kafka_bootstrap, claims, outage_seen_then_warehouse_back, 180))
    log = worker_proc.log.read_text(errors="replace")
    assert "failed attempts" in log, worker_proc.tail(40)  # the batch that waited was read after the outage

    named = [{a["claim_id"], *a.get("members", [])} for a in alerts]
    missed = [ring for ring, ids in rings.items() if not any(ids & n for n in named)]
    assert not missed, f"rings not alerted: {missed} of {len(rings)}"
    produced = {c.claim_id for c in claims}
    assert {a["claim_id"] for a in alerts} <= produced

    # the warehouse's alert queue holds what the topic carried
    ch = http_client(warehouse_proc.url)
    ids = sorted({a["alert_id"] for a in alerts})
    stored = lambda: sorted(r[0] for r in ch.query(  # noqa: E731
        "SELECT alert_id FROM fraud_alerts FINAL WHERE alert_id IN {ids:Array(String)}", parameters={"ids": ids}).result_rows)
    wait_for(lambda: stored() == ids, 60, "the alerts in ClickHouse", warehouse_proc)
