"""Process entry point of the Faust worker (`voltrisk worker run`)."""

from __future__ import annotations

import json
import sys
import time

from stream.agents import make_app
from voltrisk.settings import KafkaClientSettings, WorkerSettings


def ready_file(w: WorkerSettings):
    return w.home.resolve() / "run" / "worker.ready"


def main(loglevel: str = "info") -> None:
    w = WorkerSettings()
    app = make_app(w, KafkaClientSettings())
    marker = ready_file(w)
    marker.unlink(missing_ok=True)

    stats = marker.with_name("worker.stats.json")

    @app.task
    async def announce_ready() -> None:
        marker.parent.mkdir(parents=True, exist_ok=True)
        marker.write_text(str(time.time()))

    @app.timer(interval=1.0)
    async def write_stats() -> None:
        tmp = stats.with_suffix(".tmp")
        tmp.write_text(json.dumps(app.stats.snapshot()))
        tmp.replace(stats)  # readers never see a half-written file

    sys.argv = ["voltrisk-worker", "worker", "-l", loglevel, "--without-web"]
    try:
        app.main()
    finally:
        marker.unlink(missing_ok=True)
