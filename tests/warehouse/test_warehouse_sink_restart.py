"""The sink on the real warehouse (chDB) around a restart and a rebalance: rows an
interrupted insert left out are stored when the messages are read again, and nothing
else twice (the rollup views count every row inserted, so a duplicate there is never
collapsed); messages read again after a rebalance while a batch was buffered are
inserted once; a message the sink cannot shape is stored in the dlq table before the
rows that would let a restart skip it."""

from __future__ import annotations

import asyncio
import time
from types import SimpleNamespace

import msgspec
import pytest
from aiokafka import TopicPartition

from contracts.examples import RAW_EXAMPLES
from stream import topics as T
from warehouse_helpers import migrated_warehouse
from warehouse.sink import INSERT_SETTINGS, ROUTES, Sink

pytestmark = pytest.mark.integration

TOPIC = T.clean_name(T.DYNAMICS.name)
DAY_MS = 86_400_000


@pytest.fixture
def client(tmp_path):
    with migrated_warehouse(tmp_path / "wh") as c:
        yield c


def _messages(tag: str, partition: int, first_offset: int, n: int, day0_ms: int) -> list:
    """``n`` messages of 4 records each, half of each message's records on one day and half on the next."""
    ex = RAW_EXAMPLES[T.DYNAMICS.name].record
    out = []
    for i in range(n):
        recs = [msgspec.structs.replace(ex, event_id=f"{tag}-{i}-{j}", ts_ms=day0_ms + (DAY_MS if j % 2 else 0) + i * 10 + j)
                for j in range(4)]
        out.append(SimpleNamespace(key=b"veh-" + tag.encode(), value=msgspec.json.encode(recs), partition=partition,
                                   offset=first_offset + i, headers=[("carmaker", b"oem-a")], topic=TOPIC))
    return out


def _counts(client, tag: str) -> tuple[int, int]:
    return client.query("SELECT count(), uniqExact(event_id) FROM telemetry_dynamics WHERE event_id LIKE {t:String}",
                        parameters={"t": f"{tag}-%"}).result_rows[0]


def _sink(client, consumer=None) -> Sink:
    return Sink(client, lambda: consumer, batch_rows=10_000, batch_ms=50)


def test_rows_an_interrupted_insert_left_out_are_stored_on_the_restart_and_nothing_twice(client):
    day0 = (int(time.time() * 1000) // DAY_MS - 2) * DAY_MS
    msgs = _messages("cut", 4, 100, 30, day0)
    # an earlier run's insert of the batch was written for the second day only, then the process died
    route = ROUTES[TOPIC]
    cols = route.columnar.new()
    for m in msgs:
        recs = msgspec.json.decode(m.value, type=list[route.columnar.record_type])
        route.columnar.add(cols, SimpleNamespace(**{**vars(m), "value": msgspec.json.encode(
            [r for r in recs if r.ts_ms >= day0 + DAY_MS])}), 1)
    client.insert_arrow(route.table, route.columnar.table(cols), settings=dict(INSERT_SETTINGS))
    assert _counts(client, "cut") == (60, 60)

    sink = _sink(client)  # the restart reads the batch again from the committed offset
    asyncio.run(sink._write(TOPIC, [(4, msgs)]))
    assert _counts(client, "cut") == (120, 120)  # every record once, without FINAL
    assert sink.stats.skipped_already_stored == 0 and sink.stats.rows == 60
    asyncio.run(sink._write(TOPIC, [(4, msgs + _messages("cut2", 4, 130, 2, day0))]))  # and again: nothing twice
    assert _counts(client, "cut") == (120, 120) and _counts(client, "cut2") == (8, 8)
    assert sink.stats.skipped_already_stored == 30


class _Consumer:
    """aiokafka's consumer as the sink sees it through a rebalance: after one, the
    partition is read again from its committed offset (aiokafka resets the positions)."""

    def __init__(self, msgs: list, tp: TopicPartition, listener_box: list) -> None:
        self.msgs, self.tp, self.box = msgs, tp, listener_box
        self.position, self.committed = 0, 0
        self.polls = 0
        self.commits: list[int] = []

    def subscribe(self, topics, listener):
        self.box.append(listener)

    async def start(self):
        pass

    async def stop(self):
        pass

    def assignment(self):
        return {self.tp}

    async def getmany(self, timeout_ms, max_records):
        self.polls += 1
        if self.polls == 3:  # a rebalance while the first 20 are buffered: read again from the committed offset
            await self.box[0].on_partitions_revoked({self.tp})
            await self.box[0].on_partitions_assigned({self.tp})
            self.position = self.committed
        chunk = self.msgs[self.position:self.position + 10]
        self.position += len(chunk)
        if not chunk:
            await asyncio.sleep(timeout_ms / 1000)
        return {self.tp: chunk} if chunk else {}

    async def commit(self, offsets):
        self.committed = offsets[self.tp] - self.msgs[0].offset
        self.commits.append(offsets[self.tp])


def test_messages_read_again_after_a_rebalance_are_inserted_once(client):
    day0 = (int(time.time() * 1000) // DAY_MS - 2) * DAY_MS
    msgs = _messages("reb", 1, 0, 40, day0)
    tp = TopicPartition(TOPIC, 1)
    consumer = _Consumer(msgs, tp, [])
    sink = Sink(client, lambda: consumer, batch_rows=35 * 4, batch_ms=10_000)

    async def go():
        task = asyncio.ensure_future(sink.run())
        for _ in range(200):
            if consumer.commits and consumer.commits[-1] == 40:
                break
            await asyncio.sleep(0.05)
        sink.stop()
        await asyncio.wait_for(task, 30)

    asyncio.run(go())
    assert consumer.commits[-1] == 40
    assert _counts(client, "reb") == (160, 160)  # not 240: the first 20 were buffered twice before


def test_a_message_the_sink_cannot_shape_is_stored_before_the_rows_that_skip_it(client, monkeypatch):
    day0 = (int(time.time() * 1000) // DAY_MS - 2) * DAY_MS
    msgs = _messages("rej", 2, 500, 5, day0)
    msgs[2].value = b"[{not json"
    order: list[str] = []
    sink = _sink(client)
    real = sink._insert

    def insert(table, body, token):
        order.append(table)
        return real(table, body, token)

    monkeypatch.setattr(sink, "_insert", insert)
    asyncio.run(sink._write(TOPIC, [(2, msgs)]))
    assert order == ["dlq", "telemetry_dynamics"]
    rejected = client.query("SELECT source_offset, reason FROM dlq WHERE source_topic = {t:String} AND source_partition = 2",
                            parameters={"t": TOPIC}).result_rows
    assert rejected == [(502, "sink_rejected")] and _counts(client, "rej") == (16, 16)
