"""Sends in flight: a step hands its rows to the producer and goes on, and what must
follow Kafka's acknowledgement (making the step's state durable, acknowledging the
messages the rows came from) runs when it arrives.

Waiting for each step's acknowledgements before the next step was most of a live
batch's time in the worker (a round trip to the broker per step, with the CPU idle);
a window of sends in flight keeps the round trips and the next steps overlapping, and
its size bounds how much is unacknowledged. The follow-ups run in the order the sends
started (each step's state builds on the one before), and a failed send fails every
send after it without their follow-ups. The failure raises from the next ``settle``
(the next step, a hand-over or a stop), so it still stops the stream's progress, one
step later.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Awaitable, Callable


class SendWindow:
    def __init__(self, size: int) -> None:
        if size < 1:
            raise ValueError(f"a send window holds at least one send, not {size}")
        self.size = size
        self._in_flight: deque[asyncio.Future] = deque()
        self._last: asyncio.Future | None = None  # the send started last, settled or not

    def __len__(self) -> int:
        return len(self._in_flight)

    def start(self, acknowledged: Awaitable, then: Callable[[], Awaitable[None]], failed: Callable[[BaseException], None]) -> None:
        """Track a send: once ``acknowledged`` resolves and the send before it followed up,
        run ``then``; if either fails (or ``then`` raises), call ``failed`` with the error (and the next
        ``settle`` raises the error). Call ``settle(size - 1)`` first, so the window stays
        within its size."""
        self._last = asyncio.ensure_future(_follow(self._last, acknowledged, then, failed))
        self._in_flight.append(self._last)

    async def settle(self, keep: int = 0) -> None:
        """Wait until at most ``keep`` sends are in flight (0: all acknowledged, before a
        hand-over or a stop), oldest first; raise the first failed send's error."""
        while self._in_flight and (len(self._in_flight) > keep or self._in_flight[0].done()):
            oldest = self._in_flight[0]
            await asyncio.wait([oldest])  # not `await oldest`: cancelling the caller must not cancel it
            # several callers may wait for the same send (a step, the release timer, a
            # hand-over): the first to wake takes it off, and raises its error if it failed
            if self._in_flight and self._in_flight[0] is oldest:
                self._in_flight.popleft()
                oldest.result()


async def _follow(previous: asyncio.Future | None, acknowledged: Awaitable, then: Callable[[], Awaitable[None]],
                  failed: Callable[[BaseException], None]) -> None:
    try:
        await acknowledged
        if previous is not None:
            await asyncio.wait([previous])  # not `await previous`: its failure is raised once per send
            if previous.cancelled():
                raise asyncio.CancelledError("the send before this one was cancelled")
            if previous.exception() is not None:
                raise SendFailed("the send before this one failed") from previous.exception()
        await then()
    except BaseException as exc:
        failed(exc)
        raise


class SendFailed(Exception):
    """A send after one that failed: its rows may have reached Kafka, but the state
    they were computed from builds on the failed step's."""
