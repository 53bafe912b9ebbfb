"""The gate's own consumer: the raw topics read with aiokafka, not through a Faust agent.

A Faust agent pays ~150 µs of CPU per message before its body runs (bench/RESULTS.md,
"Faust's own per-message cost"); on the raw topics, where every message is one
carmaker packet, that was about half of a worker's CPU. The gate keeps no state that
Faust manages (its de-duplication store is its own), so it needs none of Faust's
machinery: a group consumer fetches up to ``take_batch`` messages, the gate decides
them, the outputs are sent (acks=all) and only then are the offsets committed, at
most every ``commit_interval_s`` and always before partitions are handed over or the
worker stops. At-least-once, as with the agent; a re-read offset passes the gate again
and downstream de-duplication makes it effectively once.

Batches are pipelined: a handler may return a completion (an awaitable: wait for
Kafka's acknowledgements, then hand the clean messages to the features) instead of
waiting itself, and the consumer decides the next batch while up to
``MAX_IN_FLIGHT`` completions wait, instead of spending each round trip to the broker
idle. Completions finish in fetch order (each waits for the one before it); a batch's
offsets are committed only after its completion finished; when one fails, the ones
after it are abandoned and every partition is read again from the first offset not
finished (a replay of the same offset passes the gate again).

The group is ``WorkerSettings.gate_group`` (the worker's app id + ``-gate``); on its
first start it adopts the raw-topic offsets the worker's Faust group committed, so an
upgraded deployment resumes where it was instead of re-reading the retention.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.abc import ConsumerRebalanceListener
from aiokafka.errors import CommitFailedError, ConsumerStoppedError, IllegalStateError, KafkaError
from mode import Service

from voltrisk.broker import commit_offsets
from voltrisk.settings import KafkaClientSettings, WorkerSettings

log = logging.getLogger("voltrisk.worker")

# (key, value, headers, partition, offset) of one raw message, as the gate takes it
RawMessage = tuple[bytes | None, bytes | None, list[tuple[str, bytes]], int, int]
# decides one topic's share of a fetch and returns once its outputs are sent, or
# returns a completion to await later (its outputs are on their way)
Handler = Callable[[str, list[RawMessage]], Awaitable[Awaitable | None]]
# told once of what a batch's completions returned, in topic order, after the last of them
Finish = Callable[[list], Awaitable[None]]

MAX_IN_FLIGHT = 3  # batches decided whose completions have not finished yet


class _Abandoned(Exception):
    """A batch's completion did not run: one before it failed."""


@dataclass(slots=True)
class _InFlight:
    task: asyncio.Future
    first: dict[TopicPartition, int]  # the batch's first offset per partition (where to read again)
    done: dict[TopicPartition, int]  # the next offset per partition once it finished


class Handover(ConsumerRebalanceListener):
    """Tells an intake (the gate's, the features') that partitions move: ``hand_over``
    before they go, ``take_over`` once the new assignment is known."""

    def __init__(self, intake) -> None:
        self.intake = intake

    async def on_partitions_revoked(self, revoked) -> None:
        await self.intake.hand_over(revoked)

    async def on_partitions_assigned(self, assigned) -> None:
        await self.intake.take_over(assigned)


async def start_group_consumer(w: WorkerSettings, k: KafkaClientSettings, group: str, topics: Sequence[str],
                               intake, who: str, **extra) -> AIOKafkaConsumer:
    """A started consumer of ``topics`` in ``group`` (offsets committed by the intake, fetches
    of up to ``take_batch`` messages, the worker's session and heartbeat), telling ``intake``
    of partitions moving (``Handover``). On the group's first start it adopts the offsets the
    worker's Faust group committed on these topics, so an upgraded deployment resumes where
    it was (``adopt_offsets``)."""
    for attempt in range(30):  # a broker just started has no group coordinator yet
        try:
            adopted = await adopt_offsets(k, group, w.worker_app_id, topics)
            if adopted:
                log.info("%s: group %s starts from the %d offsets group %s committed", who, group, adopted,
                         w.worker_app_id)
            break
        except KafkaError as exc:
            if attempt == 29:
                log.warning("%s: could not read the committed offsets of groups %s and %s (%s); group %s starts "
                            "from its own offsets or the earliest", who, group, w.worker_app_id, exc, group)
            else:
                await asyncio.sleep(1.0)
    consumer = AIOKafkaConsumer(
        **k.aiokafka_kwargs(), group_id=group, enable_auto_commit=False,
        auto_offset_reset="earliest", max_poll_records=w.take_batch,
        session_timeout_ms=int(w.worker_session_timeout_s * 1000),
        heartbeat_interval_ms=int(w.worker_heartbeat_s * 1000),
        fetch_max_bytes=16 * 1024 * 1024, fetch_max_wait_ms=k.kafka_fetch_max_wait_ms, **extra,
    )
    consumer.subscribe(list(topics), listener=Handover(intake))
    await consumer.start()
    return consumer


