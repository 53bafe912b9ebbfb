"""The bad-input corpus on the real broker through the real worker: one
dead-letter record per bad message with the right reason, every good message on
its clean topic, no raw VIN on either, and the worker still consuming after."""

from __future__ import annotations

import asyncio
import random
import re
import subprocess
import time
from pathlib import Path

import msgspec
import pytest

from contracts.examples import RAW_EXAMPLES
from gate_corpus import FNOL, build, header_list, value_dict, vin_for
from stream import topics
from stream.geo import haversine_m

# slow: a fresh worker group reads every raw topic from the start, so on a shared
# broker these take 5-60 s depending on how much other tests have produced
pytestmark = [pytest.mark.integration, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[2]
VIN_CHARS = "ABCDEFGHJKLMNPRSTUVWXYZ0123456789"
OUT_TOPICS = [topics.DLQ.name, *(t.name for t in topics.CLEAN)]


def good_messages(run: str) -> list[tuple[str, bytes, bytes, list]]:
    """(topic, key, value, headers): one valid record per raw topic."""
    out = []
    for i, topic in enumerate(RAW_EXAMPLES):
        event_id = f"{run}-good-{i}"
        key = event_id if topic == FNOL else vin_for(900 + i, run)
        out.append((topic, key.encode(), msgspec.json.encode(value_dict(topic, event_id)), header_list(topic)))
    return out


async def _outputs_from_now(bootstrap: str):
    """A consumer on the DLQ and clean topics, positioned at their current ends."""
    from aiokafka import AIOKafkaConsumer

    consumer = AIOKafkaConsumer(*OUT_TOPICS, bootstrap_servers=bootstrap, group_id=f"gate-test-{time.time_ns()}",
                                auto_offset_reset="latest", enable_auto_commit=False)
    await consumer.start()
    deadline = time.monotonic() + 30
    while not consumer.assignment() and time.monotonic() < deadline:
        await consumer.getmany(timeout_ms=500)
    for tp in consumer.assignment():
        await consumer.position(tp)
    return consumer


async def _produce(bootstrap: str, items: list[tuple[str, bytes | None, bytes | None, list]]) -> list[tuple[str, int, int]]:
    from aiokafka import AIOKafkaProducer

    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", enable_idempotence=True, linger_ms=5,
                                max_request_size=2 * 1024 * 1024)
    await producer.start()
    try:
        futures = [await producer.send(topic, value=value, key=key, headers=headers) for topic, key, value, headers in items]
        metas = await asyncio.gather(*futures)
    finally:
        await producer.stop()
    return [(m.topic, m.partition, m.offset) for m in metas]


async def _run(bootstrap: str, run: str, cases, goods, want_clean: int, timeout_s: float, app_id: str):
    """Produce the cases (in order) and the good messages; collect the DLQ records
    this test's worker (``app_id``) wrote for them and the clean records of this run.
    Other workers on a shared broker gate the same raw topics and write their own."""
    consumer = await _outputs_from_now(bootstrap)
    try:
        # one case after another, so a case's priming message is produced before its bad one
        positions = []
        for case in cases:
            positions += await _produce(bootstrap, [(case.topic, m.key, m.value, m.headers) for m in case.messages])
        positions += await _produce(bootstrap, goods)
        produced = set(positions)
        dlq: dict[tuple[str, int, int], list[str]] = {}
        clean: dict[str, str] = {}
        raw_out: list[bytes] = []
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline and (sum(map(len, dlq.values())) < len(cases) or len(clean) < want_clean):
            for tp, records in (await consumer.getmany(timeout_ms=1000, max_records=5000)).items():
                for r in records:
                    headers = dict(r.headers)
                    if tp.topic == topics.DLQ.name:
                        source = (headers["source_topic"].decode(), int(headers["source_partition"]),
                                  int(headers["source_offset"]))
                        if source in produced and headers.get("gate_app_id") == app_id.encode():
                            dlq.setdefault(source, []).append(headers["reason"].decode())
                            raw_out += [r.key or b"", r.value or b"", *headers.values()]
                    elif f'"event_id":"{run}-'.encode() in r.value:
                        for rec in _records(r.value):
                            clean[rec["event_id"]] = tp.topic
                        raw_out += [r.key or b"", r.value, *headers.values()]
        return positions, dlq, clean, raw_out
    finally:
        await consumer.stop()


def _event_id(value: bytes) -> str:
    return msgspec.json.decode(value)["event_id"]


