"""A decision sent from the dashboard arrives on fraud.decisions.v1 on a real broker."""

from __future__ import annotations

import asyncio

import msgspec
import pytest

from dashboard import decisions
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
    decisions.publish(rec, KafkaClientSettings(kafka_bootstrap=kafka_bootstrap))
    key, got = asyncio.run(_find(kafka_bootstrap, rec.event_id))
    assert key == b"alert-int-1"
    assert got == rec