def unread(consumer: AIOKafkaConsumer, next_offsets: dict[TopicPartition, int]) -> int:
    """Messages left on the fetched partitions from ``next_offsets`` on (as far as the last
    fetch saw the partitions' ends): a batch's worth or more is a backlog, not live records."""
    left = 0
    for tp, offset in next_offsets.items():
        end = consumer.highwater(tp)
        if end is not None:
            left += max(0, end - offset)
    return left


def seek_back(consumer: AIOKafkaConsumer, first: dict[TopicPartition, int]) -> dict[TopicPartition, int]:
    """Seek the partitions of ``first`` still assigned to ``consumer`` back to its offsets; returns those."""
    owned = consumer.assignment()
    again = {tp: offset for tp, offset in first.items() if tp in owned}
    for tp, offset in again.items():
        consumer.seek(tp, offset)
    return again


class GateIntake(Service):
    """Fetch raw messages, hand each topic's share of a fetch to ``handle`` (which sends
    what the gate decided and returns once Kafka acknowledged it), then commit."""

    def __init__(self, w: WorkerSettings, k: KafkaClientSettings, topics: Sequence[str], handle: Handler,
                 *, commit_interval_s: float = 1.0, retry_max_s: float = 30.0,
                 on_commit: Callable[[dict[TopicPartition, int]], None] | None = None,
                 finish: Finish | None = None, **kwargs) -> None:
        super().__init__(**kwargs)
        self.w, self.k, self.topics, self.handle = w, k, list(topics), handle
        self.finish = finish  # a batch's completions done: what they returned, at once
        self.group = w.gate_group
        self.commit_interval_s, self.retry_max_s = commit_interval_s, retry_max_s
        self.on_commit = on_commit  # told of each commit's offsets
        self.consumer: AIOKafkaConsumer | None = None
        self._lock = asyncio.Lock()  # one batch at a time; a hand-over waits for it
        self._pending: dict[TopicPartition, int] = {}  # processed, not yet committed: next offset
        self._last_commit = time.monotonic()
        self._resumed: set[TopicPartition] = set()
        self._in_flight: deque[_InFlight] = deque()
        self._staged = False  # the fetch in hand is in flight (a failure then reads it again with the rest)
        self._handovers = 0  # hand-overs so far: a fetch made before one is not decided after it
        # the batch being handled left at least a batch unread: a backlog, not live records
        self.behind = False

    async def on_start(self) -> None:
        self.consumer = await start_group_consumer(self.w, self.k, self.group, self.topics, self, "gate")

    @Service.task
    async def _run(self) -> None:
        backoff = 0.5
        gather_s, fetched_at, live = self.w.gate_gather_ms / 1000, 0.0, False
        while not self.should_stop:
            if live and gather_s:  # what arrives meanwhile comes in this fetch, not in fetches of its own
                wait = fetched_at + gather_s - time.monotonic()
                if wait > 0:
                    await self.sleep(wait)
            try:
                handovers = self._handovers
                fetched = await self.consumer.getmany(timeout_ms=100, max_records=self.w.take_batch)
                fetched_at = time.monotonic()
            except ConsumerStoppedError:
                return
            except KafkaError as exc:
                log.warning("gate: fetching from %s failed (%s); retrying", ", ".join(self.topics), exc)
                await self.sleep(1.0)
                continue
            self._staged = False
            try:
                if fetched:
                    await self._process(fetched, handovers)
                live = bool(fetched) and not self.behind
                self._reap()
                backoff = 0.5
            except Exception as exc:  # a send failed (e.g. the broker is away): read the batches again
                self._read_again(exc, await self._abandon_in_flight({} if self._staged else fetched),
                                       f" in {backoff:.1f} s")
                await self.sleep(backoff)
                backoff = min(backoff * 2, self.retry_max_s)
                continue
            await self._commit_if_due()

    async def _process(self, fetched: dict, handovers: int | None = None) -> None:
        """Decide a fetch and start its completion; wait first for the oldest batch in
        flight when ``MAX_IN_FLIGHT`` are. A fetch made before a hand-over (``handovers``,
        the count when it was fetched, differs) is dropped: the group may give its
        partitions to another worker, which reads them from the offsets the hand-over
        committed (the consumer's assignment still lists them until the rebalance ends),
        and partitions staying here are sought back to the fetch's first offsets: the
        records may have been read after the rebalance reset the positions, and would
        otherwise be skipped until the next one."""
        if len(self._in_flight) >= MAX_IN_FLIGHT:
            await asyncio.wait([self._in_flight[0].task])
            self._reap()
        async with self._lock:
            if self.should_stop:  # stopped while this batch waited: it is read again after the restart
                return
            if handovers is not None and handovers != self._handovers:
                # the fetch may also hold records read after the new assignment (the
                # rebalance ended while getmany waited), past the position the group reset
                # to the committed offsets: the partitions still here read them again
                again = self._seek_back({tp: msgs[0].offset for tp, msgs in fetched.items()})
                log.info("gate: a fetch made before the hand-over of partitions is dropped; their owners read it "
                         "again%s", f" (here from offsets {_fmt_offsets(again)})" if again else "")
                return
            owned = self.consumer.assignment()
            by_topic: dict[str, list[RawMessage]] = {}
            first: dict[TopicPartition, int] = {}
            done: dict[TopicPartition, int] = {}
            for tp, msgs in fetched.items():
                if tp not in owned:  # handed over since the fetch: its new owner reads it
                    continue
                if tp not in self._resumed:
                    self._resumed.add(tp)
                    await self._log_resumed(tp, msgs[0].offset)
                by_topic.setdefault(tp.topic, []).extend(
                    (m.key, m.value, list(m.headers or ()), m.partition, m.offset) for m in msgs)
                first[tp] = msgs[0].offset
                done[tp] = msgs[-1].offset + 1
            if not done:
                return
            self.behind = unread(self.consumer, done) >= self.w.take_batch
            completions: list[Awaitable] = []
            try:
                for topic, raw in by_topic.items():
                    completion = await self.handle(topic, raw)
                    if completion is not None:
                        completions.append(completion)
            except BaseException:
                _close(completions)
                raise
            previous = self._in_flight[-1].task if self._in_flight else None
            self._in_flight.append(_InFlight(asyncio.ensure_future(_complete(previous, completions, self.finish)),
                                                first, done))
            self._staged = True

    async def landed(self) -> None:
        """Wait until the batches in flight now have completed, however they ended: the
        clean messages a consumer of the clean topics can already fetch were then handed
        over to this worker's features, if they were to be (``FeaturesIntake``)."""
        tasks = [item.task for item in self._in_flight]
        if tasks:
            await asyncio.wait(tasks)

    def _reap(self) -> None:
        """Take the finished batches, oldest first: their offsets may be committed. A
        failed one raises (the caller reads it and the batches after it again)."""
        while self._in_flight and self._in_flight[0].task.done():
            item = self._in_flight[0]
            if _failed(item.task):
                item.task.result()  # raises its error
            self._in_flight.popleft()
            self._pending.update(item.done)

    async def _drain(self) -> None:
        """Wait for every batch in flight (a hand-over or a stop): finished ones are
        committed with the rest, a failed one and those after it are read again."""
        if not self._in_flight:
            return
        await asyncio.wait([item.task for item in self._in_flight])
        try:
            self._reap()
        except Exception as exc:
            self._read_again(exc, await self._abandon_in_flight({}))

    def _read_again(self, exc: Exception, first: dict[TopicPartition, int], when: str = "") -> None:
        """Seek the partitions still assigned back to ``first``: what a failure left undone."""
        log.warning("gate: messages not delivered (%s: %s); re-reading them from offsets %s%s",
                    type(exc).__name__, exc, _fmt_offsets(first), when)
        self._seek_back(first)

    def _seek_back(self, first: dict[TopicPartition, int]) -> dict[TopicPartition, int]:
        return seek_back(self.consumer, first)

    async def _abandon_in_flight(self, fetched: dict) -> dict[TopicPartition, int]:
        """After a failure: wait for the batches in flight to end (each after a failed
        one fails too) and return, per partition, the first offset of what did not
        finish, the failed ``fetched`` batch's included."""
        if self._in_flight:
            await asyncio.wait([item.task for item in self._in_flight])
        undone = [{tp: msgs[0].offset for tp, msgs in fetched.items()}]
        for item in self._in_flight:
            if _failed(item.task):
                undone.append(item.first)
            else:  # finished before the failed one: committed as usual
                self._pending.update(item.done)
        self._in_flight.clear()
        first: dict[TopicPartition, int] = {}
        for offsets in undone:
            for tp, offset in offsets.items():
                first[tp] = min(offset, first.get(tp, offset))
        return first

    async def _log_resumed(self, tp: TopicPartition, offset: int) -> None:
        """Say where this process started reading a partition: a start, a crash, a
        broker outage or a partition move can be followed in the log."""
        try:
            committed = await self.consumer.committed(tp)
        except KafkaError:
            committed = -1
        why = ("the group's committed offset" if committed == offset else
               "no committed offset: the earliest retained" if committed is None else
               f"the group's committed offset is {committed}")
        log.info("gate %s[%d]: resumed from offset %d (%s)", tp.topic, tp.partition, offset, why)

    async def _commit_if_due(self, locked: bool = False) -> None:
        if self._pending and time.monotonic() - self._last_commit >= self.commit_interval_s:
            if locked:
                await self._commit()
            else:
                async with self._lock:
                    await self._commit()

    async def _commit(self, only: set[TopicPartition] | None = None) -> None:
        offsets = {tp: o for tp, o in self._pending.items() if only is None or tp in only}
        if not offsets:
            return
        owned = self.consumer.assignment()
        gone = [tp for tp in offsets if tp not in owned]
        if gone:  # not this consumer's to commit any more (the commit of all would be refused)
            log.warning("gate: offsets %s not committed: the partitions are no longer assigned here; their owners "
                        "read from the last committed offsets", _fmt_offsets({tp: offsets.pop(tp) for tp in gone}))
            for tp in gone:
                self._pending.pop(tp, None)
            if not offsets:
                return
        committed = True
        try:
            await self.consumer.commit(offsets)
        except (CommitFailedError, IllegalStateError) as exc:  # the group moved on: the partitions' new owners re-read these
            log.warning("gate: offsets %s not committed (%s); the partitions' new owners re-read from the last "
                        "committed offsets", _fmt_offsets(offsets), exc)
            committed = False
        except KafkaError as exc:  # kept, committed next time
            log.warning("gate: committing offsets %s failed (%s); retrying with the next batch", _fmt_offsets(offsets), exc)
            return
        for tp in offsets:
            self._pending.pop(tp, None)
        self._last_commit = time.monotonic()
        if committed and self.on_commit is not None:  # told only of what the group took
            self.on_commit(offsets)

    async def hand_over(self, revoked) -> None:
        """Partitions are about to move: finish the batch in hand and commit what was processed."""
        async with self._lock:
            self._handovers += 1
            await self._drain()
            await self._commit(set(revoked))
        for tp in revoked:
            self._resumed.discard(tp)
            self._pending.pop(tp, None)
        if revoked:
            log.info("gate: handed over %s", _fmt_partitions(revoked))

    async def take_over(self, assigned) -> None:
        self.assigned(assigned)

    def assigned(self, assigned) -> None:
        for tp in [tp for tp in self._pending if tp not in assigned]:  # another worker's now
            del self._pending[tp]
        if assigned:
            log.info("gate: assigned %s", _fmt_partitions(assigned))

    async def on_stop(self) -> None:
        if self.consumer is None:
            return
        async with self._lock:  # the batches in hand are finished and committed first
            await self._drain()
            await self._commit()
            await self.consumer.stop()


