"""``voltrisk chaos``: fault injection on the real platform, with a reconciliation.

One temp Kafka broker, the warehouse process (chDB store, sink, read-only endpoint)
and the Faust worker run as real processes while the load generator's fleet
(``simulators.runner.load_stream``) produces at a fixed rate (``worker_churn`` adds a
second worker that joins and leaves again and again). Each scenario injects one
fault, then reconciles from ground truth: the runner knows every event id it
produced (and the partition and offset Kafka acknowledged for every record it
expects to be dead-lettered), reads what the gate emitted on the clean topics, what
the sink stored in ClickHouse and what went to the ``dlq`` table, and counts

  produced       records Kafka acknowledged to the runner (valid, poison, re-sent, late)
  accepted       distinct event ids of the scenario on the clean topics (the gate's output)
  dead_lettered  distinct raw records of the scenario in the dlq table
  stored_unique  distinct event ids of the scenario in the telemetry tables
  lost           valid ids not stored + expected dead letters not in the dlq table (must be 0)
  duplicates     count() FINAL - uniqExact(event_id) over the telemetry tables (must be 0)
  max_lag        highest consumer lag seen (the gate's group on the raw topics + the features'
                 group on the clean topics + the sink's on its topics)
  recovery_s     from the end of the fault until everything produced before it is stored
                 and the features committed it

and what voltrisk did, read from the processes' logs. The runner cleans up every
process and mount it started, also on failure and Ctrl-C.

    voltrisk chaos --quick --json
"""

from __future__ import annotations

import asyncio
import collections
import itertools
import json
import os
import platform as _platform
import random
import re
import shutil
import signal
import subprocess
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import msgspec

from stream import topics as T
from voltrisk.harness import REPO, ServiceProcess, TempBroker, http_ok, platform_env, wait_for, worker_stats
from voltrisk.settings import features_group, gate_group

SCENARIOS = (
    "worker_sigkill", "sink_sigkill", "broker_restart", "warehouse_unavailable", "poison_pill",
    "duplicate_storm", "out_of_order_late", "slow_consumer", "disk_full", "catch_up", "worker_churn",
)
TELEMETRY_TABLES = ("telemetry_dynamics", "telemetry_state", "telemetry_alarm", "telemetry_crash")
RAW_TOPICS = tuple(t.name for t in T.RAW)
CLEAN_TELEMETRY = tuple(T.clean_name(t.name) for t in T.RAW if t.name.startswith("ev."))
RESULT_KEYS = ("name", "produced", "accepted", "dead_lettered", "stored_unique", "lost", "duplicates",
               "max_lag", "recovery_s", "voltrisk_did")


@dataclass
class ChaosConfig:
    quick: bool = False
    scenarios: tuple[str, ...] = SCENARIOS
    rate: float = 1_000.0  # events/s of the load generator
    vehicles: int = 200
    seed: int = 7
    bootstrap: str | None = None  # use this broker instead of a temp one (broker_restart is then skipped)
    tmpfs_mb: int = 1_536  # size-capped store for disk_full (needs root to mount tmpfs)

    def d(self, quick: float, full: float) -> float:
        return quick if self.quick else full


class Skip(Exception):
    """A scenario this machine cannot run (said in the result, never silently)."""


# --- Kafka offsets -----------------------------------------------------------

def _partitions(names) -> list:
    from aiokafka import TopicPartition

    from voltrisk.settings import KafkaClientSettings

    k = KafkaClientSettings()
    specs = {t.name: t for t in T.ALL}
    return [TopicPartition(n, p) for n in names for p in range(T.partitions_for(specs[n], k.telemetry_partitions, k.other_partitions))]


class Offsets:
    """End and committed offsets from one event loop in a thread; samples the lag."""

    def __init__(self, bootstrap: str, worker_group: str, features_group: str, sink_group: str):
        from stream.featuring import FEATURE_INPUTS
        from warehouse.sink import ROUTES

        self.bootstrap, self.worker_group, self.sink_group = bootstrap, worker_group, sink_group
        self.features_group = features_group
        self.raw = _partitions(RAW_TOPICS)
        self.features_in = _partitions(FEATURE_INPUTS)
        self.sink_all = _partitions(sorted(ROUTES))
        self.sink_stored = _partitions(CLEAN_TELEMETRY + (T.DLQ.name,))
        self.loop = asyncio.new_event_loop()
        self._consumer = self._admin = None
        self.samples: list[tuple[float, int, int, int]] = []  # (time, gate's lag, features', sink's)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True, name="chaos-offsets")
        self._thread.start()
        self._sampler = threading.Thread(target=self._sample_forever, daemon=True, name="chaos-lag")
        self._sampler.start()

    def call(self, coro, timeout: float = 20.0):
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    async def _clients(self):
        from aiokafka import AIOKafkaConsumer
        from aiokafka.admin import AIOKafkaAdminClient

        if self._consumer is None:
            c = AIOKafkaConsumer(bootstrap_servers=self.bootstrap, enable_auto_commit=False, request_timeout_ms=8_000)
            a = AIOKafkaAdminClient(bootstrap_servers=self.bootstrap, request_timeout_ms=8_000)
            try:
                await c.start()
                await a.start()
            except Exception:
                await c.stop()
                await a.close()
                raise
            self._consumer, self._admin = c, a
        return self._consumer, self._admin

    async def _reset(self):
        c, a, self._consumer, self._admin = self._consumer, self._admin, None, None
        for close in ((c.stop if c else None), (a.close if a else None)):
            if close:
                try:
                    await close()
                except Exception:
                    pass

    async def _ends(self, tps) -> dict:
        c, _ = await self._clients()
        try:
            return await c.end_offsets(tps)
        except Exception:
            await self._reset()
            raise

    async def _committed(self, group: str) -> dict:
        _, a = await self._clients()
        try:
            return {tp: o.offset for tp, o in (await a.list_consumer_group_offsets(group)).items() if o.offset >= 0}
        except Exception:
            await self._reset()
            raise

    def ends(self, tps) -> dict:
        return self.call(self._ends(tps))

    def committed(self, group: str) -> dict:
        return self.call(self._committed(group))

    def lag(self, group: str, tps) -> int:
        ends, done = self.ends(tps), self.committed(group)
        if any(tp not in done for tp in tps):
            # every partition has a committed offset from the start (commit_at_end): a gap means the
            # coordinator is still loading after a broker restart, not a lag
            raise LookupError(f"{group}: committed offsets not available yet")
        return sum(max(0, ends[tp] - max(0, done[tp])) for tp in tps)

    def caught_up(self, group: str, targets: dict) -> bool:
        done = self.committed(group)
        return all(done.get(tp, -1) >= end for tp, end in targets.items() if end > 0)

    def _sample_forever(self):
        while not self._stop.wait(0.5):
            try:
                self.samples.append((time.time(), self.lag(self.worker_group, self.raw),
                                     self.lag(self.features_group, self.features_in), self.lag(self.sink_group, self.sink_all)))
            except Exception:
                pass  # the broker is down: no sample

    def max_lag(self, since: float, until: float | None = None) -> tuple[int, int, int, int]:
        """(max total, max of the gate's group, of the features', of the sink's) over the samples in the window."""
        window = [lags for t, *lags in list(self.samples) if t >= since and (until is None or t <= until)]
        if not window:
            return 0, 0, 0, 0
        return (max(sum(lags) for lags in window), *(max(lags[i] for lags in window) for i in range(3)))

    def close(self):
        self._stop.set()
        try:
            self.call(self._reset(), 10)
        except Exception:
            pass
        self.loop.call_soon_threadsafe(self.loop.stop)


