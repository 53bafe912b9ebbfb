"""Load benchmark: can the load generator hold 20,000 events/s for 60 s into Kafka here?

    .venv/bin/python bench/bench_load.py                 # 20,000/s, 60 s, 2,000 vehicles at 10 Hz
    .venv/bin/python bench/bench_load.py --rate 5000 --duration 20 --vehicles 500
    .venv/bin/python bench/bench_load.py --private-broker   # a broker of its own

Runs two measurements and prints one JSON object: the generator alone (records
encoded into a JSON-lines file on /dev/shm, no broker) and the full path into the
broker at VOLTRISK_KAFKA_BOOTSTRAP (acks=all, idempotent) — or, when nothing answers
there, a private broker started for the run on free ports and stopped after (the
same way the test fixture does). The first tells whether the generator or Kafka is
the limit when the target is missed.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tempfile
import time
from dataclasses import asdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from simulators import runner, sink  # noqa: E402
from voltrisk import broker  # noqa: E402
from voltrisk.harness import TempBroker  # noqa: E402
from voltrisk.settings import KafkaClientSettings  # noqa: E402


def measure(target, rate: float, duration: float, vehicles: int) -> dict:
    stream, hz = runner.load_stream(vehicles, rate, seed=7, start_ms=int(time.time() * 1000))

    async def go():
        async with target:
            return await runner.run_load(target, stream, rate, duration, vehicles, hz, lambda n: None)

    return asdict(asyncio.run(go()))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rate", type=float, default=20_000)
    ap.add_argument("--duration", type=float, default=60)
    ap.add_argument("--vehicles", type=int, default=2_000)
    ap.add_argument("--skip-generator", action="store_true", help="only the Kafka run")
    ap.add_argument(
        "--private-broker",
        action="store_true",
        help="start a broker of our own even if one answers (no other consumers competing)",
    )
    a = ap.parse_args()
    out = {
        "date_utc": time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime()),
        "cpus": os.cpu_count(),
        "load_avg_1m_before": os.getloadavg()[0],
    }
    if not a.skip_generator:
        with tempfile.TemporaryDirectory(dir="/dev/shm" if Path("/dev/shm").exists() else None) as d:
            out["generator_only"] = measure(
                sink.FileSink(Path(d) / "load.jsonl", "WGS84"), a.rate, a.duration, a.vehicles
            )
    settings = KafkaClientSettings()
    own = None
    with tempfile.TemporaryDirectory() as home:
        if a.private_broker or not broker.answers(settings.kafka_bootstrap, timeout_s=2):
            own = TempBroker(Path(home), heap="1g").start()
            settings = KafkaClientSettings(kafka_bootstrap=own.bootstrap)
        try:
            asyncio.run(broker.create_topics(settings))
            out["kafka_bootstrap"] = settings.kafka_bootstrap
            out["private_broker"] = own is not None
            out["kafka"] = measure(
                sink.KafkaSink("WGS84", stamp=True, settings=settings), a.rate, a.duration, a.vehicles
            )
        finally:
            if own is not None:
                own.stop()
    out["load_avg_1m_after"] = os.getloadavg()[0]
    out["held_within_2pct"] = out["kafka"]["held_within_2pct"]
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
