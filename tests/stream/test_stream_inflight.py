"""The window of sends in flight (stream.inflight): a step does not wait for the
acknowledgements of the one before, what follows an acknowledgement runs only after
it and after the follow-up of the send before, the window stays within its size, and
a failed send is not lost: it and every send after it are failed (their messages
forgotten, nothing of theirs made durable) and the next settle raises."""

from __future__ import annotations

import asyncio

import pytest

from stream.inflight import SendFailed, SendWindow, StepSender


async def test_steps_go_on_while_sends_wait_and_acks_follow_their_acknowledgement():
    loop = asyncio.get_running_loop()
    window = SendWindow(2)
    acks, order = [loop.create_future() for _ in range(3)], []

    def then(i):
        async def run():
            order.append(i)
        return run

    await window.settle(window.size - 1)
    window.start(acks[0], then(0), lambda exc: order.append("failed"))
    await window.settle(window.size - 1)  # one in flight: the second step need not wait
    window.start(acks[1], then(1), lambda exc: order.append("failed"))
    assert len(window) == 2 and order == []  # nothing acknowledged, nothing followed

    third = asyncio.ensure_future(window.settle(window.size - 1))
    await asyncio.sleep(0.01)
    assert not third.done()  # a full window: the third step waits for the oldest send
    acks[1].set_result([(0, 1)])
    await asyncio.sleep(0.01)
    assert order == [] and not third.done()  # the newer one is acknowledged, but its follow-up waits for the older's
    acks[0].set_result([(0, 0)])
    await asyncio.wait_for(third, 1)
    await window.settle()
    assert order == [0, 1] and len(window) == 0  # both followed up, in the order they started
    window.start(acks[2], then(2), lambda exc: order.append("failed"))
    acks[2].set_result([(0, 2)])
    await window.settle()
    assert order == [0, 1, 2] and len(window) == 0


async def test_a_failed_send_fails_the_sends_after_it_and_the_next_settle_raises():
    loop = asyncio.get_running_loop()
    window = SendWindow(4)
    forgotten, followed = [], []
    before, bad, after = loop.create_future(), loop.create_future(), loop.create_future()

    async def follow():
        followed.append(True)

    window.start(before, follow, lambda exc: forgotten.append(("before", exc)))
    window.start(bad, follow, lambda exc: forgotten.append(("bad", exc)))
    window.start(after, follow, lambda exc: forgotten.append(("after", exc)))
    after.set_result([])  # acknowledged first, but it follows a send that fails
    before.set_result([])
    bad.set_exception(ConnectionError("broker away"))
    await asyncio.sleep(0.01)
    assert followed == [True]  # the send before the failure followed up
    assert [(w, type(e).__name__) for w, e in forgotten] == [("bad", "ConnectionError"), ("after", "SendFailed")]
    assert isinstance(forgotten[1][1].__cause__, ConnectionError)  # the cause is said
    with pytest.raises(ConnectionError, match="broker away"):
        await window.settle(3)  # within size, but a finished failure is raised at once (the one before it passed)
    with pytest.raises(SendFailed):
        await window.settle()
    assert len(window) == 0


def test_a_window_holds_at_least_one_send():
    with pytest.raises(ValueError, match="at least one"):
        SendWindow(0)


