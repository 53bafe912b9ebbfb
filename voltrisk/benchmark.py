"""`voltrisk bench`: the platform measured against raw Kafka on the same machine, in one run.

Every stage drains the same pre-filled ``ev.dynamics.v1`` topic on a temp broker,
each with a fresh consumer group and a fresh worker home:

  raw             plain aiokafka consume (the ceiling), and consume + msgspec decode
  kafka hops      the full path's Kafka traffic with no work on a message: raw fetched,
                  written to its clean topic, fetched by a sink process (and by the
                  worker's features, as now): the ceiling of the design's topic hops
  gate            worker running only the ingest gate (raw -> clean.*)
  features        gate + features (trips, harsh events, cells, windows)
  scoring         gate + features + scoring (the pricing registry's XGBoost telematics model)
  full            gate + features + scoring + sink, until every record is a row in ClickHouse
  two workers     the full path with two worker processes sharing the partitions
  live            fixed produce rates with event time = now: event -> score (from
                  ``scores.ubi.v1``) and event -> row visible in ClickHouse, p50/p95/p99
  components      XGBoost batch scoring rows/s, warehouse insert rows/s

Worker stage rates are taken from the worker's own stats file (wall time between its
first and latest batch, process CPU per record), so start-up and group joins are not
counted. Prints one JSON object (``--json``) or a Markdown table; ``--append``
adds the table to ``bench/RESULTS.md`` with the date, commit and machine.
"""

from __future__ import annotations

import asyncio
import json
import os
import platform
import random
import shutil
import string
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import msgspec

from voltrisk.broker import status as broker_status
from voltrisk.harness import REPO, ServiceProcess, TempBroker, http_ok, platform_env, wait_for, worker_stats
from voltrisk.settings import WarehouseSettings

TOPIC = "ev.dynamics.v1"
VIN_CHARS = "".join(c for c in string.ascii_uppercase + string.digits if c not in "IOQ")
SCORES_TOPIC = "scores.ubi.v1"
TELEMATICS_MODEL = "bench-telematics"


@dataclass
class BenchConfig:
    records: int = 400_000
    vehicles: int = 400
    batch: int = 10  # records per message: one vehicle's samples (10 = 1 s at 10 Hz or 10 s at 1 Hz)
    live_rates: tuple[int, ...] = (1_000, 5_000, 10_000, 20_000)
    live_seconds: float = 20.0
    # each live rate runs this long before its measurement starts (the steady state is measured;
    # the figures of the warm-up are reported apart)
    live_warmup_s: float = 5.0
    two_workers: bool = True
    scorer: str = "xgboost"  # or "reference"
    quick: bool = False

    @classmethod
    def quick_config(cls) -> BenchConfig:
        return cls(records=120_000, vehicles=300, live_rates=(1_000, 5_000, 10_000, 20_000), live_seconds=6.0,
                   live_warmup_s=3.0, quick=True)


@dataclass
class Stage:
    name: str
    records: int
    seconds: float
    cpu_s_per_record: float | None = None
    note: str = ""
    eps: int = field(init=False)

    def __post_init__(self) -> None:
        self.eps = round(self.records / self.seconds) if self.seconds > 0 else 0


# --- load ---------------------------------------------------------------------

def make_batches(n_records: int, vehicles: int, batch: int, tag: str, rng: random.Random, start_ms: int,
                 step_ms: int = 1_000) -> tuple[list[tuple[bytes, bytes, list]], int]:
    """Batch messages (a JSON array of one vehicle's ``batch`` dynamics records),
    interleaved across vehicles in event-time order, as a fleet's backlog is."""
    from contracts.examples import RAW_EXAMPLES

    ex = RAW_EXAMPLES[TOPIC]
    headers = [(k, v.encode()) for k, v in ex.headers.items()] + [("carmaker", b"bench-oem")]
    vins = ["LBENCH" + "".join(rng.choice(VIN_CHARS) for _ in range(11)) for _ in range(vehicles)]
    per_vehicle = max(1, n_records // vehicles)
    enc = msgspec.json.Encoder()
    out = []
    for step in range(0, per_vehicle, batch):
        for vi, vin in enumerate(vins):
            recs = [
                enc.encode(msgspec.structs.replace(
                    ex.record, event_id=f"{tag}-{vi}-{i}", ts_ms=start_ms + i * step_ms, speed_kmh=20.0 + (i % 60),
                    accel_long_mps2=round(rng.uniform(-2, 2), 2), lat=31.2 + vi * 1e-3, lon=121.4 + (i % 500) * 1e-4,
                ))
                for i in range(step, min(step + batch, per_vehicle))
            ]
            out.append((vin.encode(), b"[" + b",".join(recs) + b"]", headers))
    return out, per_vehicle * vehicles


async def produce(bootstrap: str, msgs, rate_msgs: float | None = None, live: bool = False,
                  started: list[float] | None = None) -> float:
    """Send ``msgs``; at ``rate_msgs`` messages/s if given. ``live`` re-stamps each
    message's records to end at the send time (event time = now) and adds the
    ``sent_ts_ms`` header. ``started`` gets the wall time (s) of the first send."""
    from aiokafka import AIOKafkaProducer

    p = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", enable_idempotence=True, linger_ms=5,
                         max_batch_size=512 * 1024, max_request_size=8 * 1024 * 1024)
    await p.start()
    t0 = time.perf_counter()
    if started is not None:
        started.append(time.time())
    restamp = msgspec.json.Decoder(list[dict])
    try:
        futs = []
        for i, (k, v, h) in enumerate(msgs):
            if rate_msgs:
                ahead = t0 + i / rate_msgs - time.perf_counter()
                if ahead > 0:
                    await asyncio.sleep(ahead)
            if live:
                now = int(time.time() * 1000)
                recs = restamp.decode(v)
                for j, r in enumerate(recs):  # 10 Hz: the last second of the vehicle's samples
                    r["ts_ms"] = now - (len(recs) - 1 - j) * 100
                v = msgspec.json.encode(recs)
                h = h + [("sent_ts_ms", str(now).encode())]
            futs.append(await p.send(TOPIC, value=v, key=k, headers=h))
        await asyncio.gather(*futs)
    finally:
        await p.stop()
    return time.perf_counter() - t0