async def _complete(previous: asyncio.Future | None, completions: list[Awaitable], finish: Finish | None = None) -> None:
    """A batch's completions, once the batch before it completed (so the features
    take the gate's batches in order); then ``finish`` with what they returned."""
    if previous is not None:
        await asyncio.wait([previous])  # not `await previous`: cancelling this must not cancel it
        if _failed(previous):
            _close(completions)
            raise _Abandoned("a batch before this one was not delivered")
    results = []
    for i, c in enumerate(completions):
        try:
            results.append(await c)
        except BaseException:
            _close(completions[i + 1:])
            raise
    if finish is not None:
        await finish(results)


def _failed(task: asyncio.Future) -> bool:
    """Whether a finished batch's completion did not finish well."""
    return task.cancelled() or task.exception() is not None


def _close(completions: list[Awaitable]) -> None:
    """Completions that will not be awaited (their sends may still land)."""
    for c in completions:
        getattr(c, "close", lambda: None)()


def _fmt_partitions(tps) -> str:
    by_topic: dict[str, list[int]] = {}
    for tp in tps:
        by_topic.setdefault(tp.topic, []).append(tp.partition)
    return "; ".join(f"{t} {sorted(p)}" for t, p in sorted(by_topic.items()))


def _fmt_offsets(offsets: dict) -> str:
    return ", ".join(f"{tp.topic}[{tp.partition}]@{o}" for tp, o in sorted(offsets.items()))


async def adopt_offsets(k: KafkaClientSettings, group: str, previous: str, topics: Sequence[str]) -> int:
    """When ``group`` has committed nothing yet, commit for it the offsets ``previous``
    committed on ``topics``; the number of partitions adopted."""
    from aiokafka.admin import AIOKafkaAdminClient

    admin = AIOKafkaAdminClient(**k.aiokafka_kwargs())
    await admin.start()
    try:
        if any(o.offset >= 0 for o in (await admin.list_consumer_group_offsets(group)).values()):
            return 0
        wanted = set(topics)
        old = {tp: o.offset for tp, o in (await admin.list_consumer_group_offsets(previous)).items()
               if tp.topic in wanted and o.offset >= 0}
    finally:
        await admin.close()
    if old:
        await commit_offsets(k, group, old)
    return len(old)
