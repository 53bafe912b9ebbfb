"""The dead-letter topic, for operators: what is in it, and sending the records the
features failed on back to them once the defect is fixed (``voltrisk dlq``).

Only ``features_error`` dead letters can be sent back: they hold clean, pseudonymised
records exactly as the features read them. The gate's refusals hold the carmaker's bytes
with VINs masked and a pseudonymous key, which the gate could not take again; the
carmaker sends those records anew once they are fixed (docs/integration.md).

A redriven record goes to ``features.redrive.v1``, which only the features read, with
its clean topic in the ``source_topic`` header: it is not stored a second time in the
telemetry tables (its first copy was, when the gate passed it). Sending the same dead
letters twice is harmless: the features skip records their vehicle's state already took.
They also skip what is older than the vehicle's state by then: a vehicle whose later
records passed after the fix (its state moved on) gets only the redriven records newer
than those; the worker's stats count the rest as redelivered. Redrive soon after the fix.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

from stream import topics as T
from stream.featuring import CLEAN_INPUTS, QUARANTINED
from voltrisk.settings import KafkaClientSettings


@dataclass
class Redrive:
    """What a redrive read and sent."""

    read: int = 0  # dead letters read
    matched: int = 0  # of the reason (and vehicle) asked for
    sent: int = 0  # messages sent to features.redrive.v1
    records: int = 0  # records in them, as their ``records`` header says
    vehicles: int = 0
    not_redrivable: Counter = field(default_factory=Counter)  # matched, but not clean records: by source topic
    dry_run: bool = False

    def as_dict(self) -> dict:
        d = asdict(self)
        d["not_redrivable"] = dict(self.not_redrivable)
        return d


def _headers(msg) -> dict[str, bytes]:
    return {k: bytes(v or b"") for k, v in (msg.headers or ())}


async def redrive(k: KafkaClientSettings, *, reason: str = QUARANTINED, vehicle: str | None = None,
                  dry_run: bool = False, timeout_s: float = 60.0,
                  progress: Callable[[Redrive], None] | None = None) -> Redrive:
    """Read ``voltrisk.dlq.v1`` from its start to its end as of now; send every dead letter
    of ``reason`` (and ``vehicle``: its pseudonymous id) that holds clean records to
    ``features.redrive.v1``, keyed as it was, and wait for Kafka's acknowledgements."""
    from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

    out = Redrive(dry_run=dry_run)
    consumer = AIOKafkaConsumer(**k.aiokafka_kwargs(), enable_auto_commit=False, auto_offset_reset="earliest")
    producer = None if dry_run else AIOKafkaProducer(acks="all", enable_idempotence=True, linger_ms=10,
                                                      **k.aiokafka_kwargs())
    try:
        await asyncio.wait_for(consumer.start(), timeout_s)
        if producer is not None:
            await asyncio.wait_for(producer.start(), timeout_s)
        tps = [TopicPartition(T.DLQ.name, p) for p in await _partitions(k)]
        consumer.assign(tps)
        ends = await consumer.end_offsets(tps)
        await consumer.seek_to_beginning(*tps)
        pending = {tp for tp in tps if ends[tp] > 0}
        vehicles: set[bytes] = set()
        acks = []
        deadline = time.monotonic() + timeout_s
        while pending:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{T.DLQ.name} was not read to its end within {timeout_s:.0f} s "
                                   f"(partitions {sorted(tp.partition for tp in pending)} left)")
            batches = await consumer.getmany(*pending, timeout_ms=500, max_records=10_000)
            for tp, msgs in batches.items():
                for m in msgs:
                    if m.offset >= ends[tp]:
                        continue  # arrived after the start: not in this run
                    out.read += 1
                    h = _headers(m)
                    if h.get("reason", b"").decode("utf-8", "replace") != reason:
                        continue
                    if vehicle is not None and (m.key or b"") != vehicle.encode():
                        continue
                    out.matched += 1
                    source = h.get("source_topic", b"").decode("utf-8", "replace")
                    if source not in CLEAN_INPUTS or not m.key:
                        out.not_redrivable[source or "(none)"] += 1
                        continue
                    out.sent += 1
                    out.records += int(h.get("records", b"1") or 1)
                    vehicles.add(m.key)
                    if producer is not None:
                        acks.append(await producer.send(T.REDRIVE.name, m.value, key=m.key, headers=[
                            ("source_topic", source.encode()), ("dlq_partition", str(m.partition).encode()),
                            ("dlq_offset", str(m.offset).encode())]))
            for tp in list(pending):
                if await consumer.position(tp) >= ends[tp]:
                    pending.discard(tp)
            out.vehicles = len(vehicles)
            if progress is not None:
                progress(out)
        if acks:
            await asyncio.wait_for(asyncio.gather(*acks), timeout_s)
    finally:
        await consumer.stop()
        if producer is not None:
            await producer.stop()
    return out


async def _partitions(k: KafkaClientSettings) -> list[int]:
    from aiokafka.admin import AIOKafkaAdminClient

    admin = AIOKafkaAdminClient(**k.aiokafka_kwargs())
    await admin.start()
    try:
        described = await admin.describe_topics([T.DLQ.name])
    finally:
        await admin.close()
    parts = [p["partition"] for d in described if d["topic"] == T.DLQ.name and not d.get("error_code")
             for p in d["partitions"]]
    if not parts:
        raise LookupError(f"the topic {T.DLQ.name} does not exist; create the topics with `voltrisk topics create`")
    return sorted(parts)


SUMMARY_SQL = """
SELECT source_topic, reason, error_class, count() AS messages, max(ts) AS latest,
       argMax(message, stored_ts_ms) AS latest_message
FROM dlq FINAL
GROUP BY source_topic, reason, error_class
ORDER BY messages DESC, source_topic, reason
"""


def summary(ch) -> list[dict]:
    """Dead letters stored in the warehouse, per source topic and reason."""
    res = ch.query(SUMMARY_SQL)
    return [dict(zip(res.column_names, row)) for row in res.result_rows]
