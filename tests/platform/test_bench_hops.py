"""The ceiling `voltrisk bench` measures the full path against besides raw consume: the
design's topic hops with no work on a message (``benchmark.kafka_hops``). A ceiling is
only one if it moves what the path moves: every raw message copied once, unchanged, to
its clean topic's same partition, and every copy fetched by the sink's process."""

from __future__ import annotations

import asyncio
import random
from collections import Counter

from stream.topics import clean_name
from voltrisk import benchmark as B
from voltrisk.broker import status
from voltrisk.harness import TempBroker


async def _messages(bootstrap: str, topic: str) -> Counter:
    c = await B._from_start(bootstrap, topic)
    try:
        seen: Counter = Counter()
        while True:
            got = await c.getmany(timeout_ms=2_000, max_records=20_000)
            if not got:
                return seen
            for tp, msgs in got.items():
                seen.update((tp.partition, m.key, m.value, tuple(m.headers)) for m in msgs)
    finally:
        await c.stop()


def test_the_kafka_hops_copy_every_message_once_and_the_sink_process_fetches_every_copy(tmp_path):
    broker = TempBroker(tmp_path / "kafka-home").start()
    try:
        msgs, n = B.make_batches(6_000, 60, 10, "hops", random.Random(3), 0)
        asyncio.run(B.produce(broker.bootstrap, msgs))
        raw = asyncio.run(_messages(broker.bootstrap, B.TOPIC))
        assert sum(raw.values()) == len(msgs) == 600
        pid = status(broker.settings)["pid"]
        for fetch_copies in (True, False):
            hops = B.kafka_hops(tmp_path, broker.bootstrap, len(msgs), pid, fetch_copies)
            # returned only once the sink's process fetched len(msgs) copies; the topic
            # holds each raw message exactly once more, on the same partition, unchanged
            assert asyncio.run(_messages(broker.bootstrap, clean_name(B.TOPIC))) == raw
            assert hops["seconds"] > 0
            assert hops["relay_cpu_s"] > 0 and hops["sink_cpu_s"] > 0 and hops["broker_cpu_s"] > 0
            assert hops["cpu_s"] == hops["relay_cpu_s"] + hops["sink_cpu_s"]
    finally:
        broker.stop()
