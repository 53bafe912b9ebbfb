"""The gate's raw-topic consumer (``stream.intake``) on the real broker: every message
handed over in partition order, offsets committed only after the batch was handled,
a failed send read again, partitions moving between two workers without a gap, and an
upgraded worker starting from the offsets its Faust group had committed."""

from __future__ import annotations

import asyncio
import logging
import time
import uuid

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from stream.intake import GateIntake, adopt_offsets
from voltrisk.settings import KafkaClientSettings, WorkerSettings


async def _produce(bootstrap: str, topic: str, n: int) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    await producer.start()
    try:
        futures = [await producer.send(topic, f"m-{i}".encode(), key=f"k-{i % 17}".encode()) for i in range(n)]
        await asyncio.gather(*futures)
    finally:
        await producer.stop()


async def _committed_and_ends(bootstrap: str, group: str, topic: str, partitions: int) -> tuple[dict, dict]:
    tps = [TopicPartition(topic, p) for p in range(partitions)]
    c = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False)
    await c.start()
    try:
        c.assign(tps)
        committed = {tp.partition: await c.committed(tp) for tp in tps}
        ends = {tp.partition: o for tp, o in (await c.end_offsets(tps)).items()}
    finally:
        await c.stop()
    return committed, ends


class Recorder:
    """A gate stand-in: remembers each (partition, offset) handed over, optionally
    failing its first ``fail`` calls the way a send to an absent broker fails."""

    def __init__(self, fail: int = 0) -> None:
        self.seen: list[tuple[int, int, bytes]] = []
        self.calls = 0
        self.fail = fail

    async def __call__(self, topic: str, raw: list) -> None:
        self.calls += 1
        if self.calls <= self.fail:
            raise ConnectionError("simulated send failure")
        self.seen.extend((partition, offset, value) for _key, value, _headers, partition, offset in raw)


async def _until(predicate, timeout_s: float, what: str) -> None:
    for _ in range(int(timeout_s / 0.1)):
        if predicate():
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"timed out after {timeout_s}s waiting for {what}")


def _settings(tmp_path, app_id: str, bootstrap: str, **kw) -> tuple[WorkerSettings, KafkaClientSettings]:
    return (WorkerSettings(home=tmp_path, worker_app_id=app_id, worker_session_timeout_s=6.0, **kw),
            KafkaClientSettings(kafka_bootstrap=bootstrap))


def test_every_message_is_handed_over_once_in_order_and_committed_after(kafka_bootstrap, make_topics, tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="voltrisk.worker")
    (topic,) = make_topics([f"intake-a-{uuid.uuid4().hex[:6]}"], partitions=3)
    w, k = _settings(tmp_path, f"it-{uuid.uuid4().hex[:6]}", kafka_bootstrap, take_batch=400)

    async def go():
        await _produce(kafka_bootstrap, topic, 3_000)
        rec = Recorder()
        intake = GateIntake(w, k, [topic], rec)
        await intake.start()
        assert intake.consumer._fetch_max_wait_ms == k.kafka_fetch_max_wait_ms
        await _until(lambda: len(rec.seen) >= 3_000, 60, "3,000 messages")
        await intake.stop()
        return rec, await _committed_and_ends(kafka_bootstrap, w.gate_group, topic, 3)

    rec, (committed, ends) = asyncio.run(go())
    assert len(rec.seen) == 3_000 and len({(p, o) for p, o, _ in rec.seen}) == 3_000
    for p in range(3):
        offsets = [o for q, o, _ in rec.seen if q == p]
        assert offsets == list(range(ends[p]))  # the partition's messages, each once, in order
    assert committed == ends  # stopping commits what was handled
    assert max(rec.calls, 1) >= 3_000 // 400  # handed over in batches of at most take_batch
    resumed = sorted(r.getMessage() for r in caplog.records if "resumed from offset" in r.getMessage())
    assert resumed == [f"gate {topic}[{p}]: resumed from offset 0 (no committed offset: the earliest retained)"
                       for p in range(3)]


