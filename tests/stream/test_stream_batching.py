"""take_batches under Faust's test context: every event reaches the agent once, in
order, in batches of at most ``max_``, and is acknowledged only after its batch."""

from __future__ import annotations

import asyncio

import faust

from stream.batching import take_batches


async def test_events_arrive_once_in_order_in_bounded_batches_and_are_acked_after_their_batch(tmp_path):
    # the test context feeds the agent directly: the broker is never contacted
    app = faust.App("batching-test", broker="kafka://127.0.0.1:9", datadir=str(tmp_path), web_enabled=False)
    topic = app.topic("batching-test", key_type=bytes, value_type=bytes)
    batches: list[list[bytes]] = []
    acked_while_handled: list[bool] = []

    @app.agent(topic)
    async def agent(stream):
        async for events in take_batches(stream, 3, 0.01):
            batches.append([e.value for e in events])
            acked_while_handled.extend(e.message.acked for e in events)
            await asyncio.sleep(0.02)  # the agent works: later events keep arriving meanwhile

    app.finalize()
    app.flow_control.resume()
    async with agent.test_context() as ctx:
        events = [await ctx.put(f"v{i}".encode(), key=b"k", wait=False) for i in range(10)]
        for _ in range(200):
            if sum(map(len, batches)) >= 10:
                break
            await asyncio.sleep(0.01)
        await asyncio.sleep(0.05)  # the agent asked for the next batch: the last one is acked
        assert [v for b in batches for v in b] == [f"v{i}".encode() for i in range(10)]
        assert all(1 <= len(b) <= 3 for b in batches) and len(batches) >= 4
        assert not any(acked_while_handled)
        assert all(e.message.acked for e in events)
