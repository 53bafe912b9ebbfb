"""The platform over SASL_SSL, end to end, with every secret configured: raw telemetry
from the simulator principal → worker (principal worker) → clean/derived topics →
warehouse sink (principal sink) → ClickHouse; the dashboard (principal dashboard)
reads lag and rows. Then: no raw VIN on any topic the platform writes, no configured
secret in any log or output, and no server listening beyond 127.0.0.1."""

from __future__ import annotations

import asyncio
import json
import random
import secrets
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from platform_helpers import dynamics_messages, random_vin
from stream import topics as T
from voltrisk.harness import REPO, ServiceProcess, free_port, http_ok, platform_env, wait_for
from warehouse.client import http_client

pytestmark = pytest.mark.integration

DASHBOARD_PAGE = """
import json, logging, sys
logging.basicConfig(level=logging.DEBUG, stream=sys.stderr)
from streamlit.testing.v1 import AppTest
at = AppTest.from_file(sys.argv[1], default_timeout=60)
at.run()
print(json.dumps({"exception": [e.value for e in at.exception], "error": [e.value for e in at.error],
                  "warning": [w.value for w in at.warning], "title": [t.value for t in at.title]}))
"""


def listening(pid: int) -> set[tuple[str, int]]:
    """(address, port) of the TCP sockets process ``pid`` listens on (from /proc)."""
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = fd.readlink().as_posix()
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    out = set()
    for table in ("tcp", "tcp6"):
        for line in Path(f"/proc/{pid}/net/{table}").read_text().splitlines()[1:]:
            f = line.split()
            if f[3] == "0A" and f[9] in inodes:  # 0A: LISTEN
                addr, port = f[1].split(":")
                if table == "tcp":
                    ip = ".".join(str(int(addr[i:i + 2], 16)) for i in (6, 4, 2, 0))
                else:
                    ip = "::1" if addr == "0" * 24 + "01000000" else ("::" if set(addr) == {"0"} else addr)
                out.add((ip, int(port, 16)))
    return out


async def _produce(k, messages) -> None:
    from aiokafka import AIOKafkaProducer

    p = AIOKafkaProducer(acks="all", enable_idempotence=True, **k.aiokafka_kwargs())
    await p.start()
    try:
        await asyncio.gather(*[await p.send("ev.dynamics.v1", value=v, key=key, headers=h) for key, v, h in messages])
    finally:
        await p.stop()


async def _read_all(k, names: list[str]) -> list[tuple[str, bytes]]:
    """Every record on ``names`` up to their current end, as (topic, key + value + headers)."""
    from aiokafka import AIOKafkaConsumer, TopicPartition

    c = AIOKafkaConsumer(enable_auto_commit=False, **k.aiokafka_kwargs())
    await c.start()
    try:
        # the topics as TempBroker created them, from the topic table
        tps = [TopicPartition(t, p) for t in names
               for p in range(T.partitions_for(T.BY_NAME[t], k.telemetry_partitions, k.other_partitions))]
        c.assign(tps)
        await c.seek_to_beginning(*tps)
        ends = await c.end_offsets(tps)
        out = []
        deadline = time.monotonic() + 60
        async def behind() -> bool:
            return any([await c.position(tp) < ends[tp] for tp in tps])

        while await behind() and time.monotonic() < deadline:
            for tp, records in (await c.getmany(timeout_ms=1000)).items():
                out += [(tp.topic, (r.key or b"") + b"\n" + (r.value or b"") + b"\n"
                         + b"\n".join(k.encode() + b"=" + v for k, v in r.headers)) for r in records]
        return out
    finally:
        await c.stop()