async def commit_at_end(bootstrap: str, group: str, tps) -> None:
    """Start GROUP at the current end of TPS, so a new worker or sink on a shared
    broker does not re-read every earlier run's history."""
    from aiokafka import AIOKafkaConsumer

    c = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False)
    await c.start()
    try:
        c.assign(tps)
        ends = await c.end_offsets(tps)
        await c.commit({tp: off for tp, off in ends.items()})
    finally:
        await c.stop()


# --- the load generator and bursts ------------------------------------------------

class _Id(msgspec.Struct):
    event_id: str = ""


_id_one, _id_many = msgspec.json.Decoder(_Id), msgspec.json.Decoder(list[_Id])
_enc = msgspec.json.Encoder()


def _producer(bootstrap: str):
    from aiokafka import AIOKafkaProducer

    # 120 s: a record waits out a broker restart instead of failing after 30 s
    return AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", enable_idempotence=True, linger_ms=10,
                            max_batch_size=512 * 1024, request_timeout_ms=120_000)


class Load:
    """The load generator's fleet paced at RATE (token bucket, as `voltrisk load`),
    each event id prefixed with the scenario tag and recorded once Kafka acknowledged it."""

    def __init__(self, bootstrap: str, rate: float, vehicles: int, seed: int, tag: str):
        self.bootstrap, self.rate, self.vehicles, self.seed, self.tag = bootstrap, rate, vehicles, seed, tag
        self.acked: set[str] = set()
        self.recent: collections.deque = collections.deque(maxlen=200_000)  # (topic, key, value, headers)
        self.errors = 0
        self.last_error = ""
        self._stop = threading.Event()
        self._thread = threading.Thread(target=lambda: asyncio.run(self._run()), daemon=True, name="chaos-load")
        self.failure: BaseException | None = None

    def start(self) -> Load:
        self._thread.start()
        return self

    def stop(self, timeout: float = 180.0) -> None:
        self._stop.set()
        self._thread.join(timeout)
        if self._thread.is_alive():
            raise RuntimeError(f"the load generator did not flush within {timeout:.0f}s")
        if self.failure is not None:
            raise RuntimeError(f"the load generator failed: {self.failure!r}")

    async def _run(self) -> None:
        from simulators.runner import load_stream
        from simulators.sink import headers_for

        try:
            stream, _ = load_stream(self.vehicles, self.rate, self.seed, int(time.time() * 1000))
            headers = {t: headers_for(t, "WGS84") for t in RAW_TOPICS}
            p = _producer(self.bootstrap)
            await p.start()
            pending: set = set()
            try:
                tokens, last = 0.0, time.perf_counter()
                while not self._stop.is_set():
                    now = time.perf_counter()
                    tokens = min(tokens + self.rate * (now - last), self.rate * 0.5)
                    last = now
                    stamp = [("sent_ts_ms", str(int(time.time() * 1000)).encode())]
                    for e in itertools.islice(stream, int(tokens)):
                        tokens -= 1
                        eid = f"{self.tag}.{e.record.event_id}"
                        item = (e.topic, e.key.encode(), _enc.encode(msgspec.structs.replace(e.record, event_id=eid)),
                                headers[e.topic] + stamp)
                        try:
                            fut = await p.send(item[0], item[2], key=item[1], headers=item[3])
                        except Exception as exc:
                            self.errors += 1
                            self.last_error = repr(exc)
                            continue
                        pending.add(fut)
                        fut.add_done_callback(lambda f, eid=eid, item=item: self._done(f, eid, item, pending))
                    await asyncio.sleep(0.01)
                await p.flush()
                if pending:
                    await asyncio.wait(list(pending))
            finally:
                await p.stop()
        except BaseException as exc:
            self.failure = exc

    def _done(self, fut, eid: str, item: tuple, pending: set) -> None:
        pending.discard(fut)
        if fut.cancelled() or fut.exception() is not None:
            self.errors += 1
            self.last_error = repr(fut.exception() if not fut.cancelled() else "cancelled")
        else:
            self.acked.add(eid)
            self.recent.append(item)


def produce(bootstrap: str, items: list[tuple]) -> list[tuple[int, int] | None]:
    """Send (topic, key, value, headers) records; (partition, offset) of each, None if refused."""

    async def go():
        p = _producer(bootstrap)
        await p.start()
        try:
            futs = [await p.send(t, v, key=k, headers=h) for t, k, v, h in items]
            out = []
            for f in futs:
                try:
                    md = await f
                    out.append((md.partition, md.offset))
                except Exception:
                    out.append(None)
            return out
        finally:
            await p.stop()

    return asyncio.run(go())


# --- the platform --------------------------------------------------------------

