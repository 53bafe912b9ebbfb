"""The features' own consumer: the clean topics (and ``features.redrive.v1``) read with
aiokafka, not through a Faust agent.

Faust's per-message path costs ~150 µs of CPU before an agent's body runs (bench/RESULTS.md,
"Faust's own per-message cost"), some 15 µs a record at 10 records a message: more than
the features step itself (~7 µs a record, ``bench/bench_features.py``). And the copies
of the messages the gate handed over (``stream.handoff``) went through that path only to
be acknowledged. The features keep no state that Faust manages (their store and changelog
are their own), so they need none of its machinery, as the gate did not
(``stream.intake``).

Acknowledgements are the features' as before: a message is acknowledged when every one of
its records was processed and the step's rows and state were sent (``StepSender``), which
for a record in the reorder window is steps later. So they come out of order; per
partition the group's committed offset is the first message fetched and not yet
acknowledged (``_Acks``), committed at most every ``commit_interval_s`` and always before
partitions are handed over or the worker stops. At-least-once: what was not acknowledged
is read again after a crash and the vehicles' state skips what it already took.

The group is ``WorkerSettings.features_group`` (the worker's app id + ``-features``).
It assigns partitions by range (``ASSIGNORS``), which gives one worker partition ``p`` of
every input topic (they all have the telemetry partition count), as Faust's
co-partitioning did: a vehicle's dynamics, states, alarms and crashes meet in one worker.
aiokafka's default, round robin, deals the partitions of all topics out in turn and
would split them. On its first start
the group adopts the offsets the worker's Faust group committed on these topics, so an
upgraded deployment resumes where it was.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable, Sequence

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.coordinator.assignors.range import RangePartitionAssignor
from aiokafka.errors import CommitFailedError, ConsumerStoppedError, IllegalStateError, KafkaError
from mode import Service

from stream.intake import _fmt_offsets, _fmt_partitions, seek_back, start_group_consumer, unread
from voltrisk.settings import KafkaClientSettings, WorkerSettings

log = logging.getLogger("voltrisk.worker")

ASSIGNORS = (RangePartitionAssignor,)  # co-partitioned: partition p of every input topic to one member


class _Acks:
    """Per partition, the messages fetched and not yet acknowledged, in offset order:
    the group may commit up to the first of them (or past the last fetched)."""

    def __init__(self) -> None:
        self._open: dict[TopicPartition, deque[int]] = {}
        self._acked: dict[TopicPartition, set[int]] = {}
        self._next: dict[TopicPartition, int] = {}  # one past the last fetched offset
        self._committed: dict[TopicPartition, int] = {}

    def fetched(self, tp: TopicPartition, offsets: Sequence[int]) -> None:
        self._open.setdefault(tp, deque()).extend(offsets)
        self._next[tp] = offsets[-1] + 1

    def ack(self, tp: TopicPartition, offset: int) -> None:
        opened = self._open.get(tp)
        if not opened:  # the partition was handed over since (its new owner reads it again)
            return
        if opened[0] == offset:
            opened.popleft()
            acked = self._acked.get(tp)
            while acked and opened and opened[0] in acked:
                acked.discard(opened.popleft())
        else:
            self._acked.setdefault(tp, set()).add(offset)

    def committable(self, only: set[TopicPartition] | None = None) -> dict[TopicPartition, int]:
        """The offsets to commit that moved since the last commit."""
        out = {}
        for tp, nxt in self._next.items():
            if only is not None and tp not in only:
                continue
            opened = self._open.get(tp)
            offset = opened[0] if opened else nxt
            if self._committed.get(tp) != offset:
                out[tp] = offset
        return out

    def committed(self, offsets: dict[TopicPartition, int]) -> None:
        self._committed.update(offsets)

    def unacked(self) -> int:
        return sum(len(q) for q in self._open.values())

    def forget(self, keep: Callable[[TopicPartition], bool]) -> None:
        for d in (self._open, self._acked, self._next, self._committed):
            for tp in [tp for tp in d if not keep(tp)]:
                del d[tp]


# the agent's side: process fetched records (acknowledging each through ``ack`` when done)
Process = Callable[[list], Awaitable[None]]
Hook = Callable[..., Awaitable[None]]


class FeaturesIntake(Service):
    """Fetch clean messages in batches of up to ``take_batch`` and give them to ``process``;
    ``release`` (before partitions move or the worker stops: finish and send everything
    held) and ``assign`` (partitions given: read their state) are the agent's."""

    def __init__(self, w: WorkerSettings, k: KafkaClientSettings, topics: Sequence[str], process: Process,
                 *, ready: asyncio.Event, release: Hook, assign: Hook, commit_interval_s: float = 1.0,
                 handed_first: Callable[[], Awaitable[None]] | None = None, **kwargs) -> None:
        super().__init__(**kwargs)
        self.w, self.k, self.topics = w, k, list(topics)
        self.process, self.ready, self.release, self.assign = process, ready, release, assign
        self.handed_first = handed_first  # waits until this worker's gate handed over what it sent so far
        self.group = w.features_group
        self.commit_interval_s = commit_interval_s
        self.consumer: AIOKafkaConsumer | None = None
        self.acks = _Acks()
        self._lock = asyncio.Lock()  # one batch at a time; a hand-over waits for it
        self._handovers = 0
        self._last_commit = time.monotonic()
        self.behind = False

    def ack(self, record) -> None:
        """A fetched message is done (its records processed and their rows sent)."""
        self.acks.ack(TopicPartition(record.topic, record.partition), record.offset)

    async def on_start(self) -> None:
        self.consumer = await start_group_consumer(self.w, self.k, self.group, self.topics, self, "features",
                                                   partition_assignment_strategy=ASSIGNORS)

    @Service.task
    async def _run(self) -> None:
        while not self.should_stop:
            if not self.ready.is_set():  # a failed step stops the worker; a take-over reads state
                await self.wait_for_stopped(self.ready)
                continue
            try:
                handovers = self._handovers
                fetched = await self.consumer.getmany(timeout_ms=100, max_records=self.w.take_batch)
                if fetched and not self._behind(fetched):
                    fetched = await self._gather(fetched)
            except ConsumerStoppedError:
                return
            except KafkaError as exc:
                log.warning("features: fetching from %s failed (%s); retrying", ", ".join(self.topics), exc)
                await self.sleep(1.0)
                continue
            if fetched:
                async with self._lock:
                    await self._take(fetched, handovers)
            await self._commit_if_due()

    def _behind(self, fetched: dict) -> bool:
        """Whether a fetch leaves a batch or more unread on its partitions (a backlog)."""
        left = unread(self.consumer, {tp: msgs[-1].offset + 1 for tp, msgs in fetched.items()})
        self.behind = left >= self.w.take_batch
        return self.behind

    async def _gather(self, fetched: dict) -> dict:
        """Live: what arrives within ``take_within_s`` of a fetch joins its batch. Then,
        where this worker's gate hands its messages over (``stream.handoff``), its batches
        in flight complete first: the consumer's fetcher reads ahead, and a copy fetched
        before the gate's hand-over of it would be processed from the topic, with the live
        hold, instead of skipped (15 % of the messages at 5,000/s live without the wait)."""
        await self.sleep(self.w.take_within_s)
        room = self.w.take_batch - sum(len(msgs) for msgs in fetched.values())
        if room > 0:
            for tp, msgs in (await self.consumer.getmany(timeout_ms=0, max_records=room)).items():
                fetched[tp] = fetched[tp] + msgs if tp in fetched else msgs
        if self.handed_first is not None:
            await self.handed_first()
        return fetched

    async def _take(self, fetched: dict, handovers: int) -> None:
        if self.should_stop or not self.ready.is_set():
            self._seek_back({tp: msgs[0].offset for tp, msgs in fetched.items()})
            return
        if handovers != self._handovers:  # fetched before partitions moved (see GateIntake._process)
            again = self._seek_back({tp: msgs[0].offset for tp, msgs in fetched.items()})
            log.info("features: a fetch made before the hand-over of partitions is dropped; their owners read it "
                     "again%s", f" (here from offsets {_fmt_offsets(again)})" if again else "")
            return
        owned = self.consumer.assignment()
        records = []
        for tp, msgs in fetched.items():
            if tp not in owned:
                continue
            self.acks.fetched(tp, [m.offset for m in msgs])
            records.extend(msgs)
        if records:
            await self.process(records)

    def _seek_back(self, first: dict[TopicPartition, int]) -> dict[TopicPartition, int]:
        return seek_back(self.consumer, first)

    async def _commit_if_due(self) -> None:
        if time.monotonic() - self._last_commit >= self.commit_interval_s:
            await self._commit()

    async def _commit(self, only: set[TopicPartition] | None = None) -> None:
        if self.consumer is None:  # the group's first join, still in start_group_consumer: nothing read yet
            return
        owned = self.consumer.assignment()
        offsets = {tp: o for tp, o in self.acks.committable(only).items() if tp in owned}
        self._last_commit = time.monotonic()
        if not offsets:
            return
        try:
            await self.consumer.commit(offsets)
        except (CommitFailedError, IllegalStateError) as exc:  # the group moved on: the new owners re-read these
            log.warning("features: offsets %s not committed (%s); the partitions' new owners re-read from the last "
                        "committed offsets", _fmt_offsets(offsets), exc)
            return
        except KafkaError as exc:  # committed next time
            log.warning("features: committing offsets %s failed (%s); retrying", _fmt_offsets(offsets), exc)
            return
        self.acks.committed(offsets)

    async def hand_over(self, revoked) -> None:
        """Partitions are about to move: the agent finishes and sends what it holds, then
        what was acknowledged is committed."""
        async with self._lock:
            self._handovers += 1
            await self.release()
            await self._commit(set(revoked))
        revoked = set(revoked)
        self.acks.forget(lambda tp: tp not in revoked)
        if revoked:
            log.info("features: handed over %s", _fmt_partitions(revoked))

    async def take_over(self, assigned) -> None:
        assigned = set(assigned)
        self.acks.forget(lambda tp: tp in assigned)
        await self.assign(assigned)
        if assigned:
            log.info("features: assigned %s", _fmt_partitions(assigned))

    async def on_stop(self) -> None:
        if self.consumer is None:
            return
        async with self._lock:  # the batch in hand is finished, what is held sent, and committed first
            try:
                await self.release()
            finally:
                await self._commit()
                await self.consumer.stop()
