"""Process entry point of the Faust worker (`voltrisk worker run`)."""

from __future__ import annotations

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

    @app.task
    async def announce_ready() -> None:
        marker.parent.mkdir(parents=True, exist_ok=True)
        marker.write_text(str(time.time()))

    sys.argv = ["voltrisk-worker", "worker", "-l", loglevel, "--without-web"]
    try:
        app.main()
    finally:
        marker.unlink(missing_ok=True)