async def test_several_callers_waiting_for_the_same_send_each_go_on_once_it_is_acknowledged():
    """The features' step, their release timer and a hand-over can all wait for the
    window at once: each must go on when the send they wait for is acknowledged (one of
    them takes it off), and a failure is raised once, not lost and not twice."""
    loop = asyncio.get_running_loop()
    window = SendWindow(1)
    first, second = loop.create_future(), loop.create_future()
    forgotten: list[str] = []

    async def nothing():
        return None

    window.start(first, nothing, lambda exc: forgotten.append("first"))
    waiters = [asyncio.ensure_future(window.settle(window.size - 1)) for _ in range(3)]
    await asyncio.sleep(0.01)
    assert not any(w.done() for w in waiters)
    first.set_result([])
    results = await asyncio.wait_for(asyncio.gather(*waiters, return_exceptions=True), 1)
    assert results == [None, None, None] and len(window) == 0

    window.start(second, nothing, lambda exc: forgotten.append("second"))
    waiters = [asyncio.ensure_future(window.settle()) for _ in range(3)]
    await asyncio.sleep(0.01)
    second.set_exception(ConnectionError("broker away"))
    results = await asyncio.wait_for(asyncio.gather(*waiters, return_exceptions=True), 1)
    assert sum(isinstance(r, ConnectionError) for r in results) == 1 and results.count(None) == 2
    assert forgotten == ["second"] and len(window) == 0


class _Engine:
    """What StepSender needs of the features engine: each step finishes its token's
    message and writes state tagged with it."""

    def __init__(self) -> None:
        self.settled: list[str] = []
        self.pending: list[str] = []
        self.sealed: list[list[str]] = []
        self.durable: list[str] = []

    def step(self, token: str) -> list[str]:
        self.settled.append(token)
        self.pending.append(token)
        return [f"row of {token}"]

    def take_settled(self) -> list[str]:
        out, self.settled = self.settled, []
        return out

    def seal(self) -> int:
        self.sealed.append(self.pending)
        self.pending = []
        return len(self.sealed)

    def commit(self, seal: int) -> None:
        self.durable = [t for writes in self.sealed[:seal] for t in writes]


async def test_a_step_waiting_for_room_does_not_take_what_a_later_step_finished():
    """Three steps from three tasks (a batch, another batch, the release timer) with room
    for one send: the waiting steps compute in turn, so each message is acknowledged and
    each state made durable only once Kafka acknowledged the rows computed from it. (When
    the timer computed while a batch waited for room, that batch took the timer's message
    and state as its own, and acknowledged both before the timer's rows were.)"""
    loop = asyncio.get_running_loop()
    engine = _Engine()
    sent: list[tuple[list[str], asyncio.Future]] = []
    acked: list[str] = []

    async def enqueue(outs):
        if outs and outs[0] == "state":
            return asyncio.sleep(0)
        sent.append((outs, loop.create_future()))
        return sent[-1][1]

    async def ack(token):
        acked.append(token)

    steps = StepSender(engine, enqueue, outs=list, changelog=lambda: ["state"], ack=ack,
                       forget=lambda done: None, stop=lambda exc, what, first: None, size=1)
    await steps.run(engine.step, "a")
    later = [asyncio.ensure_future(steps.run(engine.step, t)) for t in ("b", "c")]
    await asyncio.sleep(0.01)
    assert [outs for outs, _ in sent] == [["row of a"]]  # no room: b and c wait, uncomputed
    for i, token in enumerate("abc"):
        sent[i][1].set_result([(0, i)])
        await asyncio.sleep(0.01)
        assert acked == list("abc"[: i + 1]) and engine.durable == acked  # nothing ahead of its rows
        assert [outs for outs, _ in sent] == [[f"row of {t}"] for t in "abc"[: min(i + 2, 3)]]
    await asyncio.gather(*later)
    await steps.settle()


async def test_a_step_that_raises_stops_the_steps_after_it():
    engine = _Engine()
    stops: list[tuple[str, str, bool]] = []

    async def enqueue(outs):
        return asyncio.sleep(0, [])

    def boom(token):
        raise RuntimeError("defect")

    steps = StepSender(engine, enqueue, outs=list, changelog=list, ack=lambda t: asyncio.sleep(0),
                       forget=lambda done: None, stop=lambda exc, what, first: stops.append((type(exc).__name__, what, first)),
                       size=2)
    with pytest.raises(RuntimeError, match="defect"):
        await steps.run(boom, "a")
    await steps.run(engine.step, "b")  # nothing runs after the failure
    assert stops == [("RuntimeError", "a features step failed", True)] and engine.settled == []