class Timed(Recorder):
    """A recorder that also notes when each fetch was handed over."""

    def __init__(self) -> None:
        super().__init__()
        self.at: list[float] = []

    async def __call__(self, topic: str, raw: list) -> None:
        self.at.append(time.monotonic())
        await super().__call__(topic, raw)


def test_live_the_gate_fetches_at_most_once_a_gather_window_and_a_backlog_at_once(kafka_bootstrap, make_topics, tmp_path):
    """A trickle (one message every 2 ms, the worker not behind) is fetched at most once
    every ``gate_gather_ms``, each fetch carrying what came meanwhile; a backlog of more
    than ``take_batch`` is fetched without waiting."""
    (topic,) = make_topics([f"intake-g-{uuid.uuid4().hex[:6]}"], partitions=3)
    w, k = _settings(tmp_path, f"it-{uuid.uuid4().hex[:6]}", kafka_bootstrap, gate_gather_ms=100, take_batch=100)

    async def go():
        rec = Timed()
        intake = GateIntake(w, k, [topic], rec)
        await intake.start()
        producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap, acks="all", linger_ms=0)
        await producer.start()
        try:
            await (await producer.send(topic, b"first", key=b"k"))
            await _until(lambda: len(rec.seen) >= 1, 60, "the first message (the group has formed)")
            live_from = len(rec.at)
            t0 = time.monotonic()
            for i in range(500):  # ~1 s of a live trickle
                await producer.send(topic, f"live-{i}".encode(), key=f"k-{i % 17}".encode())
                await asyncio.sleep(0.002)
            await producer.flush()
            live_s = time.monotonic() - t0
            await _until(lambda: len(rec.seen) >= 501, 60, "the trickle")
            await asyncio.sleep(0.3)  # the last live fetch's window
            backlog_from = len(rec.at)
            await _produce(kafka_bootstrap, topic, 3_000)  # 30 take_batches at once
            await _until(lambda: len(rec.seen) >= 3_501, 60, "the backlog")
        finally:
            await producer.stop()
            await intake.stop()
        return rec, rec.at[live_from:backlog_from], rec.at[backlog_from:], live_s

    rec, live, backlog, live_s = asyncio.run(go())
    assert sorted(v for _p, _o, v in rec.seen if v.startswith(b"live-")) == sorted(f"live-{i}".encode() for i in range(500))
    gaps = [b - a for a, b in zip(live, live[1:])]
    assert gaps and min(gaps) >= 0.09, f"live fetches closer than the 100 ms window: {min(gaps):.3f} s"
    assert len(live) <= live_s / 0.1 + 3  # ~one fetch a window, not one per message
    backlog_gaps = sorted(b - a for a, b in zip(backlog, backlog[1:]))
    assert len(backlog) >= 20 and backlog_gaps[len(backlog_gaps) // 2] < 0.05, "a backlog is not paced"


def test_a_failed_batch_is_read_again_and_the_log_says_from_where(kafka_bootstrap, make_topics, tmp_path, caplog):
    (topic,) = make_topics([f"intake-b-{uuid.uuid4().hex[:6]}"], partitions=2)
    w, k = _settings(tmp_path, f"it-{uuid.uuid4().hex[:6]}", kafka_bootstrap)
    caplog.set_level(logging.INFO, logger="voltrisk.worker")

    async def go():
        await _produce(kafka_bootstrap, topic, 500)
        rec = Recorder(fail=2)
        intake = GateIntake(w, k, [topic], rec)
        await intake.start()
        await _until(lambda: len({(p, o) for p, o, _ in rec.seen}) >= 500, 60, "500 messages after two failed sends")
        await intake.stop()
        return rec, await _committed_and_ends(kafka_bootstrap, w.gate_group, topic, 2)

    rec, (committed, ends) = asyncio.run(go())
    assert {(p, o) for p, o, _ in rec.seen} == {(p, o) for p in range(2) for o in range(ends[p])}
    assert committed == ends
    retried = [r.getMessage() for r in caplog.records if "re-reading them from offsets" in r.getMessage()]
    assert len(retried) == 2 and "simulated send failure" in retried[0]
    assert f"{topic}[" in retried[0]


def test_partitions_move_to_a_second_worker_without_a_gap(kafka_bootstrap, make_topics, tmp_path):
    (topic,) = make_topics([f"intake-c-{uuid.uuid4().hex[:6]}"], partitions=4)
    app_id = f"it-{uuid.uuid4().hex[:6]}"
    wa, k = _settings(tmp_path / "a", app_id, kafka_bootstrap, take_batch=200)
    wb, _ = _settings(tmp_path / "b", app_id, kafka_bootstrap, take_batch=200)

    async def go():
        a, b = Recorder(), Recorder()
        first = GateIntake(wa, k, [topic], a)
        await first.start()
        await _produce(kafka_bootstrap, topic, 2_000)
        await _until(lambda: len(a.seen) >= 2_000, 60, "the first worker's share")
        second = GateIntake(wb, k, [topic], b)
        await second.start()
        await _until(lambda: second.consumer.assignment(), 60, "the second worker's partitions")
        await _produce(kafka_bootstrap, topic, 2_000)
        await _until(lambda: len({(p, o) for p, o, _ in a.seen + b.seen}) >= 4_000, 60, "4,000 messages")
        await second.stop()
        await first.stop()
        return a, b, await _committed_and_ends(kafka_bootstrap, wa.gate_group, topic, 4)

    a, b, (committed, ends) = asyncio.run(go())
    both = [(p, o) for p, o, _ in a.seen + b.seen]
    assert set(both) == {(p, o) for p in range(4) for o in range(ends[p])}
    assert len(both) == len(set(both))  # handed over at a committed offset: nothing read twice
    assert b.seen, "the second worker took partitions over"
    assert committed == ends


def test_a_new_gate_group_adopts_the_offsets_of_the_workers_faust_group(kafka_bootstrap, make_topics, tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="voltrisk.worker")
    (topic,) = make_topics([f"intake-d-{uuid.uuid4().hex[:6]}"], partitions=2)
    w, k = _settings(tmp_path, f"it-{uuid.uuid4().hex[:6]}", kafka_bootstrap)

    async def go():
        await _produce(kafka_bootstrap, topic, 300)
        # what a worker of the previous version committed under its Faust group
        _, ends = await _committed_and_ends(kafka_bootstrap, w.worker_app_id, topic, 2)
        old = AIOKafkaConsumer(bootstrap_servers=kafka_bootstrap, group_id=w.worker_app_id, enable_auto_commit=False)
        await old.start()
        tps = [TopicPartition(topic, p) for p in range(2)]
        old.assign(tps)
        await old.commit({tp: ends[tp.partition] - 10 for tp in tps})
        await old.stop()
        adopted = await adopt_offsets(k, w.gate_group, w.worker_app_id, [topic])
        again = await adopt_offsets(k, w.gate_group, w.worker_app_id, [topic])
        rec = Recorder()
        intake = GateIntake(w, k, [topic], rec)
        await intake.start()
        await _until(lambda: len(rec.seen) >= 20, 60, "the last 10 messages of each partition")
        await asyncio.sleep(1.0)
        await intake.stop()
        return adopted, again, rec, ends

    adopted, again, rec, ends = asyncio.run(go())
    assert (adopted, again) == (2, 0)  # adopted once; a group with offsets of its own keeps them
    assert sorted((p, o) for p, o, _ in rec.seen) == sorted((p, o) for p in range(2) for o in range(ends[p] - 10, ends[p]))
    resumed = sorted(r.getMessage() for r in caplog.records if "resumed from offset" in r.getMessage())
    assert resumed == [f"gate {topic}[{p}]: resumed from offset {ends[p] - 10} (the group's committed offset)"
                       for p in range(2)]


class Pipelined:
    """A gate stand-in that returns a completion, as the worker's does: the batch is
    decided at once, its completion (the acknowledgements, the hand-off) takes
    ``delay_s``; the completion of call ``fail_at`` fails once."""

    def __init__(self, intake_ref: list, delay_s: float = 0.03, fail_at: int = 0) -> None:
        self.intake_ref, self.delay_s, self.fail_at = intake_ref, delay_s, fail_at
        self.calls = 0
        self.decided: list[tuple[int, int]] = []
        self.completed: list[tuple[int, int]] = []
        self.most_in_flight = 0
        self.committed_ahead = []  # offsets committed before their batch completed (must stay empty)
        self._open = 0

    async def __call__(self, topic: str, raw: list):
        self.calls += 1
        call = self.calls
        batch = [(partition, offset) for _k, _v, _h, partition, offset in raw]
        self.decided.extend(batch)
        self._open += 1
        self.most_in_flight = max(self.most_in_flight, self._open)

        async def complete() -> None:
            try:
                await asyncio.sleep(self.delay_s)
                if call == self.fail_at:
                    raise ConnectionError("simulated acknowledgement failure")
                pending = {tp.partition: o for tp, o in self.intake_ref[0]._pending.items()}
                self.committed_ahead += [(p, o) for p, o in batch if pending.get(p, -1) > o]
                self.completed.extend(batch)
            finally:
                self._open -= 1

        return complete()


def test_batches_are_decided_while_earlier_ones_complete_in_order_and_a_failed_one_is_read_again(
        kafka_bootstrap, make_topics, tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="voltrisk.worker")
    (topic,) = make_topics([f"intake-e-{uuid.uuid4().hex[:6]}"], partitions=3)
    w, k = _settings(tmp_path, f"it-{uuid.uuid4().hex[:6]}", kafka_bootstrap, take_batch=50)

    async def go():
        await _produce(kafka_bootstrap, topic, 1_500)
        ref: list = []
        gate = Pipelined(ref, fail_at=5)
        intake = GateIntake(w, k, [topic], gate)
        ref.append(intake)
        await intake.start()
        await _until(lambda: len(set(gate.completed)) >= 1_500, 60, "1,500 messages completed")
        await intake.stop()
        return gate, await _committed_and_ends(kafka_bootstrap, w.gate_group, topic, 3)

    gate, (committed, ends) = asyncio.run(go())
    assert gate.most_in_flight >= 2, "the next batch was decided while an earlier one completed"
    assert set(gate.completed) == {(p, o) for p in range(3) for o in range(ends[p])}
    assert not gate.committed_ahead
    for p in range(3):  # per partition: completed in offset order without a gap, starting over once at most
        offsets = [o for q, o in gate.completed if q == p]
        restarts = [i for i in range(1, len(offsets)) if offsets[i] != offsets[i - 1] + 1]
        assert len(restarts) <= 1 and offsets[0] == 0 and offsets[-1] == ends[p] - 1
        for i in restarts:  # read again from a completed offset or the next one: nothing skipped
            assert offsets[i] <= offsets[i - 1] + 1
    # the failed batch and the ones decided after it were decided twice; everything else once
    assert len(gate.decided) > 1_500
    assert committed == ends
    retried = [r.getMessage() for r in caplog.records if "re-reading them from offsets" in r.getMessage()]
    assert len(retried) == 1 and "simulated acknowledgement failure" in retried[0]


class _Consumer:
    """What the intake asks of aiokafka's consumer around a rebalance, with aiokafka's
    rule that a commit naming an unassigned partition is refused (IllegalStateError).
    The interleaving below (a fetch in hand while the rebalance hands its partitions
    over, before the new assignment is known) cannot be forced on the real broker."""

    def __init__(self, assigned: set) -> None:
        self.assigned, self.commits, self.seeks = set(assigned), [], []

    def assignment(self) -> set:
        return set(self.assigned)

    def highwater(self, tp):
        return None

    async def committed(self, tp):
        return 0

    async def commit(self, offsets) -> None:
        from aiokafka.errors import IllegalStateError

        for tp in offsets:
            if tp not in self.assigned:
                raise IllegalStateError(f"Partition {tp} is not assigned")
        self.commits.append(dict(offsets))

    def seek(self, tp, offset) -> None:
        if tp not in self.assigned:
            raise AssertionError(f"seek of unassigned {tp}")
        self.seeks.append((tp, offset))


async def test_a_fetch_in_hand_at_a_hand_over_is_dropped_and_commits_go_on(tmp_path):
    """A fetch waiting for room among the batches in flight when the group hands its
    partitions over: deciding it after the hand-over would send what the partitions' next
    owner reads again, and leave an offset of a partition gone elsewhere that made every
    later commit fail. It is dropped; the offsets of partitions that left are not committed."""
    import types

    from stream.intake import _InFlight

    p, q = TopicPartition("raw", 0), TopicPartition("raw", 1)
    decided = []

    async def handle(topic, raw):
        decided.extend((m[3], m[4]) for m in raw)

        async def done():
            await asyncio.sleep(0.01)
        return done()

    w, k = _settings(tmp_path, "it-fake", "127.0.0.1:1", take_batch=10)
    intake = GateIntake(w, k, ["raw"], handle, commit_interval_s=0.0)
    intake.consumer = _Consumer({p, q})
    intake._resumed = {p, q}
    msg = lambda tp, o: types.SimpleNamespace(key=b"k", value=b"v", headers=[], partition=tp.partition, offset=o)  # noqa: E731
    for i in range(3):  # three batches in flight: the next fetch waits for room
        intake._in_flight.append(_InFlight(asyncio.ensure_future(asyncio.sleep(0.02)), {p: 90 + i}, {p: 91 + i}))
    fetched_at = intake._handovers
    waiting = asyncio.ensure_future(intake._process({p: [msg(p, 100), msg(p, 101)], q: [msg(q, 50)]}, fetched_at))
    await asyncio.sleep(0)
    await intake.hand_over({p, q})  # the consumer's assignment still lists both until the rebalance ends
    assert intake.consumer.commits == [{p: 93}]
    await waiting
    assert decided == []  # dropped: p's next owner reads it from 93
    intake.consumer.assigned = {q}
    intake.assigned({q})
    intake._pending[p] = 102  # an offset of a partition gone elsewhere, however it got there
    intake._pending[q] = 51
    await intake._commit()
    assert intake.consumer.commits[-1] == {q: 51} and intake._pending == {}  # q committed, p not (nor kept)
    told = []
    intake.on_commit = told.append
    real_commit = intake.consumer.commit

    async def refused(offsets):
        from aiokafka.errors import CommitFailedError

        raise CommitFailedError("rebalanced")

    intake.consumer.commit = refused
    intake._pending[q] = 51
    await intake._commit()
    assert told == []  # a commit the group refused is not reported as done (the gate's sweep relies on it)
    intake.consumer.commit = real_commit
    await intake._process({q: [msg(q, 51)]}, intake._handovers)  # a fetch after the hand-over is decided
    assert decided == [(1, 51)]
    await asyncio.sleep(0.05)
    intake._reap()
    await intake._commit()
    assert intake.consumer.commits[-1] == {q: 52} and told == [{q: 52}]


async def test_a_fetch_read_after_the_rebalance_but_dropped_is_read_again_where_it_stays(tmp_path):
    """``getmany`` was waiting when the group rebalanced: the rebalance reset the
    positions to the committed offsets and the fetcher read from there before getmany
    returned, so the fetch counts as made before the hand-over and is dropped. The
    consumer's position is already past those records: without a seek back they were
    skipped until the next rebalance (a second worker joining stalled partitions for
    good in tests/stream/test_stream_intake.py's two-worker test)."""
    import types

    p, q = TopicPartition("raw", 0), TopicPartition("raw", 1)
    decided = []

    async def handle(topic, raw):
        decided.extend((m[3], m[4]) for m in raw)

    w, k = _settings(tmp_path, "it-fake", "127.0.0.1:1", take_batch=10)
    intake = GateIntake(w, k, ["raw"], handle, commit_interval_s=0.0)
    intake.consumer = _Consumer({p, q})
    intake._resumed = {p, q}
    msg = lambda tp, o: types.SimpleNamespace(key=b"k", value=b"v", headers=[], partition=tp.partition, offset=o)  # noqa: E731
    fetched_at = intake._handovers
    await intake.hand_over({p, q})  # while getmany waited
    intake.consumer.assigned = {p}  # q went to the other worker
    intake.assigned({p})
    await intake._process({p: [msg(p, 40), msg(p, 41)], q: [msg(q, 7)]}, fetched_at)
    assert decided == []  # dropped: q's new owner reads it
    assert intake.consumer.seeks == [(p, 40)]  # p stays here: read again from 40, not skipped