def send_until_the_broker_goes(bootstrap: str, msgs, rate_msgs: float) -> threading.Thread:
    """``produce`` live in a background thread, for outage runs: it sends until the
    broker goes away, and its failure then is expected (the thread just ends)."""

    def fleet() -> None:
        try:
            asyncio.run(produce(bootstrap, msgs, rate_msgs=rate_msgs, live=True))
        except Exception:
            pass

    thread = threading.Thread(target=fleet, daemon=True)
    thread.start()
    return thread


async def _from_start(bootstrap: str, topic: str):
    """A started consumer of every partition of ``topic`` (no group to join), at its
    first offsets, positions looked up: the clock may start."""
    from aiokafka import AIOKafkaConsumer

    c = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False,
                         auto_offset_reset="earliest", max_partition_fetch_bytes=8 << 20, fetch_max_bytes=64 << 20)
    await c.start()
    try:
        deadline = time.monotonic() + 30
        while not c.assignment():
            if time.monotonic() > deadline:
                raise RuntimeError(f"no partition of {topic} assigned after 30 s")
            await asyncio.sleep(0.01)
        tps = sorted(c.assignment())
        await c.seek_to_beginning(*tps)
        for tp in tps:
            await c.position(tp)
    except BaseException:
        await c.stop()
        raise
    return c


async def raw_consume(bootstrap: str, n_msgs: int, decode: bool) -> float:
    """Seconds to fetch the ``n_msgs`` messages of the bench topic from its start: every
    partition assigned (no group to join), positions looked up before the clock starts,
    and every message fetched after it counted (the first fetch included)."""
    from stream.records import DynamicsV1

    many = msgspec.json.Decoder(list[DynamicsV1])
    c = await _from_start(bootstrap, TOPIC)
    try:
        seen, t0 = 0, time.perf_counter()
        while seen < n_msgs:
            got = await c.getmany(timeout_ms=500, max_records=20_000)
            for msgs in got.values():
                seen += len(msgs)
                if decode:
                    for m in msgs:
                        many.decode(m.value)
        return time.perf_counter() - t0
    finally:
        await c.stop()


def best_raw_consume(bootstrap: str, n_msgs: int, decode: bool, passes: int = 3) -> tuple[float, list[float]]:
    """The fastest of ``passes`` raw consumes (the machine's ceiling) and every pass's seconds."""
    runs = [asyncio.run(raw_consume(bootstrap, n_msgs, decode)) for _ in range(passes)]
    return min(runs), runs


# --- the full path's Kafka traffic alone -----------------------------------------

HOPS_SENDS_IN_FLIGHT = 4  # fetches whose copies are on their way to the broker
# (stage, the relay fetches its copies again, what moves): the least Kafka traffic of the
# design (every record fetched raw, written clean, fetched by the sink), and the traffic
# of the worker as it is (its features also fetch the clean copies the gate handed them)
HOPS_STAGES = (
    ("kafka hops: raw → clean → sink, no work", False, "fetch raw, write clean, the sink fetches clean"),
    ("kafka hops + the features' fetch, no work", True, "as above, and the worker fetches the clean copies too"),
)


def hops_relay(bootstrap: str, n_msgs: int, fetch_copies: bool = True) -> dict:
    """The worker's Kafka traffic with nothing done to a message: fetch the bench topic,
    write each message as it came to its clean topic (same partition; acks=all,
    idempotent, as the worker's producer) in whole batches, and fetch those copies again,
    as the features' consumer does (unless not ``fetch_copies``). Run in its own process
    (``kafka_hops``)."""
    return asyncio.run(_hops_relay(bootstrap, n_msgs, fetch_copies))


async def _hops_relay(bootstrap: str, n_msgs: int, fetch_copies: bool) -> dict:
    from aiokafka import AIOKafkaProducer

    from stream.topics import clean_name

    clean = clean_name(TOPIC)
    raw, copies = await _from_start(bootstrap, TOPIC), await _from_start(bootstrap, clean)
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", enable_idempotence=True, linger_ms=5,
                                max_batch_size=256 * 1024, max_request_size=8 << 20)
    await producer.start()

    async def fetch_the_copies() -> None:
        seen = 0 if fetch_copies else n_msgs
        while seen < n_msgs:
            got = await copies.getmany(timeout_ms=500, max_records=20_000)
            seen += sum(len(msgs) for msgs in got.values())

    async def send(tp, msgs) -> list:
        futures, batch = [], producer.create_batch()
        for m in msgs:
            if batch.append(timestamp=None, key=m.key, value=m.value, headers=list(m.headers)) is None:
                futures.append(await producer.send_batch(batch, clean, partition=tp.partition))
                batch = producer.create_batch()
                batch.append(timestamp=None, key=m.key, value=m.value, headers=list(m.headers))
        futures.append(await producer.send_batch(batch, clean, partition=tp.partition))
        return futures

    copier = None
    try:
        t0, cpu0 = time.time(), time.process_time()
        copier = asyncio.ensure_future(fetch_the_copies())
        sent, in_flight = 0, []
        while sent < n_msgs:
            got = await raw.getmany(timeout_ms=500, max_records=20_000)
            futures = []
            for tp, msgs in got.items():
                futures += await send(tp, msgs)
                sent += len(msgs)
            in_flight.append(asyncio.gather(*futures))
            if len(in_flight) > HOPS_SENDS_IN_FLIGHT:
                await in_flight.pop(0)
        await asyncio.gather(*in_flight)
        await copier
        return {"start_wall": t0, "end_wall": time.time(), "cpu_s": time.process_time() - cpu0}
    finally:
        if copier is not None and not copier.done():
            copier.cancel()
        await producer.stop()
        await raw.stop()
        await copies.stop()


def hops_sink(bootstrap: str, n_msgs: int, ready: str) -> dict:
    """The sink's fetch of the clean copies, with nothing stored; touches ``ready`` once
    its consumer is placed. Run in its own process (``kafka_hops``)."""
    return asyncio.run(_hops_sink(bootstrap, n_msgs, Path(ready)))


