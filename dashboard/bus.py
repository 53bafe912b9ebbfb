"""The dashboard's Kafka I/O (no Streamlit import): decisions out, consumer lag in.

The dashboard never writes to the warehouse: an investigator's decision is produced
to ``fraud.decisions.v1`` (acks=all, idempotent producer, keyed by alert id so one
alert's decisions stay in order) and the sink stores it. Consumer lag per partition
is the partition's end offset minus the group's committed offset: how many records
the sink or the worker still has to process.
"""

from __future__ import annotations

import asyncio
import threading

import msgspec
import pandas as pd

from stream import topics
from stream.records import DecisionV1
from voltrisk.settings import KafkaClientSettings

LAG_COLUMNS = ["group", "topic", "partition", "committed", "end_offset", "lag"]


def _is_kafka_failure(exc: BaseException) -> bool:
    # aiokafka's errors share no base class with OSError or the timeouts
    return isinstance(exc, (asyncio.TimeoutError, TimeoutError, OSError)) or exc.__class__.__module__.startswith("aiokafka")


def _unavailable(kafka: KafkaClientSettings, exc: BaseException, what: str) -> ConnectionError:
    return ConnectionError(f"Kafka at {kafka.kafka_bootstrap} did not answer ({exc.__class__.__name__}: {exc}), "
                           f"so {what}; start the broker with `make up`")


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
        if not _is_kafka_failure(exc):
            raise
        from voltrisk.security import refusal

        why = asyncio.run(refusal(exc, kafka, timeout_s))
        if why:
            raise ConnectionError(f"the decision on alert {rec.alert_id} was not sent: {why}") from None
        raise _unavailable(kafka, exc, f"the decision on alert {rec.alert_id} was not sent") from None


class LagReader:
    """Consumer lag from Kafka clients kept open on their own event-loop thread: a
    lookup costs two round trips instead of a connection setup (~1 s)."""

    def __init__(self, kafka: KafkaClientSettings, timeout_s: float = 2.0):
        self.kafka, self.timeout_s = kafka, timeout_s
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="voltrisk-kafka-lag", daemon=True)
        self._thread.start()
        self._clients: tuple | None = None

    async def _connect(self) -> tuple:
        from aiokafka import AIOKafkaConsumer
        from aiokafka.admin import AIOKafkaAdminClient

        timeout_ms = int(self.timeout_s * 1000)
        admin = AIOKafkaAdminClient(request_timeout_ms=timeout_ms, **self.kafka.aiokafka_kwargs())
        consumer = AIOKafkaConsumer(enable_auto_commit=False, request_timeout_ms=timeout_ms, **self.kafka.aiokafka_kwargs())
        try:
            await asyncio.wait_for(admin.start(), self.timeout_s)
            await asyncio.wait_for(consumer.start(), self.timeout_s)
        except BaseException:
            await self._close(admin, consumer)
            raise
        return admin, consumer

    @staticmethod
    async def _close(admin, consumer) -> None:
        await consumer.stop()
        await admin.close()

    async def _lag(self, groups: list[str]) -> pd.DataFrame:
        if self._clients is None:
            self._clients = await self._connect()
        admin, consumer = self._clients
        committed = {g: await asyncio.wait_for(admin.list_consumer_group_offsets(g), self.timeout_s) for g in groups}
        partitions = sorted({tp for offsets in committed.values() for tp in offsets})
        ends = await asyncio.wait_for(consumer.end_offsets(partitions), self.timeout_s) if partitions else {}
        rows = [(g, tp.topic, tp.partition, meta.offset, ends[tp], max(0, ends[tp] - meta.offset))
                for g, offsets in committed.items() for tp, meta in offsets.items() if meta.offset >= 0]
        return pd.DataFrame(rows, columns=LAG_COLUMNS).sort_values(["group", "topic", "partition"], ignore_index=True)

    async def _reset(self) -> None:
        if self._clients is not None:
            clients, self._clients = self._clients, None
            await self._close(*clients)

    def lag(self, groups: list[str]) -> pd.DataFrame:
        """Committed offset, end offset and lag per (group, topic, partition)."""
        try:
            return asyncio.run_coroutine_threadsafe(self._lag(groups), self._loop).result(4 * self.timeout_s)
        except Exception as exc:
            if not _is_kafka_failure(exc):
                raise
            asyncio.run_coroutine_threadsafe(self._reset(), self._loop).result(4 * self.timeout_s)
            raise _unavailable(self.kafka, exc, "consumer lag is unknown") from None

    def close(self) -> None:
        asyncio.run_coroutine_threadsafe(self._reset(), self._loop).result(4 * self.timeout_s)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)


def lag_by_group(lag: pd.DataFrame) -> pd.DataFrame:
    """Total and worst-partition lag per group and topic."""
    if lag.empty:
        return pd.DataFrame(columns=["group", "topic", "partitions", "lag", "max_partition_lag"])
    g = lag.groupby(["group", "topic"])["lag"]
    return pd.DataFrame({"partitions": g.size(), "lag": g.sum(), "max_partition_lag": g.max()}).reset_index()
