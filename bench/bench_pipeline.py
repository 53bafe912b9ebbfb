"""End-to-end pipeline benchmark on a real broker and warehouse, in one run.

Stages, all over the same pre-filled ``ev.dynamics.v1`` topic:
  raw      plain aiokafka consume of the topic (the ceiling on this machine)
  gate     the Faust worker (validate, de-duplicate, pseudonymise, emit to clean.*)
  full     worker + warehouse sink together, until every record is visible in ClickHouse
  live     fixed produce rates; event -> row visible in ClickHouse latency (p50/p95/p99)

Records travel in batch messages of ``--batch`` records of one vehicle (a
gateway's 10 s of 1 Hz samples by default). Prints one JSON object.

    python bench/bench_pipeline.py --records 200000 --json
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import string
import sys
import tempfile
import time
import uuid
from pathlib import Path

import msgspec

from contracts.examples import RAW_EXAMPLES
from voltrisk.harness import ServiceProcess, TempBroker, http_ok, platform_env, wait_for
from warehouse.client import http_client

TOPIC = "ev.dynamics.v1"
VIN_CHARS = "".join(c for c in string.ascii_uppercase + string.digits if c not in "IOQ")


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def make_batches(n_records: int, vehicles: int, batch: int, tag: str, rng: random.Random, start_ms: int):
    ex = RAW_EXAMPLES[TOPIC]
    headers = [(k, v.encode()) for k, v in ex.headers.items()] + [("carmaker", b"bench-oem")]
    vins = ["LBENCH" + "".join(rng.choice(VIN_CHARS) for _ in range(11)) for _ in range(vehicles)]
    per_vehicle = n_records // vehicles
    enc = msgspec.json.Encoder()
    out = []
    for step in range(0, per_vehicle, batch):
        for vi, vin in enumerate(vins):
            recs = [
                enc.encode(msgspec.structs.replace(
                    ex.record, event_id=f"{tag}-{vi}-{i}", ts_ms=start_ms + i * 1000, speed_kmh=20.0 + (i % 60),
                    accel_long_mps2=round(rng.uniform(-2, 2), 2), lat=31.2 + vi * 1e-3, lon=121.4 + (i % 500) * 1e-4,
                ))
                for i in range(step, min(step + batch, per_vehicle))
            ]
            out.append((vin.encode(), b"[" + b",".join(recs) + b"]", headers))
    return out, per_vehicle * vehicles


async def produce(bootstrap: str, msgs, rate_msgs: float | None = None, stamp: bool = False) -> float:
    from aiokafka import AIOKafkaProducer

    p = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", enable_idempotence=True, linger_ms=5,
                         max_batch_size=512 * 1024, max_request_size=8 * 1024 * 1024)
    await p.start()
    t0 = time.perf_counter()
    try:
        futs = []
        for i, (k, v, h) in enumerate(msgs):
            if rate_msgs:
                ahead = t0 + i / rate_msgs - time.perf_counter()
                if ahead > 0:
                    await asyncio.sleep(ahead)
            hh = h + [("sent_ts_ms", str(int(time.time() * 1000)).encode())] if stamp else h
            futs.append(await p.send(TOPIC, value=v, key=k, headers=hh))
        await asyncio.gather(*futs)
    finally:
        await p.stop()
    return time.perf_counter() - t0


async def raw_consume(bootstrap: str, n_msgs: int) -> float:
    from aiokafka import AIOKafkaConsumer

    c = AIOKafkaConsumer(TOPIC, bootstrap_servers=bootstrap, group_id=f"raw-{uuid.uuid4().hex}",
                         auto_offset_reset="earliest", max_partition_fetch_bytes=8 << 20, fetch_max_bytes=64 << 20)
    await c.start()
    seen, t0 = 0, None
    try:
        while seen < n_msgs:
            got = await c.getmany(timeout_ms=500, max_records=20_000)
            if got and t0 is None:
                t0 = time.perf_counter()
            seen += sum(len(v) for v in got.values())
    finally:
        await c.stop()
    return time.perf_counter() - t0


async def committed(bootstrap: str, group: str, topic: str) -> int:
    from aiokafka.admin import AIOKafkaAdminClient

    a = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await a.start()
    try:
        offs = await a.list_consumer_group_offsets(group)
        return sum(o.offset for tp, o in offs.items() if tp.topic == topic and o.offset > 0)
    finally:
        await a.close()


def start_worker(env, base: Path, name: str) -> ServiceProcess:
    ready = Path(env["VOLTRISK_HOME"]) / "run" / "worker.ready"
    ready.unlink(missing_ok=True)
    svc = ServiceProcess(name, ["worker", "run", "--loglevel", "warn"], env, base / f"{name}.log").start()
    wait_for(ready.exists, 120, f"{name} ready", svc)
    return svc


def start_warehouse(env, base: Path) -> tuple[ServiceProcess, str]:
    svc = ServiceProcess("warehouse", ["warehouse", "serve"], env, base / "warehouse.log").start()
    url = f"http://127.0.0.1:{env['VOLTRISK_WAREHOUSE_HTTP_PORT']}"

    wait_for(lambda: http_ok(url + "/ping"), 60, "warehouse", svc)
    return svc, url


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--records", type=int, default=200_000)
    ap.add_argument("--vehicles", type=int, default=200)
    ap.add_argument("--batch", type=int, default=10)
    ap.add_argument("--live-rates", default="1000,5000")
    ap.add_argument("--live-seconds", type=float, default=20)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()

    rng = random.Random(7)
    base = Path(tempfile.mkdtemp(prefix="voltrisk-bench-"))
    broker = TempBroker(base / "kafka-home", heap="1g").start()
    bootstrap = broker.bootstrap
    result: dict = {"records": args.records, "batch_records": args.batch, "vehicles": args.vehicles}
    procs: list[ServiceProcess] = []
    try:
        msgs, n = make_batches(args.records, args.vehicles, args.batch, "bench", rng, int(time.time() * 1000) - 5 * 86_400_000)
        result["records"] = n
        dt = asyncio.run(produce(bootstrap, msgs))
        result["produce_eps"] = round(n / dt)
        log(f"pre-filled {n} records in {len(msgs)} messages ({n / dt:,.0f} records/s)")

        dt = asyncio.run(raw_consume(bootstrap, len(msgs)))
        result["raw_consume_eps"] = round(n / dt)
        result["raw_consume_msgs_per_s"] = round(len(msgs) / dt)
        log(f"raw aiokafka consume: {n / dt:,.0f} records/s")

        # gate alone: a worker with its own group drains the topic
        env = platform_env(base / "gate", bootstrap, "gate")
        w = start_worker(env, base, "worker-gate")
        procs.append(w)
        # timed from the first commit, so group join and start-up are not counted
        done = lambda: asyncio.run(committed(bootstrap, env["VOLTRISK_WORKER_APP_ID"], TOPIC))  # noqa: E731
        c0 = wait_for(done, 120, "the gate's first commit", w, interval=0.2)
        t0 = time.perf_counter()
        wait_for(lambda: done() >= len(msgs), 600, "gate to drain the topic", w, interval=0.5)
        dt = time.perf_counter() - t0
        result["gate_eps"] = round((len(msgs) - c0) * n / len(msgs) / dt)
        log(f"gate (Faust worker): {result['gate_eps']:,} records/s")
        w.stop()
        procs.remove(w)

        # full path: fresh worker group + warehouse sink running together
        env = platform_env(base / "full", bootstrap, "full")
        wh, url = start_warehouse(env, base)
        procs.append(wh)
        ch = http_client(url)
        w = start_worker(env, base, "worker-full")
        procs.append(w)
        count = lambda: ch.query("SELECT count() FROM telemetry_dynamics").result_rows[0][0]  # noqa: E731
        n0 = wait_for(count, 120, "the first rows in ClickHouse", w, interval=0.2)
        t0 = time.perf_counter()
        wait_for(lambda: count() >= n, 900, "all rows in ClickHouse", w, interval=0.5)
        dt = time.perf_counter() - t0
        result["full_path_eps"] = round((n - n0) / dt)
        result["full_path_ratio_to_raw"] = round(result["full_path_eps"] / result["raw_consume_eps"], 3)
        result["stored_unique"] = ch.query("SELECT count() FROM telemetry_dynamics FINAL").result_rows[0][0]
        log(f"full path (gate + features + sink into ClickHouse): {result['full_path_eps']:,} records/s")

        live = []
        for rate in [int(r) for r in args.live_rates.split(",") if r]:
            tag = f"live{rate}"
            n_live = int(rate * args.live_seconds)
            lmsgs, n_live = make_batches(n_live, max(1, min(args.vehicles, rate // args.batch)), args.batch, tag, rng,
                                         int(time.time() * 1000) - 3_600_000)
            dt = asyncio.run(produce(bootstrap, lmsgs, rate_msgs=rate / args.batch, stamp=True))
            wait_for(lambda: ch.query("SELECT count() FROM telemetry_dynamics WHERE event_id LIKE {p:String}",
                                      parameters={"p": f"{tag}-%"}).result_rows[0][0] >= n_live, 120, f"live {rate}", w)
            q = ch.query(
                "SELECT quantiles(0.5, 0.95, 0.99)(stored_ts_ms - sent_ts_ms) FROM telemetry_dynamics "
                "WHERE event_id LIKE {p:String}", parameters={"p": f"{tag}-%"},
            ).result_rows[0][0]
            live.append({"rate": rate, "achieved_rate": round(n_live / dt), "visible_p50_ms": round(q[0]),
                         "visible_p95_ms": round(q[1]), "visible_p99_ms": round(q[2])})
            log(f"live {rate}/s: visible p50 {q[0]:.0f} ms, p99 {q[2]:.0f} ms")
        result["live"] = live
    finally:
        for p in procs:
            p.stop()
        broker.stop()
    print(json.dumps(result, indent=None if args.json else 2))


if __name__ == "__main__":
    main()
