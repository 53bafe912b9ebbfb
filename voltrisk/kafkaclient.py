"""A fix to the Kafka client library, installed by every voltrisk process.

aiokafka's producer sends its pending batches in a loop that, while a partition's leader
is unknown, asks for a metadata update and waits for it. With the broker gone that update
fails at once (connection refused), so the loop spins: a worker with undelivered rows
made ~47,000 metadata attempts in 10 s of broker outage (`voltrisk chaos` broker_restart,
tests/faults/test_faults_client.py), a core's worth of CPU spent on log lines. Here a
failed metadata update is answered only after the client's ``retry_backoff_ms`` (100 ms),
as its other retries are; a successful one is unchanged.
"""

from __future__ import annotations

import asyncio

_installed = False


def install() -> None:
    global _installed
    if _installed:
        return
    from aiokafka.client import AIOKafkaClient

    update = AIOKafkaClient._metadata_update

    async def _metadata_update(self, cluster_metadata, topics):
        ok = await update(self, cluster_metadata, topics)
        if not ok:
            await asyncio.sleep(self._retry_backoff)
        return ok

    AIOKafkaClient._metadata_update = _metadata_update
    _installed = True
