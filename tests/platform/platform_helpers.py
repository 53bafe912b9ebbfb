"""Building blocks for platform tests: VINs, raw messages, producing."""

from __future__ import annotations

import asyncio
import random
import string
import time

import msgspec

from contracts.examples import RAW_EXAMPLES

VIN_CHARS = "".join(c for c in string.ascii_uppercase + string.digits if c not in "IOQ")


def random_vin(rng: random.Random) -> str:
    return "LTEST" + "".join(rng.choice(VIN_CHARS) for _ in range(12))


def dynamics_messages(vins: list[str], per_vehicle: int, start_ts_ms: int, tag: str) -> list[tuple[bytes, bytes, list]]:
    """Valid ev.dynamics.v1 messages (key, value, headers), 1 Hz per vehicle."""
    ex = RAW_EXAMPLES["ev.dynamics.v1"]
    headers = [(k, v.encode()) for k, v in ex.headers.items()] + [("carmaker", b"test-oem")]
    out = []
    for vi, vin in enumerate(vins):
        for i in range(per_vehicle):
            rec = msgspec.structs.replace(ex.record, event_id=f"{tag}-{vi}-{i}", ts_ms=start_ts_ms + i * 1000,
                                          speed_kmh=30.0 + i % 20)
            out.append((vin.encode(), msgspec.json.encode(rec), headers))
    return out


def with_closing_samples(records: list[tuple[bytes, bytes, list]], per_vehicle: int, start_ts_ms: int):
    """``dynamics_messages`` plus one sample per vehicle 6 min after its last: the gap
    closes each vehicle's trip, so the trip is stored with all its samples."""
    last, closing = b'"ts_ms":%d' % (start_ts_ms + (per_vehicle - 1) * 1000), b'"ts_ms":%d' % (start_ts_ms + (per_vehicle + 359) * 1000)
    return records + [(k, v.replace(last, closing).replace(b"-%d\"" % (per_vehicle - 1), b"-close\""), h)
                      for k, v, h in records[per_vehicle - 1::per_vehicle]]


def trips_per_vehicle(ch, vehicles: int) -> list[tuple[int, int]] | None:
    """(trips, samples) per vehicle in this warehouse (each test has its own), once
    all ``vehicles`` have a stored trip; None before."""
    rows = ch.query("SELECT count(), sum(samples_n) FROM trips FINAL GROUP BY vehicle_id").result_rows
    return rows if len(rows) == vehicles else None


async def produce_ordered(bootstrap: str, messages: list[tuple[str, tuple[bytes | None, bytes, list]]]) -> None:
    """Produce (topic, (key, value, headers)) in the given order, each acknowledged before the next."""
    from aiokafka import AIOKafkaProducer

    p = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", enable_idempotence=True)
    await p.start()
    try:
        for topic, (k, v, h) in messages:
            await p.send_and_wait(topic, value=v, key=k, headers=h)
    finally:
        await p.stop()


async def produce(bootstrap: str, topic: str, messages: list[tuple[bytes | None, bytes, list]]) -> None:
    from aiokafka import AIOKafkaProducer

    p = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", enable_idempotence=True, linger_ms=5)
    await p.start()
    try:
        futs = [await p.send(topic, value=v, key=k, headers=h) for k, v, h in messages]
        await asyncio.gather(*futs)
    finally:
        await p.stop()


def batched(messages: list[tuple[bytes, bytes, list]], per_message: int) -> list[tuple[bytes, bytes, list]]:
    """Pack consecutive records of the same key into JSON-array batch messages."""
    out, run = [], []
    for key, value, headers in messages:
        if run and (run[0][0] != key or len(run) == per_message):
            out.append((run[0][0], b"[" + b",".join(v for _, v, _ in run) + b"]", run[0][2]))
            run = []
        run.append((key, value, headers))
    if run:
        out.append((run[0][0], b"[" + b",".join(v for _, v, _ in run) + b"]", run[0][2]))
    return out


def paced_producer(bootstrap: str, msgs: list[tuple[bytes, bytes, list]], chunk: int, pause_s: float):
    """A started thread producing ``msgs`` to ev.dynamics.v1 in chunks with pauses,
    so faults land while data is flowing."""
    import threading
    import time

    def run():
        for i in range(0, len(msgs), chunk):
            asyncio.run(produce(bootstrap, "ev.dynamics.v1", msgs[i:i + chunk]))
            time.sleep(pause_s)

    t = threading.Thread(target=run)
    t.start()
    return t


def stored_counter(ch, tag: str):
    """count() of this run's dynamics rows, with ``final="FINAL"`` after merging duplicates."""
    def stored(final: str = "") -> int:
        return ch.query(f"SELECT count() FROM telemetry_dynamics {final} WHERE event_id LIKE {{p:String}}",
                        parameters={"p": f"{tag}-%"}).result_rows[0][0]
    return stored


def time_ordered_batches(records: list[tuple[bytes, bytes, list]], per_message: int) -> list[tuple[bytes, bytes, list]]:
    """Batch messages of ``per_message`` records, vehicles interleaved in event time."""
    msgs = batched(records, per_message)
    msgs.sort(key=lambda m: int(m[1].split(b'"ts_ms":')[1].split(b",")[0]))
    return msgs


async def topic_configs(bootstrap: str, topic: str, overrides: dict[str, str] | None = None) -> dict[str, str]:
    """A topic's own settings (those not from the broker's defaults); with ``overrides``,
    set them to exactly these first (AlterConfigs replaces the whole set)."""
    from aiokafka.admin import AIOKafkaAdminClient
    from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()

    async def own() -> dict[str, str]:
        described = await admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, topic)])
        entries = described[0].resources[0][4]
        # (name, value, read_only, config_source, ...): source 1 is the topic's own setting
        return {e[0]: e[1] for e in entries if e[3] == 1}

    try:
        if overrides is None:
            return await own()
        await admin.alter_configs([ConfigResource(ConfigResourceType.TOPIC, topic, configs=overrides)])
        # the broker applies a change through its metadata log: a describe right after may
        # still show the settings before it (seen once in CI, on a busy machine)
        deadline = time.monotonic() + 10
        while (now := await own()) != overrides and time.monotonic() < deadline:
            await asyncio.sleep(0.2)
        return now
    finally:
        await admin.close()