class Platform:
    """Broker, warehouse and worker as real processes in a temp directory. Processes
    that exit without being told to are restarted (as a supervisor would) and that
    is recorded, so a crash is never hidden."""

    def __init__(self, cfg: ChaosConfig, base: Path, say: Callable[[str], None]):
        self.cfg, self.base, self.say = cfg, base, say
        self.broker: TempBroker | None = None
        self.mount: Path | None = None
        self.mount_error = ""
        self.actions: list[tuple[float, str]] = []
        self.expected_down: set[str] = set()
        self.stopped: set[str] = set()  # SIGSTOPped
        self.svcs: dict[str, ServiceProcess] = {}
        self.offsets: Offsets | None = None

    def act(self, what: str) -> None:
        self.actions.append((time.time(), what))
        self.say(what)

    # start-up and clean-up

    def start(self) -> Platform:
        if self.cfg.bootstrap:
            self.bootstrap = self.cfg.bootstrap
        else:
            self.broker = TempBroker(self.base / "kafka-home", heap="512m").start()
            self.bootstrap = self.broker.bootstrap
        store = self._store_dir()
        run = uuid.uuid4().hex[:8]
        self.env = platform_env(self.base, self.bootstrap, run, VOLTRISK_CLICKHOUSE_DSN=f"chdb://{store}")
        # the worker's progress on the raw topics is its gate's group (stream.intake)
        self.worker_group, self.sink_group = gate_group(self.env["VOLTRISK_WORKER_APP_ID"]), self.env["VOLTRISK_SINK_GROUP"]
        # the features' own consumer of the clean topics (stream.featuresintake)
        self.features_group = features_group(self.env["VOLTRISK_WORKER_APP_ID"])
        every = _partitions([t.name for t in T.ALL])
        asyncio.run(commit_at_end(self.bootstrap, self.worker_group, every))
        asyncio.run(commit_at_end(self.bootstrap, self.features_group, every))
        asyncio.run(commit_at_end(self.bootstrap, self.env["VOLTRISK_WORKER_APP_ID"], every))
        asyncio.run(commit_at_end(self.bootstrap, self.sink_group, every))
        self.url = f"http://127.0.0.1:{self.env['VOLTRISK_WAREHOUSE_HTTP_PORT']}"
        self.svcs["warehouse"] = ServiceProcess("warehouse", ["warehouse", "serve"], self.env, self.base / "warehouse.log")
        self.svcs["worker"] = ServiceProcess("worker", ["worker", "run", "--loglevel", "info"], self.env, self.base / "worker.log")
        # a second worker of the same app with its own state directory, started by worker_churn only
        second = dict(self.env, VOLTRISK_HOME=str(self.base / "home-2"))
        self.svcs["worker2"] = ServiceProcess("worker2", ["worker", "run", "--loglevel", "info"], second, self.base / "worker2.log")
        self.expected_down.add("worker2")
        self.start_svc("warehouse")
        self.start_svc("worker")
        self.offsets = Offsets(self.bootstrap, self.worker_group, self.features_group, self.sink_group)
        return self

    def _store_dir(self) -> Path:
        """The chDB store on a size-capped tmpfs when this process may mount one (root),
        so disk_full fills a real filesystem; otherwise a plain temp directory."""
        d = self.base / "store"
        d.mkdir()
        if os.geteuid() == 0 and shutil.which("mount"):
            res = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={self.cfg.tmpfs_mb}m,mode=0700", "voltrisk-chaos", str(d)],
                                 capture_output=True, text=True)
            if res.returncode == 0:
                self.mount = d
            else:
                self.mount_error = res.stderr.strip() or f"mount exited {res.returncode}"
        else:
            self.mount_error = "mounting a size-capped tmpfs needs root"
        return d / "warehouse"

    def close(self) -> None:
        for name in list(self.stopped):
            self.cont(name)
        for svc in self.svcs.values():
            try:
                svc.stop()
            except Exception as exc:
                self.say(f"stopping {svc.name}: {exc!r}")
        if self.offsets is not None:
            self.offsets.close()
        if self.broker is not None:
            try:
                self.broker.stop()
            except Exception as exc:
                self.say(f"stopping the broker: {exc!r}")
        if self.mount is not None:
            (self.mount / "ballast").unlink(missing_ok=True)
            if subprocess.run(["umount", str(self.mount)], capture_output=True).returncode != 0:
                subprocess.run(["umount", "-l", str(self.mount)], capture_output=True)

    # processes

    @property
    def ch(self):
        from warehouse.client import http_client

        return http_client(self.url)

    def start_svc(self, name: str) -> None:
        svc = self.svcs[name]
        if name.startswith("worker"):
            ready = Path(svc.env["VOLTRISK_HOME"]) / "run" / "worker.ready"
            ready.unlink(missing_ok=True)
            svc.start()
            wait_for(ready.exists, 180, "the worker to be ready", svc)
        else:
            svc.start()
            wait_for(lambda: http_ok(self.url + "/ping"), 120, "the warehouse endpoint", svc)
        self.expected_down.discard(name)

    def pid(self, name: str) -> int:
        return self.svcs[name].proc.pid

    def sigkill(self, name: str) -> None:
        pid = self.pid(name)
        self.expected_down.add(name)
        self.svcs[name].kill()
        self.svcs[name].stop()  # closes its log handle
        self.act(f"SIGKILL {name} (pid {pid})")

    def terminate(self, name: str) -> None:
        pid = self.pid(name)
        self.expected_down.add(name)
        self.svcs[name].stop()
        self.act(f"stopped {name} (pid {pid}, SIGTERM)")

    def restart(self, name: str) -> None:
        self.start_svc(name)
        self.act(f"started {name} again (pid {self.pid(name)})")

    def pause(self, name: str) -> None:
        os.kill(self.pid(name), signal.SIGSTOP)
        self.stopped.add(name)

    def cont(self, name: str) -> None:
        os.kill(self.pid(name), signal.SIGCONT)
        self.stopped.discard(name)

    def supervise(self) -> None:
        for name, svc in self.svcs.items():
            if name not in self.expected_down and svc.proc is not None and svc.proc.poll() is not None:
                code = svc.proc.returncode
                svc.stop()
                self.act(f"{name} exited by itself (code {code}); the runner restarts it as a supervisor would")
                self.start_svc(name)

    def sleep(self, seconds: float) -> None:
        end = time.monotonic() + seconds
        while (left := end - time.monotonic()) > 0:
            self.supervise()
            time.sleep(min(0.5, left))

    def wait_through(self, timeout: float) -> float:
        """Wait until everything produced so far went through the gate, the features and
        into ClickHouse: the gate's commits reach the raw topics' current ends, then the
        features' and the sink's commits reach the clean topics' ends at that moment.
        Returns the seconds."""
        t0 = time.monotonic()
        o = self.offsets

        def reached(group, targets):
            self.supervise()
            try:
                return o.caught_up(group, targets)
            except Exception:
                return False

        raw_ends = self._retry(lambda: o.ends(o.raw), t0 + timeout)
        self._until(lambda: reached(self.worker_group, raw_ends), t0 + timeout, "the worker to catch up")
        features_ends = self._retry(lambda: o.ends(o.features_in), t0 + timeout)
        sink_ends = self._retry(lambda: o.ends(o.sink_stored), t0 + timeout)
        self._until(lambda: reached(self.features_group, features_ends), t0 + timeout, "the features to catch up")
        self._until(lambda: reached(self.sink_group, sink_ends), t0 + timeout, "the sink to catch up")
        return time.monotonic() - t0

    def _retry(self, fn, deadline: float):
        while True:
            try:
                return fn()
            except Exception:
                if time.monotonic() > deadline:
                    raise
                self.sleep(1)

    def _until(self, pred, deadline: float, what: str) -> None:
        while not pred():
            if time.monotonic() > deadline:
                raise TimeoutError(f"timed out waiting for {what}")
            time.sleep(0.5)

    def log_size(self) -> dict[str, int]:
        return {n: (s.log.stat().st_size if s.log.exists() else 0) for n, s in self.svcs.items()}

    def log_since(self, sizes: dict[str, int]) -> dict[str, list[str]]:
        out = {}
        for n, s in self.svcs.items():
            if not s.log.exists():  # never started
                out[n] = []
                continue
            with open(s.log, "rb") as f:
                f.seek(sizes.get(n, 0))
                out[n] = f.read().decode("utf-8", "replace").splitlines()
        return out


# --- one scenario -----------------------------------------------------------------

@dataclass
class Run:
    """What the runner sent in one scenario and what it expects."""

    name: str
    tag: str
    t0: float
    raw_start: dict
    clean_start: dict
    logs_start: dict
    load: Load | None = None
    valid: set[str] = field(default_factory=set)  # extra valid ids (out-of-order bursts)
    expect_dlq: dict = field(default_factory=dict)  # (topic, partition, offset) -> kind
    extra_produced: int = 0
    fault_end: float | None = None
    notes: list[str] = field(default_factory=list)
    details: dict = field(default_factory=dict)


