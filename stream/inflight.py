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


class StepSender:
    """Runs a stateful engine's steps and sends their rows through a ``SendWindow``, one
    step at a time: a step computes only once the window has room, and what the step
    finished (the messages to acknowledge, its sealed state, its changelog) is taken
    right after it computed, before anything else may run. Steps come from several
    tasks (the agent's batches, the gate's hand-offs, the release timer, a hand-over);
    had one of them computed while another waited for room in the window, the waiting
    step would have taken the other's messages and state as its own, and made them
    durable and acknowledged once its own rows were, before the other's were.

    ``engine``: ``take_settled()``, ``seal()``, ``commit(seal)``. ``enqueue(outs)`` hands
    messages to the producer and returns what to await for their acknowledgements.
    ``outs(rows)`` makes the step's messages, ``changelog()`` the state's, ``ack(token)``
    acknowledges a finished message, ``forget(tokens)`` is told of the finished messages
    of a failed send, and ``stop(exc, what, first)`` of every failure (nothing runs after the first)."""

    def __init__(self, engine, enqueue: Callable, *, outs: Callable, changelog: Callable[[], list],
                 ack: Callable[[object], Awaitable[None]], forget: Callable[[list], None],
                 stop: Callable[[BaseException, str, bool], None], size: int) -> None:
        self.engine, self.enqueue, self.outs, self.changelog = engine, enqueue, outs, changelog
        self.ack, self.forget, self._stop = ack, forget, stop
        self.sends = SendWindow(size)
        self.stopping: list[BaseException] = []
        self._turn = asyncio.Lock()  # FIFO: steps run in the order they asked

    def stop(self, exc: BaseException, what: str) -> None:
        """A failure: no step runs after it and nothing more is made durable. ``first``
        tells the callback whether it is the first failure, not one that follows from it
        (a send after a failed one) or a shutdown (a cancelled send)."""
        first = not self.stopping and not isinstance(exc, (SendFailed, asyncio.CancelledError))
        if first:
            self.stopping.append(exc)
        self._stop(exc, what, first)

    async def run(self, compute: Callable[..., list], *args) -> None:
        """Compute one step (``compute(*args)``: its rows) and send them; once Kafka
        acknowledged them, send the step's state to the changelog, commit it, then
        acknowledge the messages the step finished. A step that raises stops everything
        (``stop``) and the error propagates."""
        async with self._turn:
            if self.stopping:  # after a failure nothing more leaves: the restart recomputes it
                return
            await self.sends.settle(self.sends.size - 1)
            if self.stopping:
                return
            engine = self.engine
            try:
                rows = compute(*args)
                outs = self.outs(rows)
            except Exception as exc:
                self.stop(exc, "a features step failed")
                raise
            done = engine.take_settled()
            sealed, state = engine.seal(), self.changelog()

            def failed(exc: BaseException) -> None:
                self.forget(done)
                self.stop(exc, "a send of derived rows failed")

            try:
                acknowledged = await self.enqueue(outs)
            except BaseException as exc:
                failed(exc)
                raise

            async def durable_then_ack() -> None:
                if self.stopping:  # a later step failed: the rows of this one are recomputed after the restart
                    raise SendFailed("the worker stops after a failure")
                if state:
                    await (await self.enqueue(state))
                engine.commit(sealed)
                for token in done:
                    await self.ack(token)

            self.sends.start(acknowledged, durable_then_ack, failed)

    async def settle(self) -> None:
        """Wait until every send is acknowledged and followed up (a hand-over, a stop)."""
        await self.sends.settle()
