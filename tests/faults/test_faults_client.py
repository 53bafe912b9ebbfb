"""A broker outage while the worker has rows to send: the Kafka client's producer must not
spin. Without ``voltrisk.kafkaclient`` aiokafka's sender retried its failed metadata update
in a tight loop in two of three runs — 56,000–58,000 client log lines (with the held-back
repeats) and 11–13 s of worker CPU in 12 s of outage, against 1,100–1,400 lines and under
1 s with it (`bench/bench_outage.py`, bench/RESULTS.md)."""

from __future__ import annotations

import random
import re
import time

from voltrisk import benchmark as B
from voltrisk.harness import TempBroker, platform_env


def _client_lines(lines: list[str]) -> int:
    """Log lines plus the repeats the log filter held back."""
    held = sum(int(m.group(1)) for line in lines for m in [re.search(r"repeated (\d+) times", line)] if m)
    return len(lines) + held


def test_the_worker_does_not_spin_while_the_broker_is_away(tmp_path):
    broker = TempBroker(tmp_path / "kafka-home").start()
    worker = None
    try:
        env = platform_env(tmp_path / "w", broker.bootstrap, "spin", VOLTRISK_WORKER_STAGES="gate,features,scoring",
                           VOLTRISK_WORKER_SCORER="reference")
        worker = B.Worker(env, tmp_path, "worker")
        msgs, _ = B.make_batches(40_000, 100, 10, "spin", random.Random(1), 0)
        B.send_until_the_broker_goes(broker.bootstrap, msgs, rate_msgs=100)
        time.sleep(6)
        stats = worker.stats()
        assert stats["features"]["records"] > 0, "the worker was processing before the outage"
        log = tmp_path / "worker.log"
        before = len(log.read_text().splitlines())
        cpu0 = stats["cpu_s"]
        broker.stop()
        time.sleep(12)
        lines = log.read_text().splitlines()[before:]
        assert any("Unable to update metadata" in line for line in lines), "the outage reached the worker's clients"
        assert _client_lines(lines) < 5_000, lines[-5:]
        cpu = worker.stats()["cpu_s"] - cpu0
        assert cpu < 8.0, f"the worker burnt {cpu:.1f} s of CPU in 12 s without a broker"
    finally:
        if worker is not None:
            worker.svc.proc.kill()
        broker.stop()