async def _hops_sink(bootstrap: str, n_msgs: int, ready: Path) -> dict:
    from stream.topics import clean_name

    c = await _from_start(bootstrap, clean_name(TOPIC))
    try:
        ready.touch()
        seen, cpu0 = 0, time.process_time()
        while seen < n_msgs:
            got = await c.getmany(timeout_ms=500, max_records=20_000)
            seen += sum(len(msgs) for msgs in got.values())
        return {"end_wall": time.time(), "cpu_s": time.process_time() - cpu0}
    finally:
        await c.stop()


def kafka_hops(base: Path, bootstrap: str, n_msgs: int, broker_pid: int | None, fetch_copies: bool = True) -> dict:
    """The full path's Kafka traffic alone, the ceiling of any worker with the design's
    topic hops on this machine: the bench topic fetched, copied to its clean topic and
    fetched again by a relay process (the worker's part), and the copies fetched by a
    second process (the sink's part), the broker serving both. Not counted, so the
    ceiling is above the real path's: the derived rows (trips, daily, cells, scores) and
    the features' state changelog, which the full path also writes and the sink reads.
    Seconds from the relay's first fetch until the sink process has every copy."""
    asyncio.run(reset_downstream_topics(bootstrap))
    ready = base / "hops-sink.ready"
    ready.unlink(missing_ok=True)
    broker0 = _proc_cpu_s(broker_pid) if broker_pid else None
    machine0 = _cpu_times()
    sink = _fresh_process(hops_sink, bootstrap, n_msgs, str(ready))
    try:
        wait_for(lambda: ready.exists() or sink.poll() is not None, 60, "the hops sink's consumer")
        if not ready.exists():
            _result(sink, "hops_sink")  # it exited before its consumer was placed: its error
        relay = _result(_fresh_process(hops_relay, bootstrap, n_msgs, fetch_copies), "hops_relay")
        stored = _result(sink, "hops_sink")
    finally:
        if sink.poll() is None:
            sink.kill()
    out = {"seconds": stored["end_wall"] - relay["start_wall"], "cpu_s": relay["cpu_s"] + stored["cpu_s"],
           "relay_cpu_s": relay["cpu_s"], "sink_cpu_s": stored["cpu_s"],
           "machine_cpu_busy": _share(machine0, _cpu_times(), 0)}
    if broker0 is not None:
        out["broker_cpu_s"] = _proc_cpu_s(broker_pid) - broker0
    return out


async def reset_downstream_topics(bootstrap: str) -> None:
    """Delete and re-create every topic the workers write (clean, derived, DLQ,
    alerts), so each stage starts from the raw topic alone: a stage must not read
    or store what an earlier stage's worker produced."""
    from aiokafka.admin import AIOKafkaAdminClient

    from stream import topics as T
    from voltrisk.broker import create_topics
    from voltrisk.settings import KafkaClientSettings

    keep = {t.name for t in T.RAW} | {T.DECISIONS.name}
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        doomed = [t for t in await admin.list_topics() if t not in keep]
        if doomed:
            await admin.delete_topics(doomed)
        for _ in range(120):
            if not set(doomed) & set(await admin.list_topics()):
                break
            await asyncio.sleep(0.25)
    finally:
        await admin.close()
    for _ in range(40):  # a deleted topic's name may be refused for a moment
        try:
            await create_topics(KafkaClientSettings(kafka_bootstrap=bootstrap))
            return
        except Exception:  # noqa: BLE001 - retried, then raised below
            await asyncio.sleep(0.5)
    await create_topics(KafkaClientSettings(kafka_bootstrap=bootstrap))


# --- processes ------------------------------------------------------------------

class Worker:
    """One worker process with its own home; its stats file says what it did."""

    def __init__(self, env: dict[str, str], base: Path, name: str, wait: bool = True):
        self.env, self.name = env, name
        self.home = Path(env["VOLTRISK_HOME"])
        self.ready = self.home / "run" / "worker.ready"
        self.ready.unlink(missing_ok=True)
        self.svc = ServiceProcess(name, ["worker", "run", "--loglevel", "warn"], env, base / f"{name}.log").start()
        if wait:
            self.wait_ready()

    def wait_ready(self) -> None:
        wait_for(self.ready.exists, 180, f"{self.name} ready", self.svc)

    def stats(self) -> dict:
        return worker_stats(self.env)

    def stop(self) -> None:
        self.svc.stop()


def _stage_window(stats: list[dict], stage: str) -> tuple[float, float, float]:
    """(first batch of any stage, latest batch of ``stage``, CPU seconds spent in
    between) over workers: the pipeline's span, not one agent's."""
    first = min(st["first_wall"] for s in stats for st in s["stages"].values())
    last = max(s["stages"][stage]["last_wall"] for s in stats)
    return first, last, sum(s["cpu_s"] - s.get("_cpu0", 0.0) for s in stats)


def _drain(workers: list[Worker], done: Callable[[list[dict]], bool], what: str, timeout_s: float = 900) -> list[dict]:
    """Wait until ``done(stats)``; remember each worker's CPU when its first batch came."""
    cpu0: dict[str, float] = {}

    def poll():
        stats = [w.stats() for w in workers]
        for w, s in zip(workers, stats):
            if "cpu_s" in s and w.name not in cpu0:  # the worker's start-up is behind it; its work is not
                cpu0[w.name] = s["cpu_s"]
        return stats if all(s.get("stages") for s in stats) and done(stats) else None

    stats = wait_for(poll, timeout_s, what, workers[0].svc, interval=0.25)
    time.sleep(1.2)  # one more stats write: the final CPU figure
    final = [w.stats() for w in workers]
    for w, s in zip(workers, final):
        s["_cpu0"] = cpu0.get(w.name, s["cpu_s"])
    return final or stats


def _records(stats: list[dict], key: str) -> int:
    return sum(s.get("features", {}).get(key, 0) for s in stats)


def _proc_cpu_s(pid: int) -> float:
    """User + system CPU seconds of a process (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _cpu_times() -> tuple[int, int, int]:
    """(busy, total, steal) jiffies of the whole machine (Linux /proc/stat). Steal is
    time the hypervisor gave our virtual cores to someone else: not our work, and a
    run with much of it ran on a slower machine."""
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    fields += [0] * (8 - len(fields))
    user, nice, system, idle, iowait, irq, softirq, steal = fields[:8]  # guest time is inside user
    return user + nice + system + irq + softirq, user + nice + system + idle + iowait + irq + softirq + steal, steal


def _share(before: tuple[int, int, int], after: tuple[int, int, int], i: int) -> float:
    """The share of the machine's time between two ``_cpu_times`` that was field ``i``."""
    return round((after[i] - before[i]) / max(1, after[1] - before[1]), 3)


