"""Shared fixtures: a real Kafka broker and real warehouse processes.

`kafka_bootstrap` starts a broker on free ports in a temp directory and stops
it after the session. With VOLTRISK_TEST_REUSE_BROKER=1 it re-uses the broker
answering on the configured bootstrap instead (faster locally; but every new
test worker then re-reads the topics' whole history, e.g. a running simulator's,
so it is opt-in). Tests scope what they assert to their own vehicles, topics
and consumer groups either way.
"""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from voltrisk import broker
from voltrisk.settings import BrokerSettings, KafkaClientSettings

REPO = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def kafka_bootstrap(tmp_path_factory) -> str:
    configured = KafkaClientSettings().kafka_bootstrap
    if os.environ.get("VOLTRISK_TEST_REUSE_BROKER") == "1" and broker.answers(configured, timeout_s=2):
        asyncio.run(broker.create_topics(KafkaClientSettings()))
        yield configured
        return
    home = tmp_path_factory.mktemp("kafka-home")
    lib = broker.fetch(BrokerSettings(home=REPO / ".voltrisk"))
    (home / "kafka").mkdir()
    (home / "kafka" / "lib").symlink_to(lib)
    s = BrokerSettings(home=home, broker_port=free_port(), broker_controller_port=free_port(), broker_heap="512m")
    broker.start(s)
    bootstrap = f"127.0.0.1:{s.broker_port}"
    asyncio.run(broker.create_topics(KafkaClientSettings(kafka_bootstrap=bootstrap)))
    yield bootstrap
    broker.stop(s)


@pytest.fixture
def make_topics(kafka_bootstrap):
    """Create extra topics on the test broker: make_topics(["a", "b"], partitions=3)."""
    from aiokafka.admin import AIOKafkaAdminClient, NewTopic

    def create(names, partitions: int = 3):
        async def go():
            admin = AIOKafkaAdminClient(bootstrap_servers=kafka_bootstrap)
            await admin.start()
            try:
                existing = set(await admin.list_topics())
                new = [NewTopic(n, partitions, 1) for n in names if n not in existing]
                if new:
                    await admin.create_topics(new)
            finally:
                await admin.close()

        asyncio.run(go())
        return list(names)

    return create


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


@pytest.fixture
def platform_env(kafka_bootstrap, tmp_path):
    """Environment for processes of one isolated platform instance on the shared broker."""
    run = uuid.uuid4().hex[:8]
    env = {
        **os.environ,
        "VOLTRISK_HOME": str(tmp_path / "home"),
        "VOLTRISK_KAFKA_BOOTSTRAP": kafka_bootstrap,
        "VOLTRISK_CLICKHOUSE_DSN": f"chdb://{tmp_path / 'warehouse'}",
        "VOLTRISK_WAREHOUSE_HTTP_PORT": str(free_port()),
        "VOLTRISK_SINK_GROUP": f"test-sink-{run}",
        "VOLTRISK_WORKER_APP_ID": f"test-worker-{run}",
        "VOLTRISK_SINK_BATCH_MS": "200",
    }
    return env


@pytest.fixture
def warehouse_proc(platform_env, tmp_path):
    """The warehouse process (migrations, sink, read-only endpoint); yields it once /ping answers."""
    import urllib.request

    svc = ServiceProcess("warehouse", ["warehouse", "serve"], platform_env, tmp_path / "warehouse.log").start()
    url = f"http://127.0.0.1:{platform_env['VOLTRISK_WAREHOUSE_HTTP_PORT']}"

    def ping():
        try:
            with urllib.request.urlopen(url + "/ping", timeout=1) as r:
                return r.status == 200
        except OSError:
            return False

    svc.url = url
    svc.ping = ping
    wait_for(ping, 60, "the warehouse endpoint", svc)
    yield svc
    svc.stop()


@pytest.fixture
def worker_proc(platform_env, tmp_path):
    """The Faust worker; yields it once its agents run."""
    svc = ServiceProcess("worker", ["worker", "run", "--loglevel", "warn"], platform_env, tmp_path / "worker.log")
    ready = Path(platform_env["VOLTRISK_HOME"]) / "run" / "worker.ready"
    svc.ready = ready

    def start():
        ready.unlink(missing_ok=True)
        svc.start()
        wait_for(ready.exists, 90, "the worker to be ready", svc)

    svc.start_and_wait = start
    start()
    yield svc
    svc.stop()


# test modules import their helpers by plain name (no packages under tests/)
sys.path.insert(0, str(Path(__file__).parent / "platform"))