class Chaos:
    def __init__(self, cfg: ChaosConfig, say: Callable[[str], None]):
        self.cfg, self.say = cfg, say
        self.rng = random.Random()

    def run(self) -> dict:
        import logging

        # aiokafka warns on every retry while a group coordinator or a broker comes up: the runner expects that
        logging.getLogger("aiokafka").setLevel(logging.CRITICAL)
        base = Path(tempfile.mkdtemp(prefix="voltrisk-chaos-"))
        started = time.time()
        self.p = Platform(self.cfg, base, self.say)
        results = []
        try:
            self.p.start()
            for name in self.cfg.scenarios:
                self.say(f"--- scenario {name}")
                try:
                    results.append(self.scenario(name))
                except Skip as exc:
                    results.append({**{k: None for k in RESULT_KEYS}, "name": name, "skipped": str(exc),
                                    "voltrisk_did": f"not run: {exc}"})
                except Exception as exc:  # a scenario that could not finish fails; the others still run
                    self.say(f"    scenario {name} failed: {exc!r}")
                    for svc in list(self.p.stopped):
                        self.p.cont(svc)
                    results.append({**{k: None for k in RESULT_KEYS}, "name": name, "error": repr(exc)[:500],
                                    "voltrisk_did": f"the scenario did not finish: {exc!r}"[:500]})
                self.say(f"    {json.dumps({k: results[-1].get(k) for k in RESULT_KEYS if k != 'voltrisk_did'})}")
        finally:
            self.p.close()
            shutil.rmtree(base, ignore_errors=True)
        out = {"scenarios": results, "date_utc": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
               "elapsed_s": round(time.time() - started, 1), "quick": self.cfg.quick, "rate": self.cfg.rate,
               "vehicles": self.cfg.vehicles, "store_on_tmpfs": self.p.mount is not None}
        return out

    def scenario(self, name: str) -> dict:
        p = self.p
        if name == "broker_restart" and p.broker is None:
            raise Skip("the runner did not start the broker (--bootstrap given), so it may not restart it")
        if name == "disk_full" and p.mount is None:
            raise Skip(f"no size-capped filesystem for the store ({p.mount_error})")
        tag = f"cx{SCENARIOS.index(name)}{uuid.uuid4().hex[:5]}"
        o = p.offsets
        r = Run(name, tag, time.time(), o.ends(o.raw), o.ends(_partitions(CLEAN_TELEMETRY)), p.log_size())
        r.load = Load(p.bootstrap, self.cfg.rate, self.cfg.vehicles, self.cfg.seed, tag).start()
        try:
            getattr(self, "_" + name)(r)
        finally:
            r.load.stop()
        return self.reconcile(r)

    def _recover(self, r: Run) -> None:
        r.fault_end = time.time()
        r.details["recovery_s"] = round(self.p.wait_through(self.cfg.d(240, 900)), 1)

    # the faults

    def _worker_sigkill(self, r: Run) -> None:
        self._kill_repeatedly(r, "worker", int(self.cfg.d(2, 5)), self.cfg.d(4.0, 20.0))

    def _sink_sigkill(self, r: Run) -> None:
        # the sink inserts every 200 ms: a kill at a random moment lands mid-insert or mid-batch
        self._kill_repeatedly(r, "warehouse", int(self.cfg.d(2, 4)), 5.0)

    def _kill_repeatedly(self, r: Run, name: str, kills: int, max_gap_s: float) -> None:
        p = self.p
        p.sleep(4)
        for i in range(kills):
            p.sleep(self.rng.uniform(1.0, max_gap_s))
            p.sigkill(name)
            if i == kills - 1:
                r.fault_end = time.time()
            p.restart(name)
        self._recover_from(r)
        p.sleep(3)

    def _recover_from(self, r: Run) -> None:
        """Recovery measured from the recorded end of the fault."""
        t = time.time()
        elapsed = self.p.wait_through(self.cfg.d(240, 900))
        r.details["recovery_s"] = round(t - r.fault_end + elapsed, 1)

    def _broker_restart(self, r: Run) -> None:
        p = self.p
        p.sleep(5)
        p.expected_down.update(("worker", "warehouse"))  # judged after the broker is back
        t = time.time()
        p.broker.stop()
        p.act("stopped the Kafka broker (SIGTERM)")
        down = self.cfg.d(8, 20)
        time.sleep(max(0.0, down - (time.time() - t)))
        p.broker.start()
        p.act(f"started the Kafka broker again on the same port and data ({time.time() - t:.0f}s without a broker)")
        p.expected_down.difference_update(("worker", "warehouse"))
        r.fault_end = time.time()
        self._recover_from(r)
        p.sleep(3)

    def _warehouse_unavailable(self, r: Run) -> None:
        p = self.p
        p.sleep(4)
        secs = self.cfg.d(15, 60)
        p.pause("warehouse")
        p.act(f"froze the warehouse process (SIGSTOP, pid {p.pid('warehouse')}) for {secs:.0f}s: no endpoint, no sink")
        t = time.time()
        p.sleep(secs)
        p.cont("warehouse")
        p.act("resumed the warehouse process (SIGCONT)")
        _, w, _, _ = p.offsets.max_lag(t, time.time())
        r.details["worker_max_lag_during_outage"] = w
        r.notes.append(f"the worker kept consuming during the outage (its lag stayed at most {w} records)")
        self._recover(r)
        p.sleep(3)

    def _poison_pill(self, r: Run) -> None:
        p = self.p
        p.sleep(4)
        per_kind = int(self.cfg.d(40, 200))
        items, kinds = poison_records(r.tag, per_kind)
        where = produce(p.bootstrap, items)
        self._mark(r, items, where, kinds)
        p.act(f"sent {len(items)} poison records ({per_kind} each of {len(set(kinds))} kinds) among the load")
        self._recover(r)
        p.sleep(3)

    def _duplicate_storm(self, r: Run) -> None:
        p = self.p
        p.sleep(6)
        sent = list(r.load.recent)
        n = min(len(sent), int(self.cfg.d(2_000, 20_000)))
        picks = self.rng.sample(sent, n)
        items = [x for item in picks for x in [item] * self.rng.choice((1, 1, 2))]
        where = produce(p.bootstrap, items)
        self._mark(r, items, where, "duplicate")
        p.act(f"re-sent {len(items)} copies of {n} events already produced (same event ids, new offsets)")
        self._recover(r)
        p.sleep(3)

    def _mark(self, r: Run, items, where, kinds) -> None:
        """Expect these sent records in the dlq table (KINDS: one label or one per record)."""
        labels = [kinds] * len(items) if isinstance(kinds, str) else kinds
        for (t, _, _, _), w, kind in zip(items, where, labels):
            if w is not None:
                r.expect_dlq[(t, w[0], w[1])] = kind
        r.extra_produced += sum(1 for w in where if w is not None)
        r.details["producer_refused"] = r.details.get("producer_refused", 0) + sum(1 for w in where if w is None)

    def _out_of_order_late(self, r: Run) -> None:
        from simulators.runner import load_stream
        from simulators.sink import headers_for

        p = self.p
        p.sleep(3)
        n = int(self.cfg.d(3_000, 20_000))
        vehicles = 20
        stream, _ = load_stream(vehicles, vehicles * 5, self.cfg.seed + 1000, int(time.time() * 1000) - 300_000)
        events = list(itertools.islice(stream, n))
        headers = {t: headers_for(t, "WGS84") for t in RAW_TOPICS}
        # shuffled within blocks of 200 (seconds of several vehicles): every vehicle's events out of order
        shuffled = []
        for i in range(0, len(events), 200):
            block = events[i:i + 200]
            self.rng.shuffle(block)
            shuffled.extend(block)
        items, valid = [], []
        for e in shuffled:
            eid = f"{r.tag}.o{e.record.event_id}"
            items.append((e.topic, e.key.encode(), _enc.encode(msgspec.structs.replace(e.record, event_id=eid)), headers[e.topic]))
            valid.append(eid)
        newest = max(e.ts_ms for e in events)
        late_items, late_ok = [], []
        for j, e in enumerate(events[-vehicles * 10:]):
            lag_ms = 7 * 3_600_000 if j % 2 else 30 * 60_000  # 7 h behind: late; 30 min behind: within lateness
            eid = f"{r.tag}.{'L' if j % 2 else 'l'}{j}"
            rec = msgspec.structs.replace(e.record, event_id=eid, ts_ms=newest - lag_ms)
            late_items.append((e.topic, e.key.encode(), _enc.encode(rec), headers[e.topic]))
            late_ok.append(None if j % 2 else eid)
        where = produce(p.bootstrap, items)
        r.valid.update(v for v, w in zip(valid, where) if w is not None)
        r.extra_produced += sum(1 for w in where if w is not None)
        where_late = produce(p.bootstrap, late_items)
        for item, ok, w in zip(late_items, late_ok, where_late):
            if w is None:
                continue
            r.extra_produced += 1
            if ok:
                r.valid.add(ok)
            else:
                r.expect_dlq[(item[0], w[0], w[1])] = "late"
        p.act(f"sent {len(items)} events of {vehicles} other vehicles shuffled within blocks of 200, then "
              f"{len(late_items) // 2} 30 min behind their vehicle's newest and {len(late_items) - len(late_items) // 2} 7 h behind")
        self._recover(r)
        p.sleep(3)

    def _slow_consumer(self, r: Run) -> None:
        p = self.p
        p.sleep(3)
        secs = self.cfg.d(20, 60)
        p.act(f"throttled the warehouse process for {secs:.0f}s: stopped 0.8 s of every second (SIGSTOP/SIGCONT)")
        end = time.monotonic() + secs
        while time.monotonic() < end:
            p.pause("warehouse")
            time.sleep(0.8)
            p.cont("warehouse")
            time.sleep(0.2)
        *_, sink_max = p.offsets.max_lag(r.t0)
        p.act("released the throttle")
        self._recover(r)
        r.notes.append(f"the sink fell behind while throttled (its lag peaked at {sink_max:,} messages) and drained "
                       f"{r.details['recovery_s']} s after the throttle ended; nothing was refused or retried")
        p.sleep(3)

    def _disk_full(self, r: Run) -> None:
        p = self.p
        p.sleep(4)
        ballast = p.mount / "ballast"
        try:
            fill(ballast, leave=256 * 1024)
            left = shutil.disk_usage(p.mount).free
            secs = self.cfg.d(12, 45)
            p.act(f"filled the warehouse's {self.cfg.tmpfs_mb} MiB filesystem to {left // 1024} KiB free for {secs:.0f}s")
            r.details["free_kib_during_fault"] = left // 1024
            p.sleep(secs)
        finally:
            ballast.unlink(missing_ok=True)
        p.act(f"freed the space ({shutil.disk_usage(p.mount).free // 2**20} MiB free)")
        self._recover(r)
        p.sleep(3)

    def _worker_churn(self, r: Run) -> None:
        """A second worker joins and leaves again and again under load (SIGTERM or SIGKILL
        in turn): the raw partitions move between the two each time, and a fetch in hand
        at a hand-over must neither be decided twice nor skipped."""
        p = self.p
        p.sleep(3)
        for i in range(int(self.cfg.d(4, 10))):
            p.restart("worker2")
            p.sleep(self.rng.uniform(2.0, self.cfg.d(6.0, 15.0)))
            if i % 2:
                p.sigkill("worker2")
            else:
                p.terminate("worker2")
            p.sleep(self.rng.uniform(1.0, 4.0))
        r.fault_end = time.time()
        self._recover_from(r)
        p.sleep(3)

    def _catch_up(self, r: Run) -> None:
        p = self.p
        p.sleep(5)
        outage = self.cfg.d(60, 600)
        p.terminate("worker")
        t_down = time.time()
        p.sleep(outage)
        o = p.offsets
        backlog = o.lag(p.worker_group, o.raw)
        done = lambda: sum(max(0, o.committed(p.worker_group).get(tp, 0)) for tp in o.raw)  # noqa: E731
        c0 = done()
        t_up = time.time()
        p.restart("worker")
        r.fault_end = t_up
        raw_ends = o.ends(o.raw)
        t_first = None
        while not o.caught_up(p.worker_group, raw_ends):
            p.supervise()
            if t_first is None and done() > c0:
                t_first = time.time()
            time.sleep(0.5)
        t_end, c_end = time.time(), done()
        self._recover_from(r)
        time.sleep(1.2)  # the stats file is a second behind at most
        features = worker_stats(p.env).get("features", {})  # of the restarted worker: the backlog and what came after
        r.details.update(features_redelivered=features.get("redelivered"), features_late_dropped=features.get("late_dropped"))
        rate = self.cfg.rate
        x = (c_end - c0) / (t_end - t_up) / rate
        x_running = (c_end - c0) / (t_end - (t_first or t_up)) / rate
        r.details.update(outage_s=round(t_up - t_down, 1), backlog_records=backlog, drain_s=round(t_end - t_up, 1),
                         startup_s=round((t_first or t_up) - t_up, 1), processed_during_drain=c_end - c0,
                         drain_x_realtime=round(x, 2), drain_x_realtime_after_startup=round(x_running, 2),
                         drain_records_per_s=round((c_end - c0) / (t_end - t_up)))
        p.act(f"workers were down {t_up - t_down:.0f}s while the fleet produced; the backlog of {backlog:,} records was "
              f"drained {t_end - t_up:.1f}s after the restart (start-up included), processing {c_end - c0:,} records "
              f"= {x:.1f}x real time ({x_running:.1f}x once consuming)")
        p.sleep(3)

    # reconciliation

    def reconcile(self, r: Run) -> dict:
        p, o = self.p, self.p.offsets
        p.wait_through(self.cfg.d(300, 900))
        raw_end = o.ends(o.raw)
        clean_end = o.ends(_partitions(CLEAN_TELEMETRY))
        accepted = asyncio.run(clean_ids(p.bootstrap, r.clean_start, clean_end, r.tag + "."))
        ch = p.ch
        like = {"p": r.tag + ".%"}
        stored: set[str] = set()
        dups = raw_rows = 0
        for t in TELEMETRY_TABLES:
            stored.update(row[0] for row in ch.query(f"SELECT event_id FROM {t} WHERE event_id LIKE {{p:String}}", parameters=like).result_rows)
            final, uniq = ch.query(f"SELECT count(), uniqExact(event_id) FROM {t} FINAL WHERE event_id LIKE {{p:String}}",
                                   parameters=like).result_rows[0]
            dups += final - uniq
            raw_rows += ch.query(f"SELECT count() FROM {t} WHERE event_id LIKE {{p:String}}", parameters=like).result_rows[0][0]
        rows = ch.query("SELECT source_topic, source_partition, source_offset, reason FROM dlq "
                        "WHERE reason != 'sink_rejected' AND stored_ts_ms >= {t:Int64}",
                        parameters={"t": int(r.t0 * 1000) - 60_000}).result_rows
        from aiokafka import TopicPartition

        dlq = {}
        for topic, part, off, reason in rows:
            tp = TopicPartition(topic, part)
            if tp in r.raw_start and r.raw_start[tp] <= off < raw_end.get(tp, 0):
                dlq[(topic, part, off)] = reason
        valid = r.load.acked | r.valid
        missing_valid = valid - stored
        missing_dlq = [k for k in r.expect_dlq if k not in dlq]
        unexpected = [k for k in dlq if k not in r.expect_dlq]
        reasons = collections.Counter(dlq.values())
        produced = len(r.load.acked) + r.extra_produced
        lost = len(missing_valid) + len(missing_dlq)
        m_total, m_worker, m_features, m_sink = o.max_lag(r.t0)
        log = p.log_since(r.logs_start)
        r.details.update(
            load_rate=self.cfg.rate, load_errors=r.load.errors, valid_produced=len(valid), rows_before_final=raw_rows,
            missing_valid=len(missing_valid), missing_dead_letters=len(missing_dlq), unexpected_dead_letters=len(unexpected),
            dlq_reasons=dict(reasons), max_worker_lag=m_worker, max_features_lag=m_features, max_sink_lag=m_sink,
            unaccounted=produced - len(accepted) - len(dlq),
        )
        if missing_valid:
            r.details["missing_valid_sample"] = sorted(missing_valid)[:5]
        did, quotes = describe(r, log, reasons, p.actions)
        res = {
            "name": r.name, "produced": produced, "accepted": len(accepted), "dead_lettered": len(dlq),
            "stored_unique": len(stored), "lost": lost, "duplicates": dups, "max_lag": m_total,
            "recovery_s": r.details.get("recovery_s"), "voltrisk_did": did,
            "details": r.details, "log_lines": quotes,
            "runner_actions": [a for t, a in p.actions if t >= r.t0],
        }
        return res


