"""Process entry point of the Faust worker (`voltrisk worker run`)."""

from __future__ import annotations

import asyncio
import gc
import json
import logging
import sys
import time

from stream.agents import make_app
from voltrisk.errors import UserError
from voltrisk.settings import KafkaClientSettings, WorkerSettings


log = logging.getLogger("voltrisk.worker")


def ready_file(w: WorkerSettings):
    return w.home.resolve() / "run" / "worker.ready"


def worker_argv(w: WorkerSettings, loglevel: str) -> list[str]:
    """Faust's command line: the web server (it serves tables) only when enabled, then on
    127.0.0.1:worker_web_port (make_app)."""
    return ["voltrisk-worker", "worker", "-l", loglevel, *([] if w.worker_web_enabled else ["--without-web"])]


async def login_refusal(k: KafkaClientSettings, timeout_s: float = 15.0) -> str | None:
    """Why the broker refuses this worker's connection (wrong SCRAM password or user,
    untrusted certificate, another protocol), or None when it lets it in or does not
    answer within ``timeout_s``."""
    from aiokafka.client import AIOKafkaClient

    from voltrisk.security import refusal

    client = AIOKafkaClient(request_timeout_ms=int(timeout_s * 1000), **k.aiokafka_kwargs())
    try:
        await asyncio.wait_for(client.bootstrap(), timeout_s)
        return None
    except asyncio.TimeoutError:
        return None
    except Exception as exc:
        return await refusal(exc, k, timeout_s)
    finally:
        await client.close()


def check_login(k: KafkaClientSettings) -> None:
    """Stop with a sentence (exit status 2, as every voltrisk service) when the broker refuses
    the worker's login. Faust alone stops too, with status 1 and a traceback that ends in
    "Unable to bootstrap", the reason in one aiokafka log line above it. A broker that does
    not answer is left to Faust."""
    if not k.kafka_security_protocol.startswith("SASL"):
        return
    why = asyncio.run(login_refusal(k))
    if why:
        raise UserError(f"the worker did not start: {why}")


def main(loglevel: str = "info") -> None:
    w = WorkerSettings()
    k = KafkaClientSettings()
    check_login(k)
    app = make_app(w, k)
    marker = ready_file(w)
    marker.unlink(missing_ok=True)

    stats = marker.with_name("worker.stats.json")

    @app.task
    async def announce_ready() -> None:
        # what start-up built (modules, Faust's app, the models) lives as long as the process:
        # out of the collector's sight, a full collection walks only what the stream makes
        # (the pauses, with and without, in bench/RESULTS.md; worker.stats.json counts them)
        if w.worker_gc_freeze:
            gc.freeze()
        if app.warm_up_summary:
            log.info(app.warm_up_summary)
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