def start_warehouse(env: dict[str, str], base: Path) -> tuple[ServiceProcess, str]:
    svc = ServiceProcess("warehouse", ["warehouse", "serve"], env, base / "warehouse.log").start()
    url = f"http://127.0.0.1:{env['VOLTRISK_WAREHOUSE_HTTP_PORT']}"
    wait_for(lambda: http_ok(url + "/ping"), 90, "warehouse", svc)
    return svc, url


def worker_env(registry: Path, scorer: str = "xgboost") -> dict[str, str]:
    """The settings every bench worker and warehouse run with: the model registry, a 10 s
    reorder window, the product's sink batch time (the test harness uses 200 ms) and the
    scorer (``xgboost``: the telematics model ``train_model`` promoted; or ``reference``)."""
    return {"VOLTRISK_MODEL_REGISTRY_DIR": str(registry), "VOLTRISK_REORDER_MS": "10000",
            "VOLTRISK_SINK_BATCH_MS": str(WarehouseSettings.model_fields["sink_batch_ms"].default),
            "VOLTRISK_WORKER_SCORER": TELEMATICS_MODEL if scorer == "xgboost" else "reference"}


def train_model(registry: Path, say: Callable[[str], None]) -> tuple[object, object]:
    """A telematics multiplier (XGBoost) fitted on a small simulated book, promoted
    in a temp registry; returns (model, the book)."""
    from pricing.registry import Registry, data_fingerprint
    from pricing.telematics import TelematicsMultiplier
    from simulators import book as simulated
    from simulators import drivers

    cfg = simulated.BookConfig(vehicle_years=2_000, seed=7)
    book = simulated.vehicle_book(drivers.build_population(cfg.n_vehicles, cfg.seed), cfg)
    model = TelematicsMultiplier.fit_book(book, seed=7, nthread=2)
    reg = Registry(registry)
    meta = reg.register(TELEMATICS_MODEL, model, data_fingerprint(book), {})
    reg.promote(TELEMATICS_MODEL, meta.version)
    say(f"telematics model {TELEMATICS_MODEL} v{meta.version} trained on {len(book):,} vehicle-periods and promoted")
    return model, book


def xgboost_rows_per_s(model, book, rows: int = 300_000, batch: int = 5_000) -> dict:
    import numpy as np

    frame = book.iloc[np.resize(np.arange(len(book)), rows)].reset_index(drop=True)
    chunks = [frame.iloc[i:i + batch] for i in range(0, rows, batch)]
    model.multiplier(chunks[0])
    t0, c0 = time.perf_counter(), time.process_time()
    for c in chunks:
        model.multiplier(c)
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    return {"rows": rows, "batch_rows": batch, "rows_per_s": round(rows / wall), "rows_per_cpu_s": round(rows / cpu)}


def _in_fresh_process(fn: Callable, *args, **kwargs):
    """``fn(*args, **kwargs)`` (JSON in and out) in a new Python process: measured like the
    service that runs it, not in the bench process, whose large heap (the pre-filled
    messages) makes every garbage collection during the timed inserts walk that heap."""
    return _result(_fresh_process(fn, *args, **kwargs), fn.__name__)


def _fresh_process(fn: Callable, *args, **kwargs) -> subprocess.Popen:
    """``fn(*args, **kwargs)`` started in a new Python process; ``_result`` waits for it."""
    code = ("import json, sys, importlib; a = json.loads(sys.argv[1]); "
            "m = importlib.import_module(a['module']); "
            "print(json.dumps(getattr(m, a['name'])(*a['args'], **a['kwargs'])))")
    payload = json.dumps({"module": fn.__module__, "name": fn.__name__, "args": [str(x) if isinstance(x, Path) else x for x in args],
                          "kwargs": kwargs})
    return subprocess.Popen([sys.executable, "-c", code, payload], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, cwd=REPO)


