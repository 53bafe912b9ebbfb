"""A worker with rows to send loses its broker: client log lines and worker CPU in the outage.

    .venv/bin/python bench/bench_outage.py            # the worker as `voltrisk worker run`
    .venv/bin/python bench/bench_outage.py --baseline # the same, without voltrisk.kafkaclient

Prints one JSON object. The baseline starts the worker through the CLI's typer app
directly, which skips ``voltrisk.kafkaclient.install()`` (aiokafka's failed metadata
updates then retry without a back-off)."""

from __future__ import annotations

import argparse
import json
import random
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from voltrisk import benchmark as B
from voltrisk.harness import REPO, TempBroker, platform_env, wait_for


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--baseline", action="store_true", help="run the worker without voltrisk.kafkaclient")
    ap.add_argument("--outage-s", type=float, default=12.0)
    args = ap.parse_args()
    base = Path(tempfile.mkdtemp(prefix="voltrisk-outage-"))
    broker = TempBroker(base / "kafka-home").start()
    env = platform_env(base / "w", broker.bootstrap, "outage", VOLTRISK_WORKER_STAGES="gate,features,scoring",
                       VOLTRISK_WORKER_SCORER="reference")
    entry = ["-c", "from voltrisk.cli import app; app()"] if args.baseline else ["-m", "voltrisk"]
    log = base / "worker.log"
    with open(log, "ab") as out:
        proc = subprocess.Popen([sys.executable, *entry, "worker", "run", "--loglevel", "warn"], env=env,
                                stdout=out, stderr=subprocess.STDOUT, cwd=REPO)
    stats_file = Path(env["VOLTRISK_HOME"]) / "run" / "worker.stats.json"
    try:
        wait_for((Path(env["VOLTRISK_HOME"]) / "run" / "worker.ready").exists, 180, "the worker")
        msgs, _ = B.make_batches(40_000, 100, 10, "outage", random.Random(1), 0)
        B.send_until_the_broker_goes(broker.bootstrap, msgs, rate_msgs=100)
        time.sleep(6)
        before, cpu0 = len(log.read_text().splitlines()), json.loads(stats_file.read_text())["cpu_s"]
        broker.stop()
        time.sleep(args.outage_s)
        lines = log.read_text().splitlines()[before:]
        held = sum(int(m.group(1)) for line in lines for m in [re.search(r"repeated (\d+) times", line)] if m)
        cpu = json.loads(stats_file.read_text())["cpu_s"] - cpu0
        print(json.dumps({"baseline": args.baseline, "outage_s": args.outage_s, "log_lines": len(lines),
                          "client_lines_incl_held_back": len(lines) + held, "worker_cpu_s": round(cpu, 2)}))
    finally:
        proc.kill()
        broker.stop()


if __name__ == "__main__":
    main()
