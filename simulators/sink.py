"""Where simulated records go: Kafka (as a carmaker cloud would publish them) or a
JSON-lines file for offline use. Both take batches of ``fleet.Event``.

Kafka: one idempotent producer (acks=all), records appended straight into
per-partition batch builders and submitted with ``send_batch`` — the per-message
``send()`` path costs ~30 us of Python per record, too slow for 20,000 events/s
on a shared core. Partitions come from the same murmur2 partitioner as
``send()`` (cached per key), so a VIN always lands on the same partition.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import msgspec

from simulators.fleet import Event

TELEMETRY_PROTOCOL = "oem-json"
CLAIMS_PROTOCOL = "claims-json"


def headers_for(topic: str, coord_sys: str) -> list[tuple[str, bytes]]:
    """The ingest headers of a raw topic (DESIGN §4); FNOL positions are always WGS-84."""
    telemetry = topic.startswith("ev.")
    return [
        ("schema_version", b"1"),
        ("source_protocol", (TELEMETRY_PROTOCOL if telemetry else CLAIMS_PROTOCOL).encode()),
        ("coord_sys", (coord_sys if telemetry else "WGS84").encode()),
        ("consent_scope", b"pricing,fraud"),
    ]


class _Line(msgspec.Struct, array_like=False):
    topic: str
    key: str
    headers: dict[str, str]
    value: msgspec.Raw


class _Started:
    """``async with sink:`` starts it and always stops (flushes) it."""

    async def __aenter__(self):
        await self.start()
        return self

    async def __aexit__(self, *exc) -> None:
        await self.stop()


class FileSink(_Started):
    """JSON lines: one object per record with topic, key, headers and value."""

    def __init__(self, path: Path, coord_sys: str):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._fh = open(self.path, "wb")
        self._enc = msgspec.json.Encoder()
        self._headers = {
            t: {k: v.decode() for k, v in headers_for(t, coord_sys)}
            for t in ("ev.state.v1", "ev.dynamics.v1", "ev.alarm.v1", "ev.crash.v1", "claims.fnol.v1")
        }
        self.sent = 0
        self.errors = 0
        self.ack_latency_ms: list[float] = []

    async def start(self) -> None:
        return None

    async def flush(self) -> None:
        self._fh.flush()

    async def send(self, events: list[Event]) -> None:
        enc = self._enc
        lines = [
            enc.encode(_Line(e.topic, e.key, self._headers[e.topic], msgspec.Raw(enc.encode(e.record)))) for e in events
        ]
        self._fh.write(b"\n".join(lines) + b"\n")
        self.sent += len(events)

    async def stop(self) -> None:
        self._fh.close()


class KafkaSink(_Started):
    """Idempotent producer fed with hand-built batches. ``stamp`` adds a ``sent_ts_ms``
    header (wall clock at send) so downstream stages can measure latency."""

    def __init__(
        self,
        coord_sys: str,
        stamp: bool = False,
        settings=None,
        max_batch_bytes: int = 512 * 1024,
        linger_s: float = 0.02,
    ):
        from voltrisk.settings import KafkaClientSettings

        self.settings = settings or KafkaClientSettings()
        self.coord_sys, self.stamp, self.max_batch_bytes, self.linger_s = coord_sys, stamp, max_batch_bytes, linger_s
        self._partitions: dict[str, list[int]] = {}
        self._pcache: dict[tuple[str, str], int] = {}
        self._builders: dict[tuple[str, int], object] = {}
        self._born: dict[tuple[str, int], float] = {}  # when each open batch got its first record
        self._outstanding: dict[tuple[str, int], list[asyncio.Future]] = {}
        self._futures: list[tuple[asyncio.Future, int, float]] = []  # (delivery, records, submitted at)
        self.ack_latency_ms: list[float] = []
        self._enc = msgspec.json.Encoder()
        self.sent = 0
        self.errors = 0
        self.last_error: str | None = None
        self.producer = None

    async def start(self) -> None:
        from aiokafka import AIOKafkaProducer

        self.producer = AIOKafkaProducer(
            **self.settings.aiokafka_kwargs(),
            acks="all",
            enable_idempotence=True,
            linger_ms=20,
            # uncompressed: aiokafka's lz4 needs cramjam in every consumer, and on 2 shared cores
            # the CPU is scarcer than loopback bandwidth
            compression_type=None,
            max_batch_size=self.max_batch_bytes,
            request_timeout_ms=30_000,
        )
        from aiokafka.errors import KafkaConnectionError

        from voltrisk.errors import UserError

        try:
            await self.producer.start()
        except KafkaConnectionError as exc:
            await self.producer.stop()
            from voltrisk.security import refusal

            raise UserError(await refusal(exc, self.settings) or (
                f"cannot reach Kafka at {self.settings.kafka_bootstrap}: start the broker "
                "(`voltrisk broker start`) or set VOLTRISK_KAFKA_BOOTSTRAP")) from None

    async def _partition(self, topic: str, key: str) -> int:
        p = self._pcache.get((topic, key))
        if p is None:
            if topic not in self._partitions:
                from aiokafka.errors import TopicAuthorizationFailedError

                try:
                    parts = await self.producer.partitions_for(topic)
                except TopicAuthorizationFailedError as exc:
                    self._refused(exc)
                if not parts:
                    from voltrisk.errors import UserError

                    raise UserError(
                        f"topic {topic} does not exist on {self.settings.kafka_bootstrap}; "
                        "create the topics first (`voltrisk topics create`)"
                    )
                self._partitions[topic] = sorted(parts)
            from aiokafka.partitioner import DefaultPartitioner

            all_p = self._partitions[topic]
            p = DefaultPartitioner()(key.encode(), all_p, all_p)
            self._pcache[(topic, key)] = p
        return p

    async def _submit(self, tp: tuple[str, int]) -> None:
        batch = self._builders.pop(tp)
        self._born.pop(tp, None)
        n = batch.record_count()
        t0 = time.perf_counter()
        fut = await self.producer.send_batch(batch, tp[0], partition=tp[1])
        fut.add_done_callback(lambda f: self.ack_latency_ms.append((time.perf_counter() - t0) * 1000))
        self._futures.append((fut, n, t0))
        self._outstanding[tp] = [f for f in self._outstanding.get(tp, []) if not f.done()] + [fut]

    def _busy(self, tp: tuple[str, int]) -> bool:
        """A batch of this partition is still unacknowledged. aiokafka keeps one produce
        request in flight per broker, carrying at most one batch per partition, so a
        small batch queued behind it only makes the next request small: keep filling the
        open batch instead (it grows to what one round trip needs, as in Kafka's own
        producer)."""
        return any(not f.done() for f in self._outstanding.get(tp, ()))

    async def send(self, events: list[Event]) -> None:
        enc, pcache, builders = self._enc, self._pcache, self._builders
        stamp = [("sent_ts_ms", str(int(time.time() * 1000)).encode())] if self.stamp else []
        headers_by_topic = {}
        for e in events:
            p = pcache.get((e.topic, e.key))
            if p is None:
                p = await self._partition(e.topic, e.key)
            tp = (e.topic, p)
            headers = headers_by_topic.get(e.topic)
            if headers is None:
                headers = headers_by_topic[e.topic] = headers_for(e.topic, self.coord_sys) + stamp
            value = enc.encode(e.record)
            key = e.key.encode()
            b = builders.get(tp)
            if b is None:
                b = builders[tp] = self.producer.create_batch()
                self._born[tp] = time.perf_counter()
            if b.append(key=key, value=value, timestamp=e.ts_ms, headers=headers) is None:
                await self._submit(tp)
                b = builders[tp] = self.producer.create_batch()
                self._born[tp] = time.perf_counter()
                if b.append(key=key, value=value, timestamp=e.ts_ms, headers=headers) is None:
                    raise ValueError(
                        f"{e.topic} record {e.key} is larger than the batch limit {self.max_batch_bytes} B"
                    )
        self.sent += len(events)
        # linger: a batch goes out when full, or once its first record has waited linger_s
        # and the partition's previous batch is acknowledged
        due = time.perf_counter() - self.linger_s
        for tp in [tp for tp, born in self._born.items() if born <= due and not self._busy(tp)]:
            await self._submit(tp)
        await self._reap(block=False)

    async def _reap(self, block: bool) -> None:
        if block and self._futures:
            await asyncio.wait([f for f, _, _ in self._futures])
        pending = []
        for item in self._futures:
            f, n, _ = item
            if not f.done():
                pending.append(item)
            elif f.exception() is not None:
                self.errors += n
                self.last_error = repr(f.exception())
                self._refused(f.exception())
        self._futures = pending

    def _refused(self, exc: BaseException) -> None:
        """An ACL refusal repeats for every batch: stop with the reason instead of counting errors."""
        from voltrisk.security import explain

        why = explain(exc, self.settings)
        if why:
            from voltrisk.errors import UserError

            raise UserError(why)

    async def flush(self) -> None:
        for tp in list(self._builders):
            await self._submit(tp)
        await self._reap(block=True)

    async def stop(self) -> None:
        if self.producer is not None:
            try:
                await self.flush()
            finally:
                await self.producer.stop()