def _records(value: bytes) -> list[dict]:
    """A clean message holds one record or an array of one vehicle's records."""
    decoded = msgspec.json.decode(value)
    return decoded if isinstance(decoded, list) else [decoded]


def test_corpus_through_the_worker_gives_one_dead_letter_per_bad_message(kafka_bootstrap, worker_proc, platform_env):
    run = "".join(random.choice(VIN_CHARS) for _ in range(4))  # a re-used broker keeps earlier runs' events
    cases = [c for c in build(run) if c.broker]
    assert len(cases) >= 30
    goods = good_messages(run)
    # accepted: the good messages and the cases' priming messages
    want_clean = {_event_id(v): topics.clean_name(t) for t, _, v, _ in goods}
    want_clean |= {_event_id(m.value): topics.clean_name(c.topic) for c in cases for m in c.messages[:-1]}
    app_id = platform_env["VOLTRISK_WORKER_APP_ID"]
    positions, dlq, clean, raw_out = asyncio.run(_run(kafka_bootstrap, run, cases, goods, len(want_clean), 180, app_id))

    expected, cursor = {}, 0
    for case in cases:
        cursor += len(case.messages)
        expected[positions[cursor - 1]] = case
    assert {pos: reasons for pos, reasons in dlq.items() if pos not in expected} == {}, "good messages dead-lettered"
    wrong = {case.id: (case.reason, dlq.get(pos)) for pos, case in expected.items() if dlq.get(pos) != [case.reason]}
    assert wrong == {}
    assert clean == want_clean
    # no raw VIN of this run in anything the gate wrote
    blob = b"\n".join(raw_out).upper()
    vins = {vin_for(i, run) for i in range(1000)}
    assert sorted(v for v in vins if v.encode() in blob) == []

    # the worker is still consuming: a record produced after the corpus comes through
    topic, key, _, headers = goods[0]
    after = [(topic, key, msgspec.json.encode(value_dict(topic, f"{run}-after")), headers)]
    _, _, clean_after, _ = asyncio.run(_run(kafka_bootstrap, run, [], after, 1, 60, app_id))
    assert clean_after == {f"{run}-after": topics.clean_name(topic)}


def test_console_producer_example_from_the_guide_is_accepted(kafka_bootstrap, worker_proc, tmp_path):
    """docs/integration.md's worked example, run as written (Kafka's own console
    producer, no voltrisk code), with this run's VINs and event ids."""
    guide = (REPO / "docs" / "integration.md").read_text(encoding="utf-8")
    lines = re.search(r"<!-- console-producer-input -->\n```text\n(.*?)```", guide, re.S).group(1)
    command = re.search(r"Save those lines as `dynamics.txt` and run.*?\n```sh\n(.*?)```", guide, re.S).group(1)
    run = "".join(random.choice(VIN_CHARS) for _ in range(4))
    (tmp_path / "dynamics.txt").write_text(lines.replace("LDMDEMA", f"LDM{run}").replace('"doc-', f'"{run}-doc-'))
    command = command.replace("127.0.0.1:9092", kafka_bootstrap).replace("< dynamics.txt", f"< {tmp_path / 'dynamics.txt'}")

    async def go():
        consumer = await _outputs_from_now(kafka_bootstrap)
        try:
            done = subprocess.run(["bash", "-c", command], cwd=REPO, capture_output=True, text=True, timeout=120)
            assert done.returncode == 0, done.stderr[-2000:]
            got: dict[str, tuple[str, dict]] = {}
            deadline = time.monotonic() + 60
            while len(got) < 3 and time.monotonic() < deadline:
                for tp, records in (await consumer.getmany(timeout_ms=1000)).items():
                    for r in records:
                        if f'"{run}-doc-'.encode() not in (r.value or b""):
                            continue
                        if tp.topic == topics.DLQ.name:  # a refusal fails the test with its reason
                            got[f"dlq@{r.offset}"] = (dict(r.headers)["message"].decode(), {})
                        else:
                            got.update((rec["event_id"], (tp.topic, rec)) for rec in _records(r.value))
            return got
        finally:
            await consumer.stop()

    got = asyncio.run(go())
    assert {k: t for k, (t, _) in got.items()} == {f"{run}-doc-{i}": "clean.ev.dynamics.v1" for i in (1, 2, 3)}
    gcj = got[f"{run}-doc-3"][1]
    assert haversine_m(gcj["lat"], gcj["lon"], 31.2284, 121.4781) > 400  # converted from GCJ-02
