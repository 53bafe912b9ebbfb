"""Load generator and Kafka delivery: the rate is held and measured; every ring claim
of the ground truth reaches claims.fnol.v1 on a real broker."""

from __future__ import annotations

import asyncio
import json
import time

import msgspec
import pytest

from simulators import drivers, fleet, runner, scenario, sink
from stream.records import DynamicsV1, FnolV1
from voltrisk.settings import KafkaClientSettings

START_MS = 1_793_462_400_000  # 2026-11-01 00:00 Shanghai


def _load(target, rate, duration, vehicles):
    stream, hz = runner.load_stream(vehicles, rate, seed=3, start_ms=int(time.time() * 1000))

    async def go():
        async with target:
            return await runner.run_load(target, stream, rate, duration, vehicles, hz, lambda n: None)

    return asyncio.run(go())


def test_load_holds_a_modest_rate_into_a_file(tmp_path):
    out = tmp_path / "load.jsonl"
    res = _load(sink.FileSink(out, "WGS84"), rate=1_000, duration=3, vehicles=100)
    lines = out.read_bytes().splitlines()
    assert len(lines) == res.events_sent
    assert res.held_within_2pct and abs(res.achieved_rate - 1_000) <= 20
    assert res.dynamics_hz == 10 and res.errors == 0
    dyn = [json.loads(x) for x in lines if b'"ev.dynamics.v1"' in x]
    ts = [d["value"]["ts_ms"] for d in dyn]
    # timestamps are real time: 100 vehicles at 10 Hz never run ahead of the wall clock
    assert max(ts) <= time.time() * 1000


def test_load_refuses_rates_beyond_10hz_per_vehicle():
    with pytest.raises(ValueError, match="at least 2000 vehicles"):
        runner.load_stream(vehicles=100, rate=20_000, seed=1, start_ms=START_MS)


async def _end_offsets(bootstrap, topic):
    from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

    p = AIOKafkaProducer(bootstrap_servers=bootstrap)
    await p.start()
    try:
        parts = sorted(await p.partitions_for(topic))
    finally:
        await p.stop()
    c = AIOKafkaConsumer(bootstrap_servers=bootstrap)
    await c.start()
    try:
        return await c.end_offsets([TopicPartition(topic, n) for n in parts])
    finally:
        await c.stop()


async def _read_from(bootstrap, offsets, limit_s=20.0):
    from aiokafka import AIOKafkaConsumer

    c = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await c.start()
    out = []
    try:
        c.assign(list(offsets))
        for tp, off in offsets.items():
            c.seek(tp, off)
        end = await c.end_offsets(list(offsets))
        deadline = time.time() + limit_s
        while time.time() < deadline:
            behind = [tp for tp in offsets if await c.position(tp) < end[tp]]
            if not behind:
                break
            batch = await c.getmany(timeout_ms=500)
            for msgs in batch.values():
                out.extend(msgs)
    finally:
        await c.stop()
    return out


@pytest.mark.integration
def test_short_load_run_into_kafka_is_held_and_stamped(kafka_bootstrap):
    settings = KafkaClientSettings(kafka_bootstrap=kafka_bootstrap)
    before = asyncio.run(_end_offsets(kafka_bootstrap, "ev.dynamics.v1"))
    res = _load(sink.KafkaSink("WGS84", stamp=True, settings=settings), rate=2_000, duration=4, vehicles=200)
    assert res.errors == 0 and res.held_within_2pct
    assert res.produce_ack_latency_ms["p50"] is not None
    msgs = asyncio.run(_read_from(kafka_bootstrap, before))
    ours = [m for m in msgs if m.headers and dict(m.headers).get("sent_ts_ms")]
    assert len(ours) >= 0.9 * res.events_sent * 10 / 10.07  # nearly all load events are dynamics
    h = dict(ours[0].headers)
    assert (
        h["schema_version"] == b"1" and h["source_protocol"] == b"oem-json" and h["consent_scope"] == b"pricing,fraud"
    )
    rec = msgspec.json.decode(ours[0].value, type=DynamicsV1)
    assert ours[0].key.decode() == ours[0].key.decode().upper() and len(ours[0].key) == 17 and rec.speed_kmh >= 0


@pytest.mark.integration
def test_every_ring_claim_in_the_truth_reaches_the_fnol_topic(kafka_bootstrap, tmp_path):
    settings = KafkaClientSettings(kafka_bootstrap=kafka_bootstrap)
    before = asyncio.run(_end_offsets(kafka_bootstrap, "claims.fnol.v1"))
    pop = drivers.build_population(8, seed=31)
    scen = scenario.Scenario(
        pop, fleet.FleetConfig(start_ms=START_MS, days=2), scenario.ClaimsConfig(rings=2, ring_size=(3, 5))
    )
    target = sink.KafkaSink("WGS84", settings=settings)

    async def go():
        async with target:
            return await runner.pump(scen.events(), target, realtime=False, on_progress=lambda n, t: None)

    counts = asyncio.run(go())
    assert target.errors == 0 and counts["claims.fnol.v1"] == len(scen.truth.claims)
    scen.truth.write(tmp_path, pop)
    truth_ids = {
        c for line in (tmp_path / "rings.jsonl").read_text().splitlines() for c in json.loads(line)["claim_ids"]
    }
    assert len(truth_ids) >= 6
    msgs = asyncio.run(_read_from(kafka_bootstrap, before))
    on_topic = {m.key.decode(): msgspec.json.decode(m.value, type=FnolV1) for m in msgs}
    if not truth_ids <= set(on_topic):  # say where the topic stood, to tell a slow read from missing records
        now = asyncio.run(_end_offsets(kafka_bootstrap, "claims.fnol.v1"))
        pytest.fail(f"{len(truth_ids - set(on_topic))} ring claims not read back: {len(msgs)} messages read from "
                    f"offsets {dict(sorted((tp.partition, o) for tp, o in before.items()))}; the topic's ends now "
                    f"{dict(sorted((tp.partition, o) for tp, o in now.items()))}")
    assert all(on_topic[c].claim_id == c for c in truth_ids)


def test_realtime_pacing_sends_the_backlog_at_once_then_waits_for_the_clock(tmp_path):
    from simulators.fleet import Event

    now = int(time.time() * 1000)
    events = [Event(now - 60_000 + k, "ev.dynamics.v1", "V", None) for k in range(3)] + [
        Event(now + 1_500, "ev.dynamics.v1", "V", None)
    ]
    sent: list[tuple[float, int]] = []

    class Recorder:
        async def send(self, batch):
            sent.append((time.time(), len(batch)))

    t0 = time.time()
    counts = asyncio.run(runner.pump(iter(events), Recorder(), realtime=True, on_progress=lambda n, t: None))
    assert counts["ev.dynamics.v1"] == 4
    assert sent[0][1] == 3 and sent[0][0] - t0 < 0.5  # the past goes out immediately
    assert sent[-1][1] == 1 and sent[-1][0] - t0 >= 1.4  # the future waits for its timestamp
