"""Fraud alerts in the live pipeline: time from a ring's third claim to its alert.

A model is trained on one simulated book (seed 8); the claims of another book
(seed 7) are replayed in report-time order onto ``claims.fnol.v1`` of a real
broker, through the real worker (gate → fraud agent) and warehouse. For every
true ring with three or more replayed claims: was it alerted, and how long after
its third claim was produced did the first alert naming one of its claims arrive
on ``fraud.alerts.v1``. Prints one JSON object.

    python bench/bench_fraud_live.py --claims 3000 --rate 50 --json
"""

from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import msgspec
import numpy as np
import pandas as pd

from simulators.claims import to_fnol
from voltrisk.harness import ServiceProcess, TempBroker, http_ok, platform_env, wait_for
from fraudring.cli import BOOK_ENTITY_COLS

HEADERS = [("schema_version", b"1"), ("source_protocol", b"claims-json"), ("consent_scope", b"pricing,fraud")]


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def voltrisk(*argv: str) -> None:
    subprocess.run([sys.executable, "-m", "voltrisk", *argv], check=True, capture_output=True)


async def replay(bootstrap: str, rows: list[dict], rate: float, alerts: dict, sent: dict, stop: asyncio.Event) -> None:
    from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

    consumer = AIOKafkaConsumer("fraud.alerts.v1", bootstrap_servers=bootstrap, group_id=f"bench-{uuid.uuid4().hex}",
                                auto_offset_reset="earliest")
    await consumer.start()

    async def collect():
        while not stop.is_set():
            for msgs in (await consumer.getmany(timeout_ms=200)).values():
                now = time.time()
                for m in msgs:
                    a = msgspec.json.decode(m.value)
                    for cid in [a["claim_id"], *a.get("members", [])]:
                        alerts.setdefault(cid, now)

    task = asyncio.create_task(collect())
    p = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", enable_idempotence=True)
    await p.start()
    t0 = time.perf_counter()
    for i, row in enumerate(rows):
        ahead = t0 + i / rate - time.perf_counter()
        if ahead > 0:
            await asyncio.sleep(ahead)
        fnol = to_fnol(row)
        await p.send_and_wait("claims.fnol.v1", msgspec.json.encode(fnol), key=fnol.claim_id.encode(), headers=HEADERS)
        sent[fnol.claim_id] = time.time()
    await p.stop()
    await asyncio.sleep(15)
    stop.set()
    await task
    await consumer.stop()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--claims", type=int, default=3000, help="latest non-ring claims replayed beside every ring claim")
    ap.add_argument("--rate", type=float, default=50.0, help="claims per second")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()

    base = Path(tempfile.mkdtemp(prefix="voltrisk-fraud-live-"))
    env = None
    procs: list[ServiceProcess] = []
    broker = TempBroker(base / "kafka-home").start()
    try:
        env = platform_env(base, broker.bootstrap, "fraud")
        model = Path(env["VOLTRISK_HOME"]) / "fraud" / "fraud_model.json"
        for seed in (7, 8):
            voltrisk("simulate", "book", "--vehicle-years", "20000", "--seed", str(seed), "--out", str(base / f"book{seed}"))
        voltrisk("fraud", "train", "--claims", str(base / "book8" / "claims.parquet"), "--label", "is_fraud",
                 "--entity-cols", BOOK_ENTITY_COLS, "--model-out", str(model))
        log(f"model trained on book seed 8: {model}")
        full = pd.read_parquet(base / "book7" / "claims.parquet").sort_values("ts_ms")
        in_ring = full["ring_id"].notna() & (full["ring_id"] != "")
        # every ring claim, among the latest other claims, in report-time order
        book = pd.concat([full[in_ring], full[~in_ring].tail(args.claims)]).sort_values("ts_ms")
        rows = [{k: (None if isinstance(v, float) and np.isnan(v) else v) for k, v in r.items()}
                for r in book.to_dict("records")]
        wh = ServiceProcess("warehouse", ["warehouse", "serve"], env, base / "warehouse.log").start()
        procs.append(wh)
        wait_for(lambda: http_ok(f"http://127.0.0.1:{env['VOLTRISK_WAREHOUSE_HTTP_PORT']}/ping"), 60, "warehouse", wh)
        ready = Path(env["VOLTRISK_HOME"]) / "run" / "worker.ready"
        w = ServiceProcess("worker", ["worker", "run", "--loglevel", "warn"], env, base / "worker.log").start()
        procs.append(w)
        wait_for(ready.exists, 120, "worker", w)
        time.sleep(5)  # partition assignment after the ready mark
        alerts: dict[str, float] = {}
        sent: dict[str, float] = {}
        asyncio.run(replay(broker.bootstrap, rows, args.rate, alerts, sent, asyncio.Event()))
    finally:
        for p in procs:
            p.stop()
        broker.stop()

    rings = book[book["ring_id"].notna() & (book["ring_id"] != "")].groupby("ring_id")["claim_id"].apply(list)
    latencies, caught, eligible = [], 0, 0
    for ring, claim_ids in rings.items():
        if len(claim_ids) < 3:
            continue
        eligible += 1
        third = sent[claim_ids[2]]
        hits = [alerts[c] for c in claim_ids if c in alerts]
        if hits:
            caught += 1
            after = [h for h in hits if h >= third]  # an alert before the third claim counts as no wait
            latencies.append(min(after) - third if after else 0.0)
    alerted_claims = set(alerts)
    fraud_ids = set(book.loc[book["is_fraud"] == 1, "claim_id"])
    result = {
        "claims_replayed": len(rows), "rate": args.rate, "rings_with_3_claims": eligible, "rings_alerted": caught,
        "ring_recall": round(caught / eligible, 3) if eligible else None,
        "alert_latency_p50_s": round(float(np.percentile(latencies, 50)), 3) if latencies else None,
        "alert_latency_p95_s": round(float(np.percentile(latencies, 95)), 3) if latencies else None,
        "alerted_claims": len(alerted_claims),
        "alerted_precision": round(len(alerted_claims & fraud_ids) / len(alerted_claims), 3) if alerted_claims else None,
    }
    print(json.dumps(result, indent=None if args.json else 2))


if __name__ == "__main__":
    main()
