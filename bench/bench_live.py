"""The live stage of ``voltrisk bench`` alone, for A/B runs of worker settings.

Starts a temp broker, trains the bench's telematics model, then for each variant
(alternating, ``--rounds`` times) starts a warehouse and a worker with the variant's
environment, warms it at 1,000 records/s and measures ``--rate`` records/s live for
``--seconds``: event → gate, event → score and event → visible quantiles as in
``voltrisk bench``, plus the worker process's CPU (cores) during the run. Live latency
on this 2-core machine spreads widely from run to run, so compare variants on
alternating runs, not on one run each. Prints one JSON object:

    .venv/bin/python bench/bench_live.py --rate 5000 --rounds 2 \\
        --variant gather0:VOLTRISK_GATE_GATHER_MS=0 --variant default:
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import tempfile
import time
from pathlib import Path

from voltrisk import benchmark as B
from voltrisk.harness import TempBroker, platform_env

KEYS = ("achieved_rate", "gate_p50_ms", "gate_p99_ms", "score_p50_ms", "score_p95_ms", "score_p99_ms",
        "visible_p50_ms", "visible_p99_ms", "handed_over", "messages", "machine_cpu_busy", "machine_cpu_steal",
        "worker_full_gc")


def variant(text: str) -> tuple[str, dict[str, str]]:
    """``name:KEY=VALUE,KEY=VALUE`` (nothing after the colon: the defaults)."""
    name, _, settings = text.partition(":")
    env = {}
    for pair in filter(None, settings.split(",")):
        key, eq, value = pair.partition("=")
        if not eq or not key.startswith("VOLTRISK_"):
            raise argparse.ArgumentTypeError(f"{pair!r} is not VOLTRISK_SETTING=value")
        env[key] = value
    if not name:
        raise argparse.ArgumentTypeError(f"{text!r} has no name before the colon")
    return name, env


def one_run(base: Path, registry: Path, name: str, env: dict[str, str], rate: int, seconds: float,
            rng: random.Random) -> dict:
    """One variant's run on a broker of its own (no topic holds an earlier run's records)."""
    run = f"{name}-{int(time.time() * 1000)}"
    common = {**B.worker_env(registry), "VOLTRISK_WORKER_STAGES": "gate,features,scoring", **env}
    broker = TempBroker(base / run / "kafka-home", heap="1g").start()
    bootstrap = broker.bootstrap
    penv = platform_env(base / run, bootstrap, run, **common)
    procs = []
    try:
        wh, url = B.start_warehouse(penv, base / run)
        procs.append(wh)
        worker = B.Worker(dict(penv, VOLTRISK_HOME=str(base / run / "home0")), base / run, "worker")
        procs.append(worker)
        warm, cfg = B.BenchConfig.quick_config(), B.BenchConfig.quick_config()
        warm.live_seconds, cfg.live_seconds = 5.0, seconds
        B._live(bootstrap, url, 1_000, warm, rng, worker)  # first live seconds of a fresh worker, not reported
        cpu0, t0 = B._proc_cpu_s(worker.svc.proc.pid), time.monotonic()
        r = B._live(bootstrap, url, rate, cfg, rng, worker)
        r["worker_cpu_cores"] = round((B._proc_cpu_s(worker.svc.proc.pid) - cpu0) / (time.monotonic() - t0), 3)
    finally:
        for p in reversed(procs):
            p.stop()
        broker.stop()
    return {"variant": name, **{k: r[k] for k in KEYS if k in r}, "worker_cpu_cores": r["worker_cpu_cores"]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rate", type=int, default=5_000, help="live records/s")
    ap.add_argument("--seconds", type=float, default=20.0, help="measured seconds a run (after a 3 s warm-up)")
    ap.add_argument("--rounds", type=int, default=2, help="runs of each variant, alternating")
    ap.add_argument("--variant", type=variant, action="append", required=True,
                    help="name:VOLTRISK_SETTING=value,... (repeat; 'name:' for the defaults)")
    args = ap.parse_args()
    base = Path(tempfile.mkdtemp(prefix="voltrisk-bench-live-"))
    registry = base / "models"
    B.train_model(registry, lambda *a: print(*a, file=sys.stderr))
    rng = random.Random(7)
    runs = []
    for i in range(args.rounds):
        for name, env in args.variant:
            r = one_run(base, registry, name, env, args.rate, args.seconds, rng)
            print(json.dumps(r), file=sys.stderr)
            runs.append({"round": i + 1, **r})
    print(json.dumps({"rate": args.rate, "seconds": args.seconds, "date_utc": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
                      "commit": B._commit(), "machine": B._machine(), "runs": runs}))


if __name__ == "__main__":
    main()