def fill(path: Path, leave: int) -> None:
    """Grow PATH until its filesystem is full (the warehouse keeps writing meanwhile),
    then give back LEAVE bytes: a nearly full disk."""
    size = 0
    with open(path, "wb") as f:
        for chunk in (64 << 20, 4 << 20, 256 << 10, 16 << 10):
            while True:
                try:
                    os.posix_fallocate(f.fileno(), size, chunk)
                except OSError:
                    break
                size += chunk
        os.ftruncate(f.fileno(), max(0, size - leave))


async def clean_ids(bootstrap: str, start: dict, end: dict, prefix: str) -> set[str]:
    """Event ids with PREFIX on the clean topics between the START and END offsets."""
    from aiokafka import AIOKafkaConsumer

    todo = {tp: (s, end[tp]) for tp, s in start.items() if end.get(tp, 0) > s}
    ids: set[str] = set()
    if not todo:
        return ids
    c = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, max_partition_fetch_bytes=8 << 20)
    await c.start()
    try:
        c.assign(list(todo))
        for tp, (s, _) in todo.items():
            c.seek(tp, s)
        left = set(todo)
        deadline = time.monotonic() + 300
        while left and time.monotonic() < deadline:
            for tp, msgs in (await c.getmany(timeout_ms=1000, max_records=5000)).items():
                for m in msgs:
                    if m.offset >= todo[tp][1]:
                        break
                    v = m.value or b""
                    recs = _id_many.decode(v) if v[:1] == b"[" else [_id_one.decode(v)]
                    ids.update(x.event_id for x in recs if x.event_id.startswith(prefix))
                if await c.position(tp) >= todo[tp][1]:
                    left.discard(tp)
                    c.pause(tp)
        if left:
            raise TimeoutError(f"could not read the clean topics to their end offsets ({len(left)} partitions left)")
    finally:
        await c.stop()
    return ids