def test_platform_over_sasl_ssl_keeps_vins_off_topics_secrets_out_of_logs_and_servers_on_localhost(secure_broker, tmp_path):
    run = uuid.uuid4().hex[:6]
    secret = {name: secrets.token_urlsafe(18) for name in ("pseudonym", "clickhouse", "dashboard_clickhouse",
                                                                "worker_clickhouse")}
    web_port = free_port()
    base = platform_env(tmp_path, secure_broker.bootstrap, run,
                        VOLTRISK_WORKER_APP_ID=f"voltrisk-worker-{run}", VOLTRISK_SINK_GROUP=f"voltrisk-sink-{run}",
                        VOLTRISK_PSEUDONYM_KEY=secret["pseudonym"], VOLTRISK_CLICKHOUSE_PASSWORD=secret["clickhouse"],
                        VOLTRISK_DASHBOARD_CLICKHOUSE_PASSWORD=secret["dashboard_clickhouse"],
                        VOLTRISK_WORKER_CLICKHOUSE_PASSWORD=secret["worker_clickhouse"],
                        VOLTRISK_WORKER_WEB_ENABLED="true", VOLTRISK_WORKER_WEB_PORT=str(web_port))
    for principal in ("admin", "worker", "sink", "simulator", "dashboard"):
        secret[f"sasl_{principal}"] = secure_broker.env(principal)["VOLTRISK_KAFKA_SASL_PASSWORD"]

    warehouse = ServiceProcess("warehouse", ["warehouse", "serve"], {**base, **secure_broker.env("sink")},
                               tmp_path / "warehouse.log").start()
    worker = ServiceProcess("worker", ["worker", "run", "--loglevel", "info"], {**base, **secure_broker.env("worker")},
                            tmp_path / "worker.log").start()
    try:
        url = f"http://127.0.0.1:{base['VOLTRISK_WAREHOUSE_HTTP_PORT']}"
        wait_for(lambda: http_ok(url + "/ping"), 90, "the warehouse endpoint", warehouse)
        wait_for((Path(base["VOLTRISK_HOME"]) / "run" / "worker.ready").exists, 120, "the worker to be ready", worker)

        rng = random.Random()
        vins = [random_vin(rng) for _ in range(3)]
        tag = f"sec{run}"
        msgs = dynamics_messages(vins, per_vehicle=20, start_ts_ms=int(time.time() * 1000) - 60_000, tag=tag)
        asyncio.run(_produce(secure_broker.client("simulator"), msgs))

        ch = http_client(url)
        count = lambda: ch.query(  # noqa: E731
            "SELECT count() FROM telemetry_dynamics FINAL WHERE event_id LIKE {p:String}", parameters={"p": f"{tag}-%"}
        ).result_rows[0][0]
        wait_for(lambda: count() == 60, 90, "60 rows in telemetry_dynamics over SASL_SSL", worker)

        # the dashboard, logged in as its principal, reads the warehouse and the consumer lag
        dash = subprocess.run([sys.executable, "-c", DASHBOARD_PAGE, str(REPO / "dashboard" / "app.py")],
                              env={**base, **secure_broker.env("dashboard")}, cwd=REPO, capture_output=True, text=True,
                              timeout=180)
        (tmp_path / "dashboard.log").write_text(dash.stdout + dash.stderr)
        page = json.loads(dash.stdout.strip().splitlines()[-1])
        assert page["title"] == ["Pipeline health"] and not page["exception"] and not page["error"], page
        assert not [w for w in page["warning"] if "lag is unknown" in w], page["warning"]

        # Faust's web server was asked for: it listens on 127.0.0.1 only; the warehouse likewise
        assert listening(worker.proc.pid) == {("127.0.0.1", web_port)}
        assert {ip for ip, _ in listening(warehouse.proc.pid)} == {"127.0.0.1"}
    finally:
        worker.stop()
        warehouse.stop()

    # no raw VIN on any topic the platform writes (every topic but the raw ones)
    written = [t.name for t in T.ALL if t not in T.RAW]
    records = asyncio.run(_read_all(secure_broker.client("admin"), written))
    assert sum(1 for topic, blob in records if topic == "clean.ev.dynamics.v1" and tag.encode() in blob) >= 3
    leaks = sorted({(topic, vin) for topic, blob in records for vin in vins if vin.encode() in blob.upper()})
    assert leaks == []

    # no configured secret in anything the processes wrote: service logs, dashboard output, broker log
    logs = [tmp_path / "warehouse.log", tmp_path / "worker.log", tmp_path / "dashboard.log",
            *(Path(base["VOLTRISK_HOME"]) / "logs").glob("*"), *(secure_broker.home / "logs").glob("*")]
    assert (tmp_path / "worker.log").stat().st_size > 0 and (tmp_path / "dashboard.log").stat().st_size > 0
    found = sorted({(p.name, name) for p in logs if p.is_file() for name, value in secret.items()
                    if value in p.read_text(errors="replace")})
    assert found == []
