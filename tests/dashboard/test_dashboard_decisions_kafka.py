"""A decision sent from the dashboard arrives on fraud.decisions.v1 on a real broker."""

from __future__ import annotations

import asyncio

import msgspec
import pytest

from dashboard import bus, decisions
from stream.records import DecisionV1
from voltrisk.settings import KafkaClientSettings

pytestmark = pytest.mark.integration


async def _find(bootstrap: str, event_id: str, timeout_s: float = 30) -> tuple[bytes, DecisionV1]:
    from aiokafka import AIOKafkaConsumer

    consumer = AIOKafkaConsumer("fraud.decisions.v1", bootstrap_servers=bootstrap, auto_offset_reset="earliest",
                                enable_auto_commit=False, group_id=None)
    await consumer.start()
    try:
        async with asyncio.timeout(timeout_s):
            async for msg in consumer:
                rec = msgspec.json.decode(msg.value, type=DecisionV1)
                if rec.event_id == event_id:
                    return msg.key, rec
    finally:
        await consumer.stop()


def test_decision_is_produced_to_kafka(kafka_bootstrap):
    rec = decisions.decision("alert-int-1", "new", "investigating", "li.na", "shared phone with two other claims")
    bus.publish(rec, KafkaClientSettings(kafka_bootstrap=kafka_bootstrap))
    key, got = asyncio.run(_find(kafka_bootstrap, rec.event_id))
    assert key == b"alert-int-1"
    assert got == rec


def test_consumer_lag_of_a_group(kafka_bootstrap, make_topics):
    import uuid

    from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
    from aiokafka.structs import OffsetAndMetadata

    topic, group = make_topics([f"dash-lag-{uuid.uuid4().hex[:8]}"], partitions=1)[0], f"dash-lag-{uuid.uuid4().hex[:8]}"

    async def produce_and_commit():
        producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap, acks="all")
        await producer.start()
        try:
            for i in range(10):
                await producer.send_and_wait(topic, b"x%d" % i)
        finally:
            await producer.stop()
        consumer = AIOKafkaConsumer(bootstrap_servers=kafka_bootstrap, group_id=group, enable_auto_commit=False)
        await consumer.start()
        try:
            consumer.assign([TopicPartition(topic, 0)])
            await consumer.commit({TopicPartition(topic, 0): OffsetAndMetadata(4, "")})
        finally:
            await consumer.stop()

    asyncio.run(produce_and_commit())
    reader = bus.LagReader(KafkaClientSettings(kafka_bootstrap=kafka_bootstrap))
    try:
        lag = reader.lag([group])
        assert lag[["topic", "committed", "end_offset", "lag"]].values.tolist() == [[topic, 4, 10, 6]]
        assert bus.lag_by_group(lag)["lag"].tolist() == [6]
        assert reader.lag([group])["lag"].tolist() == [6]  # the open clients answer again
    finally:
        reader.close()


def test_lag_reader_names_a_dead_broker(dead_url):
    reader = bus.LagReader(KafkaClientSettings(kafka_bootstrap=dead_url.removeprefix("http://")), timeout_s=1.0)
    try:
        with pytest.raises(ConnectionError, match="so consumer lag is unknown; start the broker with `make up`"):
            reader.lag(["voltrisk-sink"])
    finally:
        reader.close()