def poison_records(tag: str, per_kind: int) -> tuple[list[tuple], list[str]]:
    """Bad records of nine kinds, each carrying the tag where it can."""
    from contracts.examples import RAW_EXAMPLES
    from simulators.sink import headers_for

    topic = "ev.dynamics.v1"
    ex = RAW_EXAMPLES[topic]
    h = headers_for(topic, "WGS84")
    key = ex.key.encode()
    now = int(time.time() * 1000)

    def rec(i: int, **kw) -> bytes:
        return _enc.encode(msgspec.structs.replace(ex.record, event_id=f"{tag}.p{i}", ts_ms=now - 60_000, **kw))

    def patched(i: int, field_name: str, raw: bytes) -> bytes:
        return re.sub(rb'"' + field_name.encode() + rb'":[^,}]+', b'"' + field_name.encode() + b'":' + raw, rec(i), count=1)

    kinds = {
        "garbage_bytes": lambda i: (key, os.urandom(48) + tag.encode(), h),
        "bad_json": lambda i: (key, rec(i)[:-7], h),
        "wrong_type": lambda i: (key, patched(i, "speed_kmh", b'"fast"'), h),
        "out_of_range": lambda i: (key, rec(i, speed_kmh=999.0), h),
        "nan": lambda i: (key, patched(i, "accel_long_mps2", b"NaN"), h),
        "future_ts": lambda i: (key, _enc.encode(msgspec.structs.replace(ex.record, event_id=f"{tag}.p{i}", ts_ms=now + 86_400_000)), h),
        "missing_header": lambda i: (key, rec(i), [x for x in h if x[0] != "schema_version"]),
        "bad_vin": lambda i: (b"NOT-A-VIN", rec(i), h),
        "oversized": lambda i: (key, rec(i)[:-1] + b',"pad":"' + b"x" * 70_000 + b'"}', h),
    }
    items, labels = [], []
    i = 0
    for kind, make in kinds.items():
        for _ in range(per_kind):
            k, v, hh = make(i)
            items.append((topic, k, v, hh))
            labels.append(kind)
            i += 1
    return items, labels