def _result(proc: subprocess.Popen, name: str, timeout_s: float = 900):
    """What a ``_fresh_process`` returned, or its error (killed after ``timeout_s``)."""
    try:
        out, err = proc.communicate(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        _, err = proc.communicate()
        raise RuntimeError(f"{name} did not finish in {timeout_s:g} s: {err.strip()[-2000:]}") from None
    if proc.returncode != 0:
        raise RuntimeError(f"{name} failed in its process: {err.strip()[-2000:]}")
    return json.loads(out.strip().splitlines()[-1])


def insert_tables(rows: int, batch: int) -> tuple[list[list], list, float]:
    """Dynamics messages of 10 records (``batch`` rows per group, a day old) and the Arrow
    tables the sink's ``Columnar`` shapes from them: (message groups, tables, shaping s)."""
    from types import SimpleNamespace

    from contracts.examples import RAW_EXAMPLES
    from stream import topics as T
    from warehouse.sink import ROUTES

    columnar = ROUTES[T.clean_name(TOPIC)].columnar
    ex = RAW_EXAMPLES[TOPIC].record
    now = int(time.time() * 1000)
    batches = []
    per_msg = 10
    for b in range(0, rows, batch):
        msgs = []
        for m in range(b, min(b + batch, rows), per_msg):
            recs = [msgspec.structs.replace(ex, event_id=f"ins-{m + j}", ts_ms=now - 86_400_000 + (m + j) * 10,
                                            lat=31.2 + (m % 997) * 1e-3, lon=121.4 + j * 1e-4) for j in range(per_msg)]
            msgs.append(SimpleNamespace(value=msgspec.json.encode(recs), key=f"veh-{m % 1000}".encode(), partition=m % 12,
                                        offset=m // per_msg, headers=[("key_version", b"1"), ("sent_ts_ms", str(now).encode())]))
        batches.append(msgs)
    t0 = time.perf_counter()
    tables = shape(columnar, batches, now)
    return batches, tables, time.perf_counter() - t0


def shape(columnar, batches: list[list], now_ms: int) -> list:
    """One Arrow table per group of messages, as the sink's ``Columnar`` makes them."""
    tables = []
    for msgs in batches:
        cols = columnar.new()
        for m in msgs:
            columnar.add(cols, m, now_ms)
        tables.append(columnar.table(cols))
    return tables


def warehouse_insert_rows_per_s(base: Path, rows: int = 1_000_000, batch: int = 100_000) -> dict:
    """The sink's insert path in-process: dynamics messages of 10 records shaped by the
    sink's ``Columnar`` into Arrow tables (timed apart), then inserted into chDB
    ``telemetry_dynamics``, ``batch`` rows per insert with a dedup token, after one
    untimed insert. The same rows as JSONEachRow (the sink's format for claims and
    derived rows) for comparison."""
    from warehouse.client import writer_client
    from warehouse.migrate import migrate
    from warehouse.sink import INSERT_SETTINGS, TELEMETRY_INSERT_SETTINGS, record_row

    ws = WarehouseSettings(clickhouse_dsn=f"chdb://{Path(base) / 'insert-warehouse'}")
    client = writer_client(ws)
    migrate(client, ws)
    batches, tables, shape_wall = insert_tables(rows, batch)
    now = int(time.time() * 1000)

    def stored() -> int:
        return client.query("SELECT count() FROM telemetry_dynamics").result_rows[0][0]

    # one untimed insert first, as a running sink has made: the first one into a fresh
    # store also pays for opening the table and its views
    client.insert_arrow("telemetry_dynamics", tables[0],
                        settings=dict(TELEMETRY_INSERT_SETTINGS, insert_deduplication_token="warm-up"))
    client.command("TRUNCATE TABLE telemetry_dynamics")
    t0 = time.perf_counter()
    for i, table in enumerate(tables):
        client.insert_arrow("telemetry_dynamics", table,
                            settings=dict(TELEMETRY_INSERT_SETTINGS, insert_deduplication_token=f"arrow:{i}"))
    arrow_wall = time.perf_counter() - t0
    n_arrow = stored()
    client.command("TRUNCATE TABLE telemetry_dynamics")
    bodies = [b"\n".join(record_row(m, now) for m in msgs) for msgs in batches]
    t0 = time.perf_counter()
    for i, body in enumerate(bodies):
        client.raw_insert("telemetry_dynamics", None, body, fmt="JSONEachRow",
                          settings=dict(INSERT_SETTINGS, insert_deduplication_token=f"json:{i}"))
    json_wall = time.perf_counter() - t0
    n_json = stored()
    client.close()
    if n_arrow != rows or n_json != rows:
        raise RuntimeError(f"warehouse insert benchmark: {n_arrow} (Arrow) and {n_json} (JSON) rows stored of {rows}")
    return {"rows": rows, "batch_rows": batch, "rows_per_s": round(rows / arrow_wall), "format": "Arrow (the sink's)",
            "shape_rows_per_s": round(rows / shape_wall), "json_rows_per_s": round(rows / json_wall)}


# --- the run ------------------------------------------------------------------

def _quantiles(values: list[float]) -> tuple[float, float, float]:
    import numpy as np

    if not values:
        return float("nan"), float("nan"), float("nan")
    q = np.percentile(np.asarray(values, float), [50, 95, 99])
    return float(q[0]), float(q[1]), float(q[2])


async def _score_latencies(bootstrap: str, since_ms: int, until: Callable[[], bool]) -> list[tuple[int, float]]:
    """event -> score: for each score of the live run, the newest event time it reflects
    and the time its message was written to ``scores.ubi.v1`` minus that."""
    from aiokafka import AIOKafkaConsumer

    from stream.features.outputs import ScoreV1

    many = msgspec.json.Decoder(list[ScoreV1])
    c = AIOKafkaConsumer(SCORES_TOPIC, bootstrap_servers=bootstrap, group_id=f"lat-{uuid.uuid4().hex}",
                         auto_offset_reset="latest")
    await c.start()
    out: list[float] = []
    try:
        while not until():
            got = await c.getmany(timeout_ms=200)
            for msgs in got.values():
                for m in msgs:
                    for s in many.decode(m.value):
                        if s.through_ts_ms >= since_ms:
                            out.append((s.through_ts_ms, m.timestamp - s.through_ts_ms))
    finally:
        await c.stop()
    return out


def run(cfg: BenchConfig, say: Callable[[str], None]) -> dict:
    rng = random.Random(7)
    base = Path(tempfile.mkdtemp(prefix="voltrisk-bench-"))
    result: dict = {"date_utc": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "commit": _commit(),
                    "machine": _machine(), "config": asdict(cfg)}
    broker = TempBroker(base / "kafka-home", heap="1g").start()
    bootstrap = broker.bootstrap
    procs: list = []
    stages: list[Stage] = []
    registry = base / "models"
    try:
        model, book = train_model(registry, say) if cfg.scorer == "xgboost" else (None, None)
        msgs, n = make_batches(cfg.records, cfg.vehicles, cfg.batch, "bench", rng, int(time.time() * 1000) - 5 * 86_400_000)
        dt = asyncio.run(produce(bootstrap, msgs))
        result["records"], result["messages"] = n, len(msgs)
        result["produce_eps"] = round(n / dt)
        say(f"pre-filled {n:,} records in {len(msgs):,} messages ({n / dt:,.0f} records/s)")

        # the ceiling: the fastest of three passes (one pass is a fraction of a second)
        dt, runs = best_raw_consume(bootstrap, len(msgs), decode=False)
        stages.append(Stage("raw aiokafka consume", n, dt, note=f"{len(msgs) / dt:,.0f} messages/s, values not decoded; "
                            f"best of {len(runs)} passes ({', '.join(f'{n / r:,.0f}' for r in runs)})"))
        dt, runs = best_raw_consume(bootstrap, len(msgs), decode=True)
        stages.append(Stage("raw consume + msgspec decode", n, dt, note=f"every record decoded into its type; best of "
                            f"{len(runs)} passes ({', '.join(f'{n / r:,.0f}' for r in runs)})"))
        raw_eps = stages[0].eps
        say(f"raw consume {raw_eps:,} records/s; with decode {stages[1].eps:,}")
        # the ceiling of the design's topic hops: the full path's Kafka traffic with no work on a message
        broker_pid = broker_status(broker.settings)["pid"]
        for name, fetch_copies, what in HOPS_STAGES:
            runs = [kafka_hops(base, bootstrap, len(msgs), broker_pid, fetch_copies) for _ in range(2)]
            best = min(runs, key=lambda h: h["seconds"])
            passes = ", ".join(f"{n / h['seconds']:,.0f}" for h in runs)
            note = (f"{what}; best of {len(runs)} passes ({passes}); CPU: the "
                    f"relay and sink processes (of which the sink's {best['sink_cpu_s'] / n * 1e6:.1f} µs); the broker "
                    f"{best.get('broker_cpu_s', 0) / n * 1e6:.1f} µs a record more; cores {best['machine_cpu_busy']:.0%} busy")
            stages.append(Stage(name, n, best["seconds"], best["cpu_s"] / n, note))
            say(f"{name}: {stages[-1].eps:,} records/s")

        common = worker_env(registry, cfg.scorer)

        def worker_stage(name: str, stages_env: str, done_key: str) -> Stage:
            asyncio.run(reset_downstream_topics(bootstrap))
            env = platform_env(base / name, bootstrap, name, VOLTRISK_WORKER_STAGES=stages_env, **common)
            w = Worker(env, base, f"worker-{name}")
            procs.append(w)
            if done_key == "gate":
                stats = _drain([w], lambda s: s[0]["stages"].get("gate", {}).get("messages", 0) >= len(msgs), f"{name} to drain")
            else:
                stats = _drain([w], lambda s: _records(s, "records") >= n and "features" in s[0]["stages"], f"{name} to drain")
            first, last, cpu = _stage_window(stats, done_key)
            w.stop()
            procs.remove(w)
            held = _records(stats, "held")
            note = f"{_records(stats, 'scores'):,} scores" if "scoring" in stages_env else ""
            if held:
                note += (", " if note else "") + f"{held:,} records still in the reorder window at the end"
            return Stage(name, n, last - first, cpu / n, note)

        stages.append(worker_stage("gate", "gate", "gate"))
        say(f"gate: {stages[-1].eps:,} records/s")
        stages.append(worker_stage("features", "gate,features", "features"))
        say(f"gate + features: {stages[-1].eps:,} records/s")
        stages.append(worker_stage("scoring", "gate,features,scoring", "features"))
        say(f"gate + features + scoring: {stages[-1].eps:,} records/s")

        def full(name: str, n_workers: int) -> tuple[Stage, dict, list[Worker], ServiceProcess, str]:
            asyncio.run(reset_downstream_topics(bootstrap))
            env = platform_env(base / name, bootstrap, name, VOLTRISK_WORKER_STAGES="gate,features,scoring", **common)
            wh, url = start_warehouse(env, base)
            procs.append(wh)
            from warehouse.client import http_client

            ch = http_client(url)
            workers = []
            # all workers start together, so the group forms once with all of them
            for i in range(n_workers):
                wenv = dict(env, VOLTRISK_HOME=str(base / name / f"home{i}"))
                workers.append(Worker(wenv, base, f"worker-{name}-{i}", wait=False))
                procs.append(workers[-1])
            for w in workers:
                w.wait_ready()
            # from the workers' first batch until the last row is visible in ClickHouse
            end: list[float] = []
            machine: list[tuple[int, int, int]] = [_cpu_times()]

            def all_stored(stats) -> bool:
                # every record a row in ClickHouse, and every record through the features and scoring
                rows = ch.query("SELECT count() FROM telemetry_dynamics").result_rows[0][0]
                if _records(stats, "records") >= n and rows >= n:
                    end.append(time.time())
                    machine.append(_cpu_times())
                return bool(end)

            wh_cpu0 = _proc_cpu_s(wh.proc.pid)
            stats = _drain(workers, all_stored, "every row in ClickHouse and through the features")
            wh_cpu = _proc_cpu_s(wh.proc.pid) - wh_cpu0
            # from the first batch of any worker (a group that re-balances pays for it here)
            first = min(st["first_wall"] for s in stats for st in s["stages"].values())
            cpu = sum(s["cpu_s"] - s["_cpu0"] for s in stats)
            unique = ch.query("SELECT uniqExact(event_id), count() FROM telemetry_dynamics FINAL").result_rows[0]
            result["storage"] = {t: {"rows": r, "compressed_bytes_per_row": round(c / max(r, 1), 1),
                                     "compression_ratio": round(u / max(c, 1), 2)}
                                 for t, r, c, u in ch.query(
                                     "SELECT table, sum(rows), sum(data_compressed_bytes), sum(data_uncompressed_bytes) "
                                     "FROM system.parts WHERE active AND database = currentDatabase() AND rows > 0 "
                                     "GROUP BY table ORDER BY table").result_rows}
            # when each worker's gate took its first batch: the later ones waited for the group to let them in
            starts = sorted(s["stages"]["gate"]["first_wall"] for s in stats if "gate" in s.get("stages", {}))
            joined = f"; the last worker's first batch {starts[-1] - starts[0]:.1f} s after the first's" if len(starts) > 1 else ""
            stage = Stage(name, n, end[0] - first, cpu / n,
                          f"{n_workers} worker process{'es' if n_workers > 1 else ''} + warehouse "
                          f"({wh_cpu / n * 1e6:.1f} µs CPU per record in the warehouse process); stored unique {unique[0]:,} of {n:,}"
                          + joined)
            check = {"stored_unique": unique[0], "stored_final": unique[1], "machine_cpu_busy": _share(*machine, 0),
                     "machine_cpu_steal": _share(*machine, 2)}
            if len(starts) > 1:
                check["join_lag_s"] = round(starts[-1] - starts[0], 2)
            return stage, check, workers, wh, url

        def stop_all(workers: list[Worker], wh: ServiceProcess) -> None:
            for w in workers:
                w.stop()
                procs.remove(w)
            wh.stop()
            procs.remove(wh)

        # two workers first: the single-worker run's processes then stay up for the live
        # runs, which must not find a backlog on the raw topic for a new consumer group
        two = None
        if cfg.two_workers:
            two, check2, workers, wh, _ = full("full-2-workers", 2)
            result["two_workers_check"] = check2
            say(f"two workers: {two.eps:,} records/s")
            stop_all(workers, wh)

        stage, check, workers, wh, url = full("full", 1)
        stages.append(stage)
        result["full_path_check"] = check
        say(f"full path: {stage.eps:,} records/s")
        if two is not None:
            stages.append(two)
            result["two_worker_scaling"] = round(two.eps / stage.eps, 2)
            # what the cores allow: a second worker can only use what the first left idle
            result["one_worker_machine_cpu_busy"] = check["machine_cpu_busy"]

        settled = _settle(url)
        say(f"the warehouse's merges of the full path's rows done after {settled:.1f} s; live runs")
        result["live_settle_s"] = round(settled, 1)
        live = []
        for rate in cfg.live_rates:
            live.append(_live(bootstrap, url, rate, cfg, rng, workers[0]))
            say(f"live {rate:,}/s: score p99 {live[-1]['score_p99_ms']} ms, visible p99 {live[-1]['visible_p99_ms']} ms")
        result["live"] = live
        stop_all(workers, wh)

        if model is not None:
            result["xgboost"] = xgboost_rows_per_s(model, book)
            say(f"xgboost batch scoring: {result['xgboost']['rows_per_s']:,} rows/s")
        result["warehouse_insert"] = _in_fresh_process(warehouse_insert_rows_per_s, base, rows=300_000 if cfg.quick else 1_000_000)
        say(f"warehouse insert: {result['warehouse_insert']['rows_per_s']:,} rows/s")
    except BaseException:
        say(f"the run failed; its broker, warehouse stores and process logs are kept in {base}")
        raise
    finally:
        for p in reversed(procs):
            p.stop()
        broker.stop()
    shutil.rmtree(base, ignore_errors=True)  # a run leaves ~0.5 GB of topics and stores

    by = {s.name: s for s in stages}
    result["stages"] = [asdict(s) for s in stages]
    result.update({
        "raw_consume_eps": raw_eps,
        "raw_consume_decode_eps": by["raw consume + msgspec decode"].eps,
        "gate_eps": by["gate"].eps,
        "features_eps": by["features"].eps,
        "scoring_eps": by["scoring"].eps,
        "full_path_eps": by["full"].eps,
        "full_path_ratio_to_raw": round(by["full"].eps / raw_eps, 4),
        "full_path_ratio_to_raw_decode": round(by["full"].eps / by["raw consume + msgspec decode"].eps, 4),
        "kafka_hops_min_eps": by[HOPS_STAGES[0][0]].eps,
        "kafka_hops_eps": by[HOPS_STAGES[1][0]].eps,
        "kafka_hops_min_ratio_to_raw": round(by[HOPS_STAGES[0][0]].eps / raw_eps, 4),
        "full_path_ratio_to_kafka_hops": round(by["full"].eps / by[HOPS_STAGES[1][0]].eps, 4),
        "xgboost_rows_per_s": result.get("xgboost", {}).get("rows_per_s"),
        "warehouse_insert_rows_per_s": result["warehouse_insert"]["rows_per_s"],
        "warehouse_insert_json_rows_per_s": result["warehouse_insert"]["json_rows_per_s"],
    })
    return result


def _settle(url: str, timeout_s: float = 120.0) -> float:
    """Wait until the warehouse merges no parts (after the full path's 400,000-row burst
    its merges take a core for a while, which the live runs should not measure); the
    seconds waited."""
    from warehouse.client import http_client

    ch, t0 = http_client(url), time.monotonic()
    while time.monotonic() - t0 < timeout_s and ch.query("SELECT count() FROM system.merges").result_rows[0][0]:
        time.sleep(0.5)
    return time.monotonic() - t0


def _live(bootstrap: str, url: str, rate: int, cfg: BenchConfig, rng: random.Random, worker: Worker) -> dict:
    """Produce at ``rate`` records/s with event time = now: ``live_warmup_s``, then
    ``live_seconds`` measured (the same vehicles throughout; the warm-up's own latencies
    are reported apart, as ``warmup_*``)."""
    from warehouse.client import http_client

    tag = f"live{rate}"
    vehicles = max(1, min(2_000, rate // 10))  # 10 Hz vehicles, each sending its last `batch` samples per message
    seconds = cfg.live_warmup_s + cfg.live_seconds
    msgs, n_all = make_batches(int(rate * seconds), vehicles, cfg.batch, tag, rng, 0)
    since = int(time.time() * 1000)
    done = {"produced": False}
    started: list[float] = []
    ch = http_client(url)

    async def both():
        lat_task = asyncio.create_task(_score_latencies(bootstrap, since, lambda: done["produced"]))
        await asyncio.sleep(1.0)  # the latency consumer has joined
        dt = await produce(bootstrap, msgs, rate_msgs=rate / cfg.batch, live=True, started=started)
        await asyncio.to_thread(wait_for, lambda: ch.query(
            "SELECT count() FROM telemetry_dynamics WHERE event_id LIKE {p:String}", parameters={"p": f"{tag}-%"}
        ).result_rows[0][0] >= n_all, 180, f"live {rate} rows")
        await asyncio.sleep(2.0)  # the last scores
        done["produced"] = True
        return dt, await lat_task

    before, machine0 = worker.stats(), _cpu_times()
    dt, scores = asyncio.run(both())
    machine1 = _cpu_times()
    time.sleep(1.2)  # the worker's stats file is a second behind at most
    after = worker.stats()
    gc_before, gc_after = before.get("gc", {}).get("2", {}), after.get("gc", {}).get("2", {})
    handed = after.get("features", {}).get("handed_over", 0) - before.get("features", {}).get("handed_over", 0)
    measured_from = int((started[0] + cfg.live_warmup_s) * 1000)  # event time = send time
    out = {"rate": rate, "achieved_rate": round(n_all / dt), "warmup_s": cfg.live_warmup_s,
           # full collections in the worker during the run (each stops all its stages)
           "worker_full_gc": gc_after.get("collections", 0) - gc_before.get("collections", 0),
           "worker_full_gc_pause_ms": round(gc_after.get("pause_ms", 0.0) - gc_before.get("pause_ms", 0.0), 1),
           # of its len(msgs) messages, those the features took from the gate in-process
           "messages": len(msgs), "handed_over": handed,
           # the machine during the run: busy share of all cores, and the share the hypervisor took
           "machine_cpu_busy": _share(machine0, machine1, 0), "machine_cpu_steal": _share(machine0, machine1, 2)}
    for part, op, lat in (("", ">=", [x for t, x in scores if t >= measured_from]),
                          ("warmup_", "<", [x for t, x in scores if t < measured_from])):
        # event → the gate's decision (ingest_ts_ms) and event → row visible
        g, q, rows = ch.query("SELECT quantiles(0.5, 0.99)(ingest_ts_ms - sent_ts_ms), "
                              "quantiles(0.5, 0.95, 0.99)(stored_ts_ms - sent_ts_ms), count() FROM telemetry_dynamics "
                              f"WHERE event_id LIKE {{p:String}} AND ts_ms {op} {{t:Int64}}",
                              parameters={"p": f"{tag}-%", "t": measured_from}).result_rows[0]
        s50, s95, s99 = _quantiles(lat)
        out.update({f"{part}records": rows, f"{part}scores": len(lat),
                    f"{part}score_p50_ms": round(s50), f"{part}score_p95_ms": round(s95), f"{part}score_p99_ms": round(s99),
                    f"{part}visible_p50_ms": round(q[0]), f"{part}visible_p95_ms": round(q[1]),
                    f"{part}visible_p99_ms": round(q[2]), f"{part}gate_p50_ms": round(g[0]), f"{part}gate_p99_ms": round(g[1])})
    return out


def _commit() -> str:
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True,
                              check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def _machine() -> str:
    load = os.getloadavg()[0]
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return (f"{os.cpu_count()} cores, {mem:.0f} GiB, Python {platform.python_version()}, "
            f"load average {load:.1f} at start")


def _pct(share: float | None) -> str:
    return "–" if share is None else f"{share:.0%}"


def markdown(r: dict) -> str:
    raw = r["raw_consume_eps"]
    lines = [f"Command: `voltrisk bench{' --quick' if r['config']['quick'] else ''}` — {r['date_utc']}, commit {r['commit']}, "
             f"{r['machine']}. {r['records']:,} records in {r['messages']:,} messages of {r['config']['batch']} "
             f"(one vehicle's samples), {r['config']['vehicles']} vehicles; scorer {r['config']['scorer']}.",
             "", "| stage | records/s | ratio to raw consume | CPU µs per record | note |", "| --- | ---: | ---: | ---: | --- |"]
    for s in r["stages"]:
        cpu = f"{s['cpu_s_per_record'] * 1e6:.1f}" if s["cpu_s_per_record"] is not None else "–"
        lines.append(f"| {s['name']} | {s['eps']:,} | {s['eps'] / raw:.3f} | {cpu} | {s['note']} |")
    if "kafka_hops_eps" in r:
        lines += ["", f"The design's topic hops alone, with no work on a message: {r['kafka_hops_min_eps']:,} records/s "
                  f"({r['kafka_hops_min_eps'] / raw:.0%} of raw consume) for the least traffic, {r['kafka_hops_eps']:,} "
                  f"({r['kafka_hops_eps'] / raw:.0%}) with the features' fetch of the clean copies as the worker does it; "
                  f"the full path ran at {r['full_path_ratio_to_kafka_hops']:.0%} of the latter. No worker with these hops "
                  "can pass the share of raw consume its Kafka traffic alone reaches on this machine."]
    lines += ["", "| live rate (records/s) | achieved | event → gate p50 / p99 | event → score p50 | p95 | p99 "
                  "| event → visible p50 | p95 | p99 | messages handed over | cores busy / stolen |",
              "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for x in r["live"]:
        lines.append(f"| {x['rate']:,} | {x['achieved_rate']:,} | {x.get('gate_p50_ms', '–')} / {x.get('gate_p99_ms', '–')} ms | "
                     f"{x['score_p50_ms']} ms | {x['score_p95_ms']} ms | "
                     f"{x['score_p99_ms']} ms | {x['visible_p50_ms']} ms | {x['visible_p95_ms']} ms | {x['visible_p99_ms']} ms | "
                     f"{x.get('handed_over', 0):,} of {x.get('messages', 0):,} | "
                     f"{_pct(x.get('machine_cpu_busy'))} / {_pct(x.get('machine_cpu_steal'))} |")
    if r["live"] and "warmup_s" in r["live"][0]:
        lines += ["", f"Each rate ran {r['live'][0]['warmup_s']:g} s before its {r['config']['live_seconds']:g} s measurement "
                  f"(the live runs started {r.get('live_settle_s', 0):g} s after the full path, once the warehouse had "
                  "merged its rows); in those warm-up seconds event → score p99 / visible p99 were "
                  + ", ".join(f"{x['warmup_score_p99_ms']} / {x['warmup_visible_p99_ms']} ms at {x['rate']:,}/s" for x in r["live"])
                  + ". Full garbage collections in the worker during each run (warm-up and measurement): "
                  + ", ".join(f"{x['worker_full_gc']} taking {x['worker_full_gc_pause_ms']:g} ms at {x['rate']:,}/s"
                              for x in r["live"]) + "."]
    lines += ["", f"XGBoost batch scoring: {r['xgboost_rows_per_s'] or 0:,} rows/s; warehouse insert "
              f"({r['warehouse_insert']['format']}, {r['warehouse_insert']['batch_rows']:,} rows per insert): "
              f"{r['warehouse_insert_rows_per_s']:,} rows/s (shaping the Arrow tables from the messages, timed apart: "
              f"{r['warehouse_insert']['shape_rows_per_s']:,} rows/s); the same rows as JSONEachRow: "
              f"{r['warehouse_insert_json_rows_per_s']:,} rows/s."]
    if "two_worker_scaling" in r:
        lines.append(f"Two worker processes: {r['two_worker_scaling']}× one worker on the full path. With one worker the "
                     f"machine's {os.cpu_count()} cores were {r['one_worker_machine_cpu_busy']:.0%} busy (worker, broker, "
                     "warehouse and the bench), which bounds what a second worker process can add here.")
    steal = r.get("full_path_check", {}).get("machine_cpu_steal")
    if steal is not None:
        lines.append(f"CPU stolen by the hypervisor during the full path: {_pct(steal)} of the cores' time (Linux "
                     "/proc/stat; a run with much of it ran on a slower machine).")
    return "\n".join(lines)
