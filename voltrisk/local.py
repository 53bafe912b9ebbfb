"""The local platform behind `make up` / `make down`.

Starts, in order and each only once: the Kafka broker, the topics, the
warehouse process (migrations, sink, read-only endpoint), the Faust worker, the
fleet simulator in real time and the dashboard. Each waits for the previous one
to be healthy. `down` stops them in reverse order, by their PID files.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Callable
from pathlib import Path

from voltrisk import broker, procs
from voltrisk.errors import UserError
from voltrisk.harness import http_ok
from voltrisk.settings import BrokerSettings, DashboardSettings, WarehouseSettings, WorkerSettings

PY = sys.executable


def _days_ago_shanghai(days: int, now_ms: int | None = None) -> str:
    import datetime as dt

    shanghai = dt.timezone(dt.timedelta(hours=8))
    now = dt.datetime.now(shanghai) if now_ms is None else dt.datetime.fromtimestamp(now_ms / 1000, shanghai)
    return (now - dt.timedelta(days=days)).date().isoformat()


SIM_DAYS = 30
# the fraud rings' claims fall in the fleet run's first two days, the history the first
# `make up` sends at once: the triage page has rings of several claims to investigate
# from the start, not one claim a ring as they trickle in over a month of wall-clock time
RING_DAYS = 2


def simulator_window(home: Path, now_ms: int | None = None) -> list[str]:
    """The local simulator's --start (and --send-from-ms): the first `make up` sends two
    days of history at once, then runs live. A later `make up` continues the same fleet
    (same seed and start) from now on instead of sending that history again, which the
    gate would dead-letter as duplicates and late events; once the first run's days are
    used up, a new fleet run starts today (its vehicles' history is already stored).
    ``up`` records the first start (``remember_simulator_start``)."""
    import datetime as dt
    import json
    import time

    now_ms = int(time.time() * 1000) if now_ms is None else now_ms
    marker = home / "run" / "simulator.json"
    if not marker.exists():
        return ["--start", _days_ago_shanghai(2, now_ms)]
    start = json.loads(marker.read_text())["start"]
    end = dt.date.fromisoformat(start) + dt.timedelta(days=SIM_DAYS - 1)
    if dt.date.fromisoformat(_days_ago_shanghai(0, now_ms)) >= end:
        start = _days_ago_shanghai(0, now_ms)
    return ["--start", start, "--send-from-ms", str(now_ms)]


def remember_simulator_start(home: Path, argv: list[str]) -> None:
    import json

    marker = home / "run" / "simulator.json"
    if not marker.exists():
        marker.parent.mkdir(parents=True, exist_ok=True)
        marker.write_text(json.dumps({"start": argv[argv.index("--start") + 1]}))


def services(simulate: bool = True) -> list[procs.Service]:
    """The Python services, in start order (the broker is handled by voltrisk.broker)."""
    w, wk, d = WarehouseSettings(), WorkerSettings(), DashboardSettings()
    from dashboard.cli import streamlit_argv
    from stream.worker import ready_file

    b = BrokerSettings()

    def login(principal: str) -> dict[str, str] | None:
        # with the broker in sasl_ssl mode each service logs in as its own principal (docs/security.md)
        if b.broker_security != "sasl_ssl":
            return None
        from voltrisk import security

        return security.client_env(b.home, principal)

    out = [
        procs.Service(
            "warehouse", [PY, "-m", "voltrisk", "warehouse", "serve"],
            lambda: http_ok(f"http://{w.warehouse_http_host}:{w.warehouse_http_port}/ping"),
            marker="voltrisk warehouse serve", start_timeout_s=90, env=login("sink"),
        ),
        procs.Service(
            "worker", [PY, "-m", "voltrisk", "worker", "run"], lambda: ready_file(wk).exists(),
            marker="voltrisk worker run", start_timeout_s=120, env=login("worker"),
        ),
    ]
    if simulate:
        out.append(procs.Service(
            # two days of history at once (so every page has data), then live at wall-clock pace
            "simulator", [PY, "-m", "voltrisk", "simulate", "--vehicles", "20", "--days", str(SIM_DAYS), "--realtime",
                          "--seed", "7", "--ring-days", str(RING_DAYS), *simulator_window(b.home)],
            lambda: True, marker="voltrisk simulate", start_timeout_s=5, env=login("simulator"),
        ))
    out.append(procs.Service(
        "dashboard", streamlit_argv(d.dashboard_host, d.dashboard_port),
        lambda: http_ok(f"http://{d.dashboard_host}:{d.dashboard_port}/_stcore/health"),
        marker="streamlit run", start_timeout_s=90, env=login("dashboard"),
    ))
    return out


def ensure_fraud_model(home) -> str:
    """The worker's fraud agent needs a trained model: on first start, train one on
    a simulated book (seconds), so the local platform scores claims out of the box."""
    import subprocess

    from fraudring.cli import BOOK_ENTITY_COLS

    model = home.resolve() / "fraud" / "fraud_model.json"
    if model.exists():
        return f"fraud model {model}"
    book = home.resolve() / "book"
    for argv in (
        ["simulate", "book", "--vehicle-years", "5000", "--seed", "7", "--out", str(book)],
        ["fraud", "train", "--claims", str(book / "claims.parquet"), "--label", "is_fraud",
         "--entity-cols", BOOK_ENTITY_COLS, "--model-out", str(model)],
    ):
        res = subprocess.run([PY, "-m", "voltrisk", *argv], capture_output=True, text=True)
        if res.returncode != 0:
            raise UserError(f"`voltrisk {' '.join(argv[:2])}` failed while preparing the fraud model: "
                            + " | ".join(res.stderr.strip().splitlines()[-3:]))
    return f"fraud model trained on a simulated book: {model}"


def up(simulate: bool = True, say: Callable[[str], None] = print) -> str:
    from voltrisk import security

    b = BrokerSettings()
    if b.broker_security == "sasl_ssl":
        say(f"security   certificates and SCRAM users in {security.init(b.home).dir}")
    pid, started = broker.start(b)
    say(f"kafka      pid {pid} {'started' if started else 'already running'} on 127.0.0.1:{b.broker_port} ({b.broker_security})")
    admin = security.admin_settings()
    created = asyncio.run(broker.create_topics(admin))
    say(f"topics     {len(created)} created")
    if b.broker_security == "sasl_ssl":
        say(f"acls       {asyncio.run(security.apply_acls(admin, security.grants()))} bindings for {', '.join(security.PRINCIPALS[1:])}")
    say(f"models     {ensure_fraud_model(b.home)}")
    for svc in services(simulate):
        pid, started = procs.start(b.home, svc)
        if svc.name == "simulator" and started:
            remember_simulator_start(b.home, svc.argv)
        say(f"{svc.name:10} pid {pid} {'started' if started else 'already running'}; log {procs.log_path(b.home, svc.name)}")
    d = DashboardSettings()
    return f"http://{d.dashboard_host}:{d.dashboard_port}"


def down(say: Callable[[str], None] = print) -> None:
    b = BrokerSettings()
    for svc in reversed(services(simulate=True)):
        if procs.stop(b.home, svc.name, svc.marker):
            say(f"{svc.name:10} stopped")
    if broker.stop(b):
        say("kafka      stopped")


def restarts() -> dict[str, dict]:
    """Per supervised service that was restarted: its supervisor's record."""
    b = BrokerSettings()
    out = {}
    for svc in services(simulate=True):
        st = procs.supervisor_state(b.home, svc.name)
        if st and st.get("restarts"):
            out[svc.name] = st
    return out


def status() -> dict[str, int | None]:
    b = BrokerSettings()
    st = {"kafka": broker.status(b)["pid"]}
    for svc in services(simulate=True):
        st[svc.name] = procs.running_pid(b.home, svc.name, svc.marker)
    return st
