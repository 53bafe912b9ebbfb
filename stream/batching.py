"""Batches from a Faust stream that keep filling while the agent works.

Faust's ``Stream.take_events(max, within)`` stops adding events to its buffer while
the agent handles the batch it yielded, then waits ``within`` for the next one, from
the end of the previous batch. Dispatch and processing therefore take turns: while
an agent waits for Kafka to acknowledge its outputs, nothing is buffered for it.

``take_batches`` keeps a second buffer filling while the agent works. A batch goes to
the agent as soon as the agent is free and ``within`` has passed since the first
event in the buffer (or the buffer holds ``max`` events). Under backlog the batches
grow to what arrived during the previous batch; live, an event waits at most
``within`` plus the batch in progress.

Acknowledgements are as Faust's: the events of a batch are acked when the agent
asks for the next batch, so an offset is committed only after its batch was handled
(at-least-once). Events still in the second buffer are not acked.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence

from mode.utils.aiter import aiter


async def take_batches(stream, max_: int, within: float) -> AsyncIterator[Sequence]:
    """Yield lists of Faust events from ``stream``: at most ``max_`` per batch, each
    event waiting at most ``within`` seconds once the agent is free."""
    loop = asyncio.get_running_loop()
    pending: list = []
    first_at = 0.0
    ready, full, room = asyncio.Event(), asyncio.Event(), asyncio.Event()
    room.set()

    async def add(value):
        nonlocal first_at
        while len(pending) >= max_:  # back-pressure: the agent has not taken the full buffer yet
            room.clear()
            await stream.wait(room)
            if stream.should_stop:
                return value
        event = stream.current_event
        if event is None:
            raise RuntimeError("take_batches: the stream has no current event")
        if not pending:
            first_at = loop.time()
            ready.set()
        pending.append(event)
        if len(pending) >= max_:
            full.set()
        return value

    acks_before = stream.enable_acks
    stream.enable_acks = False  # acked below, once the agent has handled them
    stream.add_processor(add)
    stream._enable_passive(aiter(stream.channel))  # Faust's own take drains the stream this way
    try:
        while not stream.should_stop:
            # (mode's wait_for_stopped also answers True on a timeout: ask the stream itself)
            await stream.wait_for_stopped(ready)
            left = first_at + within - loop.time()
            if left > 0 and not full.is_set():
                await stream.wait_for_stopped(full, timeout=left)
            if stream.should_stop:
                break
            batch = pending[:]
            pending.clear()
            ready.clear()
            full.clear()
            room.set()
            yield batch
            for event in batch:
                await stream.ack(event)
    finally:
        stream.enable_acks = acks_before
        stream._processors.remove(add)
