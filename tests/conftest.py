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
import sys
import uuid
from pathlib import Path

import pytest

from voltrisk import broker
from voltrisk.harness import ServiceProcess, TempBroker, groups_at_head, http_ok, wait_for  # noqa: F401  (re-exported to tests)
from voltrisk.harness import platform_env as make_platform_env
from voltrisk.settings import BrokerSettings, KafkaClientSettings, gate_group

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def kafka_bootstrap(tmp_path_factory) -> str:
    configured = KafkaClientSettings().kafka_bootstrap
    if os.environ.get("VOLTRISK_TEST_REUSE_BROKER") == "1" and broker.answers(configured, timeout_s=2):
        asyncio.run(broker.create_topics(KafkaClientSettings()))
        yield configured
        return
    b = TempBroker(tmp_path_factory.mktemp("kafka-home")).start()
    yield b.bootstrap
    b.stop()


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


@pytest.fixture
def platform_env(kafka_bootstrap, tmp_path):
    """Environment for processes of one isolated platform instance on the shared broker.

    Its worker and sink groups start at the broker's current head: earlier tests'
    records are not theirs to process (re-reading the whole suite's history made
    late tests wait on a growing backlog)."""
    run = uuid.uuid4().hex[:8]
    env = make_platform_env(tmp_path, kafka_bootstrap, run)
    asyncio.run(groups_at_head(KafkaClientSettings(kafka_bootstrap=kafka_bootstrap),
                               [env["VOLTRISK_SINK_GROUP"], env["VOLTRISK_WORKER_APP_ID"],
                                gate_group(env["VOLTRISK_WORKER_APP_ID"])]))
    return env


@pytest.fixture
def warehouse_proc(platform_env, tmp_path):
    """The warehouse process (migrations, sink, read-only endpoint); yields it once /ping answers."""
    svc = ServiceProcess("warehouse", ["warehouse", "serve"], platform_env, tmp_path / "warehouse.log").start()
    url = f"http://127.0.0.1:{platform_env['VOLTRISK_WAREHOUSE_HTTP_PORT']}"

    def ping():
        return http_ok(url + "/ping")

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