# --- what voltrisk did, from its logs -------------------------------------------------

_PATTERNS = {
    "worker": re.compile(r"resumed from offset|Traceback|ERROR|CRITICAL|KafkaConnectionError|Unable to connect|NodeNotReady"),
    "warehouse": re.compile(r"retrying in|succeeded after|already stored by an earlier run|resuming; highest|"
                            r"No space|rejected by the sink|Traceback|ERROR|sink stopped"),
}


def describe(r: Run, log: dict[str, list[str]], reasons, actions) -> tuple[str, list[str]]:
    """One sentence of what the platform did, and the log lines that show it."""
    w, wh = log.get("worker", []) + log.get("worker2", []), log.get("warehouse", [])
    resumed = [ln for ln in w if "resumed from offset" in ln]
    retries = [ln for ln in wh if "retrying in" in ln]
    recovered = [ln for ln in wh if "succeeded after" in ln]
    skipped = [ln for ln in wh if "already stored by an earlier run" in ln]
    rewm = [ln for ln in wh if "resuming; highest" in ln]
    handed = [ln for ln in w if "gate: handed over" in ln]
    dropped = [ln for ln in w if "fetch made before the hand-over" in ln]
    nospace = [ln for ln in wh if "No space" in ln or "NOT_ENOUGH_SPACE" in ln]
    conn_re = re.compile(r"Unable (to )?connect|KafkaConnectionError|Connection refused|NodeNotReady|ConnectionError|"
                         r"Connect attempt|coordinator .*(dead|unavailable)|GroupCoordinatorNotAvailable", re.I)
    conn = [ln for ln in w + wh if conn_re.search(ln)]
    errors = [ln for ln in w + wh if re.search(r"Traceback|ERROR|CRITICAL", ln) and not conn_re.search(ln)]
    restarted = [a for t, a in actions if t >= r.t0 and "exited by itself" in a]
    parts = []
    faulted = any(re.search(r"SIGKILL|started|stopped|exited|froze|throttled|filled", a) for t, a in actions if t >= r.t0)
    if not faulted:  # first reads after the runner's own start-up: not something voltrisk did about a fault
        resumed, rewm = [], []
    if conn:
        parts.append(f"lost the broker or the group coordinator and reconnected or re-joined by themselves "
                     f"({len(conn)} connection log lines)")
    if resumed:
        parts.append(f"the gate logged {len(resumed)} partition resumptions from the committed offsets"
                     f" (latest: {_offsets_sample(resumed[-3:])})")
    if handed:
        parts.append(f"the gate handed raw partitions over {len(handed)} times"
                     + (f" and dropped {len(dropped)} fetches made before a hand-over, read again from the committed "
                        f"offsets (or sought back where the partitions stayed)" if dropped else ""))
    if rewm:
        parts.append(f"the sink re-read the highest stored offset of {len(rewm)} partitions on start or rebalance")
    if skipped:
        n = sum(_skipped_count(ln) for ln in skipped)
        parts.append(f"skipped {n} offsets already inserted before the crash or rebalance ({len(skipped)} log lines)")
    if retries:
        parts.append(f"insert retried {len(retries)} times with offsets not committed"
                     + (f", {len(recovered)} inserts succeeded after retrying" if recovered else ""))
    if nospace:
        parts.append(f"ClickHouse refused {len(nospace)} inserts for lack of space")
    if reasons:
        parts.append(f"dead-lettered {sum(reasons.values())} records: " + ", ".join(f"{k} {v}" for k, v in reasons.most_common()))
    if restarted:
        parts.append("; ".join(restarted))
    parts.extend(r.notes)
    if errors:
        parts.append(f"{len(errors)} error lines in the logs")
    quotes = list(dict.fromkeys(_pick(conn, 2) + resumed[-3:] + _pick(dropped, 2) + _pick(rewm, 2) + _pick(skipped, 3) + _pick(retries, 3)
                                + _pick(recovered, 2) + _pick(nospace, 2) + _pick(errors, 4)))
    return ("; ".join(parts) or "nothing to report in the logs"), [_clip(q) for q in quotes]


def _offsets_sample(lines: list[str]) -> str:
    out = []
    for ln in lines[:3]:
        m = re.search(r"gate (\S+): resumed from offset (\d+)", ln)
        if m:
            out.append(f"{m.group(1)} at {m.group(2)}")
    return ", ".join(out)


def _skipped_count(line: str) -> int:
    m = re.search(r"offsets (\d+)-(\d+) already stored", line)
    return int(m.group(2)) - int(m.group(1)) + 1 if m else 0


def _pick(lines: list[str], n: int) -> list[str]:
    return lines[:n]


def _clip(line: str, n: int = 300) -> str:
    # an insert's dedup token lists every partition's offsets: shorten it so the reason stays visible
    line = re.sub(r"(insert \S{60})\S+", r"\1…", line)
    return line if len(line) <= n else line[:n] + " …"


# --- docs/reliability.md -------------------------------------------------------------

def _commit() -> str:
    try:
        sha = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=REPO, capture_output=True, text=True).stdout.strip()
        return sha + (" (with uncommitted changes)" if dirty else "")
    except OSError:
        return "unknown"


def _machine() -> str:
    mem = ""
    try:
        kb = int(next(ln for ln in open("/proc/meminfo") if ln.startswith("MemTotal")).split()[1])
        mem = f", {kb / 2**20:.0f} GiB RAM"
    except (OSError, StopIteration, ValueError):
        pass
    return f"{os.cpu_count()} cores{mem}, {_platform.system()} {_platform.release()}, Python {_platform.python_version()}"


