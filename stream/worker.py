"""Process entry point of the Faust worker (`voltrisk worker run`)."""

from __future__ import annotations

import json
import sys
import time

from stream.agents import make_app
from voltrisk.settings import KafkaClientSettings, WorkerSettings


def ready_file(w: WorkerSettings):
    return w.home.resolve() / "run" / "worker.ready"


def worker_argv(w: WorkerSettings, loglevel: str) -> list[str]:
    """Faust's command line: the web server (it serves tables) only when enabled, then on
    127.0.0.1:worker_web_port (make_app)."""
    return ["voltrisk-worker", "worker", "-l", loglevel, *([] if w.worker_web_enabled else ["--without-web"])]


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

    sys.argv = worker_argv(w, loglevel)
    try:
        app.main()
    finally:
        marker.unlink(missing_ok=True)
