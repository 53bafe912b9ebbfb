"""The real Kafka broker: round trip, explicit topics, clear start-up errors."""

from __future__ import annotations

import asyncio
import socket
import uuid

import pytest

from stream import topics as T
from voltrisk import broker
from voltrisk.errors import UserError
from voltrisk.settings import BrokerSettings

pytestmark = pytest.mark.integration


async def _roundtrip(bootstrap: str, topic: str, n: int) -> list[tuple[bytes, bytes]]:
    from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

    p = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", enable_idempotence=True)
    await p.start()
    for i in range(n):
        await p.send_and_wait(topic, value=f"v{i}".encode(), key=b"k", headers=[("h", b"1")])
    await p.stop()
    c = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, group_id=f"t-{uuid.uuid4().hex}", auto_offset_reset="earliest")
    await c.start()
    got = []
    try:
        async with asyncio.timeout(30):
            while len(got) < n:
                for msgs in (await c.getmany(timeout_ms=1000)).values():
                    got += [(m.key, m.value) for m in msgs if m.headers == (("h", b"1"),)]
    finally:
        await c.stop()
    return got


def test_produce_consume_round_trip(kafka_bootstrap, make_topics):
    topic = make_topics([f"test.roundtrip.{uuid.uuid4().hex[:8]}"], partitions=1)[0]
    got = asyncio.run(_roundtrip(kafka_bootstrap, topic, 50))
    assert got == [(b"k", f"v{i}".encode()) for i in range(50)]


def test_platform_topics_exist_with_configured_partitions(kafka_bootstrap):
    from aiokafka.admin import AIOKafkaAdminClient

    async def describe():
        admin = AIOKafkaAdminClient(bootstrap_servers=kafka_bootstrap)
        await admin.start()
        try:
            return {d["topic"]: len(d["partitions"]) for d in await admin.describe_topics([t.name for t in T.ALL])}
        finally:
            await admin.close()

    parts = asyncio.run(describe())
    assert parts[T.DYNAMICS.name] == 12 and parts["clean.ev.dynamics.v1"] == 12
    assert parts[T.FNOL.name] == 3 and parts[T.DLQ.name] == 3
    assert set(parts) == {t.name for t in T.ALL}


def test_port_taken_is_one_clear_sentence(tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        s = BrokerSettings(home=tmp_path, broker_port=port, broker_controller_port=port + 1)
        with pytest.raises(UserError, match=rf"port {port} on 127.0.0.1 is taken by another process; stop it or choose free ports"):
            broker.start(s)


def test_missing_java_is_one_clear_sentence(tmp_path):
    s = BrokerSettings(home=tmp_path, java="no-such-java-binary", broker_port=1, broker_controller_port=2)
    with pytest.raises(UserError, match="Java \\(no-such-java-binary\\) was not found; install Java 17"):
        broker.start(s)
