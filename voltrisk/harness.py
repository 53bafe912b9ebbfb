"""Run platform processes from Python: tests, benchmarks and the chaos runner
start the warehouse and the worker as real processes through these helpers."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ServiceProcess:
    """A voltrisk process (warehouse or worker) started as `python -m voltrisk ...`."""

    def __init__(self, name: str, argv: list[str], env: dict[str, str], log: Path):
        self.name, self.argv, self.env, self.log = name, argv, env, log
        self.proc: subprocess.Popen | None = None

    def start(self) -> ServiceProcess:
        self._out = open(self.log, "ab")
        self.proc = subprocess.Popen([sys.executable, "-m", "voltrisk", *self.argv], env=self.env,
                                     stdout=self._out, stderr=subprocess.STDOUT, cwd=REPO)
        return self

    def kill(self) -> None:
        """SIGKILL: what a crash looks like."""
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.kill()
        if self.proc:
            self._out.close()

    def tail(self, n: int = 30) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-n:])


def wait_for(predicate, timeout_s: float, what: str, service: ServiceProcess | None = None, interval: float = 0.3):
    deadline = time.monotonic() + timeout_s
    last = None
    while time.monotonic() < deadline:
        last = predicate()
        if last:
            return last
        if service is not None and service.proc is not None and service.proc.poll() is not None:
            raise AssertionError(f"{service.name} exited ({service.proc.returncode}) while waiting for {what}:\n{service.tail()}")
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout_s}s waiting for {what} (last: {last!r})" + (f"\n{service.tail()}" if service else ""))




def worker_stats(env: dict[str, str]) -> dict:
    """What the worker process of this environment last wrote to its ``worker.stats.json``
    (``stream.worker``, every second); {} before its first write."""
    import json

    try:
        return json.loads((Path(env["VOLTRISK_HOME"]) / "run" / "worker.stats.json").read_text())
    except (OSError, ValueError):
        return {}


def http_ok(url: str) -> bool:
    """True when URL answers 200 (a warehouse's /ping, a dashboard's health)."""
    import urllib.request

    try:
        with urllib.request.urlopen(url, timeout=1) as r:
            return r.status == 200
    except OSError:
        return False


class TempBroker:
    """A Kafka broker on free ports in a temp directory, with the platform's
    topics, sharing the jars fetched into the checkout's .voltrisk.

    ``secure=True``: SASL/SCRAM over TLS with ACLs (voltrisk.security): fresh
    certificates and passwords in the temp directory, the topics created and the
    ACLs applied as the admin principal; ``client(principal)`` and
    ``env(principal)`` say how a voltrisk client connects as a principal."""

    def __init__(self, home: Path, heap: str = "512m", secure: bool = False):
        from voltrisk.settings import BrokerSettings

        self.home, self.secure = home, secure
        self.settings = BrokerSettings(home=home, broker_port=free_port(), broker_controller_port=free_port(), broker_heap=heap,
                                       broker_security="sasl_ssl" if secure else "plaintext")
        self.bootstrap = f"127.0.0.1:{self.settings.broker_port}"

    def client(self, principal: str = "admin", **overrides):
        """KafkaClientSettings of ``principal`` (plain settings when not secure)."""
        from voltrisk import security
        from voltrisk.settings import KafkaClientSettings

        if not self.secure:
            return KafkaClientSettings(kafka_bootstrap=self.bootstrap, **overrides)
        return security.client_settings(self.home, principal, self.bootstrap, **overrides)

    def env(self, principal: str) -> dict[str, str]:
        """VOLTRISK_KAFKA_* variables of a child process connecting as ``principal``."""
        from voltrisk import security

        return security.client_env(self.home, principal) if self.secure else {}

    def start(self) -> TempBroker:
        import asyncio

        from voltrisk import broker, security
        from voltrisk.settings import BrokerSettings

        lib = broker.fetch(BrokerSettings(home=REPO / ".voltrisk"))
        (self.home / "kafka").mkdir(parents=True, exist_ok=True)
        link = self.home / "kafka" / "lib"
        if not link.exists():
            link.symlink_to(lib)
        if self.secure:
            security.init(self.home)
        broker.start(self.settings)
        asyncio.run(broker.create_topics(self.client()))
        if self.secure:
            asyncio.run(security.apply_acls(self.client(), security.grants()))
        return self

    def stop(self) -> None:
        from voltrisk import broker

        broker.stop(self.settings)


def platform_env(base: Path, bootstrap: str, run: str, **extra: str) -> dict[str, str]:
    """Environment for the processes of one isolated platform instance."""
    import os

    port = str(free_port())
    return {
        **os.environ,
        "VOLTRISK_HOME": str(base / "home"),
        "VOLTRISK_KAFKA_BOOTSTRAP": bootstrap,
        "VOLTRISK_CLICKHOUSE_DSN": f"chdb://{base / 'warehouse'}",
        "VOLTRISK_WAREHOUSE_HTTP_PORT": port,
        "VOLTRISK_WORKER_CLICKHOUSE_URL": f"http://127.0.0.1:{port}",
        "VOLTRISK_DASHBOARD_CLICKHOUSE_URL": f"http://127.0.0.1:{port}",
        "VOLTRISK_SINK_GROUP": f"sink-{run}",
        "VOLTRISK_WORKER_APP_ID": f"worker-{run}",
        "VOLTRISK_SINK_BATCH_MS": "200",
        **extra,
    }


async def groups_at_head(settings, groups: list[str]) -> int:
    """Commit each consumer group at the current end of every topic on the broker,
    so a fresh platform instance on a shared broker starts where the broker is now
    instead of re-reading what earlier instances produced (its own records come
    after). Returns the number of partitions committed per group."""
    from aiokafka import AIOKafkaConsumer, TopicPartition
    from aiokafka.admin import AIOKafkaAdminClient

    from voltrisk.broker import commit_offsets

    admin = AIOKafkaAdminClient(**settings.aiokafka_kwargs())
    await admin.start()
    try:
        topics = [t for t in await admin.list_topics() if not t.startswith("__")]
        described = await admin.describe_topics(topics) if topics else []
    finally:
        await admin.close()
    parts = [TopicPartition(d["topic"], p["partition"]) for d in described for p in d["partitions"]]
    probe = AIOKafkaConsumer(**settings.aiokafka_kwargs(), enable_auto_commit=False)
    await probe.start()
    try:
        ends = await probe.end_offsets(parts) if parts else {}
    finally:
        await probe.stop()
    if ends:
        for group in groups:
            await commit_offsets(settings, group, ends)
    return len(ends)