def markdown(result: dict, command: str) -> str:
    rows = ["| scenario | produced | accepted | dead-lettered | stored unique | lost | duplicates | max lag | recovery s |",
            "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for s in result["scenarios"]:
        if s.get("skipped") or s.get("error"):
            rows.append(f"| {s['name']} | {'not run: ' + s['skipped'] if s.get('skipped') else 'FAILED: ' + s['error']} | | | | | | | |")
            continue
        rows.append(f"| {s['name']} | {s['produced']:,} | {s['accepted']:,} | {s['dead_lettered']:,} | {s['stored_unique']:,} | "
                    f"**{s['lost']}** | **{s['duplicates']}** | {s['max_lag']:,} | {s['recovery_s']} |")
    out = [
        f"## {'Quick run (`--quick`, every scenario briefly)' if result['quick'] else 'Full run'}",
        "",
        f"- date: {result['date_utc']}",
        f"- commit: {_commit()}",
        f"- machine: {_machine()} (shared with other work while it ran)",
        f"- command: `{command}`",
        f"- load: the load generator's fleet at {result['rate']:,.0f} events/s, {result['vehicles']} vehicles, one record per message;"
        f" real Kafka broker, warehouse process (chDB{' on a size-capped tmpfs' if result['store_on_tmpfs'] else ''}) and Faust worker;"
        f" {result['elapsed_s']:.0f} s in all",
        "",
        *rows,
        "",
        "Columns: *produced* records Kafka acknowledged to the runner (valid, poison, re-sent and late);"
        " *accepted* distinct event ids of the scenario the gate emitted on the clean topics;"
        " *dead-lettered* distinct raw records of the scenario in the `dlq` table; *stored unique* distinct event ids"
        " in the telemetry tables; *lost* valid ids the runner produced that are not stored, plus records it expected"
        " dead-lettered that are not in `dlq`; *duplicates* `count() FINAL - uniqExact(event_id)` over the telemetry"
        " tables; *max lag* the highest consumer lag sampled every 0.5 s (the gate's group on the raw topics + the"
        " features' group on the clean topics + the sink's group on its topics, records); *recovery s* from the end of"
        " the fault until the gate had committed everything produced up to then, and the features had committed and"
        " the sink had stored all of it.",
        "",
    ]
    cu = next((s for s in result["scenarios"] if s["name"] == "catch_up" and not s.get("skipped")), None)
    if cu:
        d = cu["details"]
        out += ["### Catch-up", "",
                f"Workers down {d['outage_s']:.0f} s while the fleet kept producing {d['load_rate']:,.0f} events/s: a backlog of"
                f" {d['backlog_records']:,} records. After the restart the worker processed {d['processed_during_drain']:,} records"
                f" (the backlog and what kept arriving) in {d['drain_s']} s until it was level with the head of the topics:"
                f" {d['drain_records_per_s']:,} records/s = **{d['drain_x_realtime']}x real time** with its start-up"
                f" ({d['startup_s']} s to the first commit) included, {d['drain_x_realtime_after_startup']}x once consuming"
                f" (target ≥ 3x). Everything produced up to the restart was in ClickHouse {cu['recovery_s']} s after it.", ""]
    out += ["### What voltrisk did, per fault", ""]
    for s in result["scenarios"]:
        out += [f"#### {s['name']}", ""]
        if s.get("skipped") or s.get("error"):
            out += [f"Not run: {s['skipped']}." if s.get("skipped") else f"The scenario did not finish: `{s['error']}`.", ""]
            continue
        out += [f"Runner: {'; '.join(s['runner_actions']) or '-'}.", "", f"voltrisk: {s['voltrisk_did']}.", ""]
        d = {k: v for k, v in s["details"].items() if k != "missing_valid_sample"}
        out += [f"Details: `{json.dumps(d)}`", ""]
        if s["log_lines"]:
            out += ["```", *s["log_lines"], "```", ""]
    return "\n".join(out)


DOC_HEAD = """# Reliability: fault injection with reconciliation

Generated by `voltrisk chaos` (voltrisk/chaos.py): rerun it rather than editing this file. Each
run replaces its own section (quick or full) and keeps the other; a run of some scenarios only
(`--scenario`) replaces just their rows and texts and says so under the section's header. How a
scenario works and what the columns mean: the module docstring of voltrisk/chaos.py and the
notes under each table.
"""


def _merge_section(old: str, new: str, names: list[str]) -> str:
    """A run of some scenarios only: ``old`` (a whole section) with the table rows, the
    per-fault texts and the catch-up paragraph of ``names`` taken from ``new``, and a
    line saying when and how those were re-run. Rows of other scenarios stay as measured."""

    def row(text: str, name: str) -> str | None:
        return next((ln for ln in text.splitlines() if ln.startswith(f"| {name} |")), None)

    def block(text: str, head: str) -> re.Match | None:  # a "### "/"#### " block up to the next heading of that level or above
        level = head.split(" ", 1)[0]
        stop = "|".join(re.escape("#" * n + " ") for n in range(2, len(level) + 1))
        return re.search(rf"^{re.escape(head)}\n.*?(?=^(?:{stop})|\Z)", text, re.S | re.M)

    out = old
    for name in names:
        new_row, old_row = row(new, name), row(out, name)
        if new_row and old_row:
            out = out.replace(old_row, new_row)
        elif new_row:  # a scenario the section has no row for yet: after the last row
            lines = out.splitlines()
            last = max(i for i, ln in enumerate(lines) if ln.startswith("| "))
            out = "\n".join(lines[:last + 1] + [new_row] + lines[last + 1:])
        for head in (f"#### {name}",) + (("### Catch-up",) if name == "catch_up" else ()):
            nb, ob = block(new, head), block(out, head)
            if nb and ob:
                out = out[:ob.start()] + nb.group(0) + out[ob.end():]
            elif nb and head.startswith("### "):  # section-level paragraph: before the per-fault texts
                at = out.find("### What voltrisk did")
                out = out[:at] + nb.group(0) + out[at:] if at >= 0 else out + "\n" + nb.group(0)
            elif nb:
                out = out.rstrip("\n") + "\n\n" + nb.group(0).rstrip("\n")
    header = {k: v for k, v in re.findall(r"^- (date|commit|command): (.*)$", new, re.M)}
    note = (f"- re-run of {', '.join(names)} only: {header.get('date', '?')}, commit {header.get('commit', '?')}, "
            f"`{header.get('command', '?').strip('`')}` (the other rows are from the date above)")
    earlier = f"- re-run of {', '.join(names)} only: "  # a newer re-run of the same scenarios replaces its line
    lines = [ln for ln in out.splitlines() if not ln.startswith(earlier)]
    at = max(i for i, ln in enumerate(lines) if ln.startswith("- ")
             and i < next(j for j, x in enumerate(lines) if x.startswith("| scenario |")))
    lines.insert(at + 1, note)
    return "\n".join(lines)


def write_doc(path: Path, result: dict, command: str, partial: list[str] | None = None) -> None:
    """Replace this run's section (quick or full) of PATH, keeping the other one. With
    ``partial`` (a run of some scenarios only), replace or add just those scenarios'
    rows and texts in the existing section, keeping the others."""
    sections = {}
    if path.exists():
        for mode in ("quick", "full"):
            m = re.search(rf"<!-- chaos:{mode} -->\n(.*?)\n<!-- /chaos:{mode} -->", path.read_text(), re.S)
            if m:
                sections[mode] = m.group(1)
    mode = "quick" if result["quick"] else "full"
    text = markdown(result, command)
    if partial and mode in sections and "| scenario |" in sections[mode]:
        text = _merge_section(sections[mode], text, partial)
    sections[mode] = text
    body = "\n\n".join(f"<!-- chaos:{m} -->\n{sections[m]}\n<!-- /chaos:{m} -->" for m in ("full", "quick") if m in sections)
    path.write_text(DOC_HEAD + "\n" + body + "\n")


def ok(result: dict) -> bool:
    return all(s.get("skipped") or (s["lost"] == 0 and s["duplicates"] == 0) for s in result["scenarios"])


def run(cfg: ChaosConfig, say: Callable[[str], None] = print) -> dict:
    unknown = [s for s in cfg.scenarios if s not in SCENARIOS]
    if unknown:
        raise ValueError(f"unknown scenario {', '.join(unknown)}; choose from {', '.join(SCENARIOS)}")
    return Chaos(cfg, say).run()
