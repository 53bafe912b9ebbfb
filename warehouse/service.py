"""The warehouse process: owns the store, applies migrations, runs the sink and
serves the read-only ClickHouse HTTP endpoint (embedded mode)."""

from __future__ import annotations

import asyncio
import gc
import logging
import signal
import threading

from aiohttp import web

from voltrisk.errors import UserError
from voltrisk.settings import KafkaClientSettings, WarehouseSettings
from warehouse.client import embedded_path, writer_client
from warehouse.migrate import migrate
from warehouse.sink import ROUTES, Sink

log = logging.getLogger("voltrisk.warehouse")


def consumer_factory(k: KafkaClientSettings, w: WarehouseSettings):
    def make():
        from aiokafka import AIOKafkaConsumer

        return AIOKafkaConsumer(
            group_id=w.sink_group,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            max_partition_fetch_bytes=8 * 1024 * 1024,
            fetch_max_bytes=64 * 1024 * 1024,
            fetch_max_wait_ms=k.kafka_fetch_max_wait_ms,
            **k.aiokafka_kwargs(),
        )

    return make


async def serve(w: WarehouseSettings, k: KafkaClientSettings, *, with_sink: bool = True, ready: asyncio.Event | None = None) -> None:
    client = writer_client(w)
    applied = migrate(client, w)
    if applied:
        log.info("applied migrations: %s", ", ".join(f"{m.version:04d}_{m.name}" for m in applied))
    runner = None
    path = embedded_path(w.clickhouse_dsn)
    endpoint = None
    if path is not None:
        from warehouse.endpoint import ReadOnlyEndpoint

        endpoint = ReadOnlyEndpoint(str(path.resolve()))
        runner = web.AppRunner(endpoint.app(), access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, w.warehouse_http_host, w.warehouse_http_port)
        try:
            await site.start()
        except OSError as exc:
            await runner.cleanup()
            raise UserError(
                f"cannot serve the read-only endpoint on {w.warehouse_http_host}:{w.warehouse_http_port} ({exc.strerror}); "
                "another process holds the port: stop it or set VOLTRISK_WAREHOUSE_HTTP_PORT"
            ) from None
        log.info("read-only ClickHouse HTTP endpoint on http://%s:%d", w.warehouse_http_host, w.warehouse_http_port)
    sink = Sink(client, consumer_factory(k, w), batch_rows=w.sink_batch_rows, batch_ms=w.sink_batch_ms)
    stop = asyncio.Event()
    if threading.current_thread() is threading.main_thread():
        # the service process: what start-up built stays out of the collector's sight, so
        # full collections walk only what the sink makes (see the worker's, stream/worker.py)
        gc.freeze()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
    if ready is not None:
        ready.set()
    tasks = [asyncio.create_task(stop.wait())]
    if with_sink:
        tasks.append(asyncio.create_task(sink.run()))
    try:
        done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        for t in done:
            if t.exception():
                from voltrisk.security import refusal

                why = await refusal(t.exception(), k)
                if why:
                    raise UserError(f"the warehouse sink stopped: {why}") from None
                raise t.exception()
    finally:
        sink.stop()
        for t in tasks:
            if not t.done():
                try:
                    await asyncio.wait_for(t, 15)
                except (asyncio.TimeoutError, asyncio.CancelledError):
                    t.cancel()
        log.info("sink stopped after %d rows in %d batches (%d retries)", sink.stats.rows, sink.stats.batches, sink.stats.retries)
        if runner is not None:
            await runner.cleanup()
        if endpoint is not None:
            endpoint.close()
        client.close()
