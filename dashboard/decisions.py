"""Investigator decisions leave the dashboard as ``fraud.decisions.v1`` records.

The dashboard never writes to the warehouse: a status change is produced to Kafka
(acks=all, idempotent producer, keyed by alert id so one alert's decisions stay in
order) and the sink stores it. No Streamlit import: the fraud page calls
``publish`` and tests call it against a real broker.
"""

from __future__ import annotations

import asyncio
import time
import uuid

import msgspec

from stream import topics
from stream.records import DecisionV1
from voltrisk.settings import KafkaClientSettings

STATUSES = ("new", "investigating", "confirmed", "dismissed")
# the workflow: which statuses an alert may move to from its current one
NEXT_STATUSES = {
    "new": ("investigating", "dismissed"),
    "investigating": ("confirmed", "dismissed"),
    "confirmed": ("investigating",),
    "dismissed": ("investigating",),
}


class DecisionRefused(ValueError):
    """A status change the workflow does not allow, or a record the contract refuses."""


def decision(alert_id: str, current: str, status: str, investigator: str, note: str = "", now_ms: int | None = None) -> DecisionV1:
    """A validated decision record for moving ``alert_id`` from ``current`` to ``status``."""
    if status not in NEXT_STATUSES.get(current, ()):
        allowed = ", ".join(NEXT_STATUSES.get(current, ())) or "nothing"
        raise DecisionRefused(f"alert {alert_id} is {current}: it can move to {allowed}, not to {status}")
    rec = DecisionV1(event_id=uuid.uuid4().hex, ts_ms=now_ms if now_ms is not None else int(time.time() * 1000),
                     alert_id=alert_id, status=status, investigator=investigator.strip(), note=note.strip())
    try:
        # the same checks the contract's consumers apply (lengths, allowed values)
        return msgspec.json.decode(msgspec.json.encode(rec), type=DecisionV1)
    except msgspec.ValidationError as exc:
        raise DecisionRefused(f"decision on alert {alert_id} is not a valid {topics.DECISIONS.name} record: {exc}") from None


async def _produce(rec: DecisionV1, kafka: KafkaClientSettings, timeout_s: float) -> None:
    from aiokafka import AIOKafkaProducer

    producer = AIOKafkaProducer(acks="all", enable_idempotence=True, request_timeout_ms=int(timeout_s * 1000),
                                **kafka.aiokafka_kwargs())
    await asyncio.wait_for(producer.start(), timeout_s)
    try:
        await producer.send_and_wait(topics.DECISIONS.name, msgspec.json.encode(rec), key=rec.alert_id.encode(),
                                     headers=[("schema_version", b"1")])
    finally:
        await producer.stop()


def publish(rec: DecisionV1, kafka: KafkaClientSettings, timeout_s: float = 10.0) -> None:
    """Produce ``rec`` to fraud.decisions.v1 and wait for the broker's acknowledgement."""
    try:
        asyncio.run(_produce(rec, kafka, timeout_s))
    except Exception as exc:
        # aiokafka's errors share no base class with OSError or the timeout
        if not isinstance(exc, (asyncio.TimeoutError, OSError)) and not exc.__class__.__module__.startswith("aiokafka"):
            raise
        raise ConnectionError(
            f"Kafka at {kafka.kafka_bootstrap} did not accept the decision on alert {rec.alert_id} "
            f"({exc.__class__.__name__}: {exc}); start the broker with `make up` and send it again"
        ) from None
