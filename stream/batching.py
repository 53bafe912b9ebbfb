"""Batches from a Faust stream that keep filling while the agent works, and grow
when the agent is behind.

Faust's ``Stream.take_events(max, within)`` stops adding events to its buffer while
the agent handles the batch it yielded, then collects for ``within`` before the next
one: small ``within`` means low latency live but small batches (and high per-batch
costs) when catching up; large ``within`` the reverse.

``take_batches`` keeps a second buffer filling while the agent works (events that
arrive while it waits for Kafka's acknowledgements are not held up), and chooses the
collection window from how far behind the stream is: ``within`` while the newest
message of the last batch is less than a second old (live), ``catch_up_s`` when it is
older (a backlog: bigger batches, fewer per-batch costs; latency does not matter
then). An idle agent takes a lone event at once.

Acknowledgements are as Faust's: the events of a batch are acked when the agent
asks for the next batch, so an offset is committed only after its batch was handled
(at-least-once). Events still in the second buffer are not acked.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Sequence

from mode.utils.aiter import aiter


BEHIND_S = 1.0  # the newest message of a batch older than this: the stream is catching up


async def take_batches(stream, max_: int, within: float, catch_up_s: float = 0.1) -> AsyncIterator[Sequence]:
    """Yield lists of Faust events from ``stream``: at most ``max_`` per batch, at most
    one batch per ``within`` seconds live (``catch_up_s`` when behind)."""
    loop = asyncio.get_running_loop()
    pending: list = []
    ready, full, room = asyncio.Event(), asyncio.Event(), asyncio.Event()
    room.set()

    async def add(value):
        while len(pending) >= max_:  # back-pressure: the agent has not taken the full buffer yet
            room.clear()
            await stream.wait(room)
            if stream.should_stop:
                return value
        event = stream.current_event
        if event is None:
            raise RuntimeError("take_batches: the stream has no current event")
        if not pending:
            ready.set()
        pending.append(event)
        if len(pending) >= max_:
            full.set()
        return value

    acks_before = stream.enable_acks
    stream.enable_acks = False  # acked below, once the agent has handled them
    stream.add_processor(add)
    stream._enable_passive(aiter(stream.channel))  # Faust's own take drains the stream this way
    last_yield, window = float("-inf"), within
    try:
        while not stream.should_stop:
            # (mode's wait_for_stopped also answers True on a timeout: ask the stream itself)
            await stream.wait_for_stopped(ready)
            left = last_yield + window - loop.time()
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
            last_yield = loop.time()
            sent = batch[-1].message.timestamp
            window = catch_up_s if sent is not None and time.time() - sent > BEHIND_S else within
    finally:
        stream.enable_acks = acks_before
        stream._processors.remove(add)
