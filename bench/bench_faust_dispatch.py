"""Faust's per-message dispatch cost: an agent with an empty body against raw aiokafka.

Pre-fills ``ev.dynamics.v1`` on a temp broker, then in the same run times a plain
aiokafka consumer and a Faust app whose agent only counts ``take_events(2000, 0.05)``
batches (the worker's batching, nothing else). Prints one JSON object:

    .venv/bin/python bench/bench_faust_dispatch.py --messages 30000
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from voltrisk.benchmark import make_batches, produce, raw_consume
from voltrisk.harness import TempBroker


def faust_child(bootstrap: str, n_msgs: int, datadir: str) -> None:
    """Runs in a child process (Faust owns its process): prints messages/s and exits."""
    import faust

    if os.environ.get("DISPATCH_SWITCH_INTERVAL"):
        sys.setswitchinterval(float(os.environ["DISPATCH_SWITCH_INTERVAL"]))

    conf = dict(stream_buffer_maxsize=32768, broker_max_poll_records=10_000, consumer_max_fetch_size=16 * 1024 * 1024)
    conf.update(json.loads(os.environ.get("DISPATCH_FAUST_CONF", "{}")))  # to try other settings
    app = faust.App("dispatch-bench", broker=f"kafka://{bootstrap}", datadir=datadir, web_enabled=False,
                    topic_allow_declare=False, topic_disable_leader=True, consumer_auto_offset_reset="earliest",
                    key_serializer="raw", value_serializer="raw", **conf)
    topic = app.topic("ev.dynamics.v1", key_type=bytes, value_type=bytes)
    seen = {"n": 0, "t0": 0.0}

    @app.agent(topic)
    async def count(stream):
        async for events in stream.take_events(2000, 0.05):
            if not seen["t0"]:
                seen["t0"] = time.perf_counter()
            seen["n"] += len(events)
            if seen["n"] >= n_msgs:
                print(json.dumps({"faust_msgs_per_s": round(seen["n"] / (time.perf_counter() - seen["t0"]))}), flush=True)
                os._exit(0)

    sys.argv = ["dispatch-bench", "worker", "-l", "warn", "--without-web"]
    app.main()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--messages", type=int, default=30_000)
    ap.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        faust_child(args.child[0], int(args.child[1]), tempfile.mkdtemp(prefix="dispatch-"))
        return
    base = Path(tempfile.mkdtemp(prefix="voltrisk-dispatch-"))
    broker = TempBroker(base / "kafka-home", heap="1g").start()
    try:
        msgs, n = make_batches(args.messages * 10, 300, 10, "d", random.Random(1), int(time.time() * 1000) - 86_400_000)
        asyncio.run(produce(broker.bootstrap, msgs))
        raw_s = asyncio.run(raw_consume(broker.bootstrap, len(msgs), decode=False))
        child = subprocess.run([sys.executable, __file__, "--child", broker.bootstrap, str(len(msgs))],
                               capture_output=True, text=True, timeout=600)
        # Faust redirects the worker's stdout into its log, so the figure may arrive on either stream.
        line = re.findall(r'\{"faust_msgs_per_s": \d+\}', child.stdout + child.stderr)
        if not line:
            raise SystemExit(f"the Faust agent did not finish (exit {child.returncode}):\n{child.stdout[-2000:]}\n{child.stderr[-2000:]}")
        faust_rate = json.loads(line[-1])["faust_msgs_per_s"]
    finally:
        broker.stop()
    print(json.dumps({"bench": "faust.dispatch", "messages": len(msgs), "raw_aiokafka_msgs_per_s": round(len(msgs) / raw_s),
                      "faust_empty_agent_msgs_per_s": faust_rate, "ratio": round(faust_rate / (len(msgs) / raw_s), 4),
                      "load_average": round(os.getloadavg()[0], 1)}))


if __name__ == "__main__":
    main()
