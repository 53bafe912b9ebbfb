"""The gate hands its clean messages to the features of the same worker directly.

Without it a live record travels gate → clean topic → broker → the features' consumer:
that hop was the largest part of a live score's latency (the A/B in bench/RESULTS.md).
When the worker's features own the clean partition a message was written to, the gate
gives the features the message as soon as Kafka acknowledged it, by its offset; the
features' consumer still fetches the message from the clean topic, skips it, and
acknowledges it once the handed-over records are processed and their rows sent, so a
crash redelivers what was not finished, as before.

A partition's messages reach the features in offset order, whichever way they come:
offset ``o`` is handed over only when the features have taken ``o - 1``; a message
the features cannot take yet waits here (at most ``MAX_WAITING`` per partition) until
the agent's stream catches up to it, or arrives through the stream first. Another
producer writing to the same partition (another worker's gate) leaves a gap that the
stream fills. Plain data: the agent (``stream.agents``) drives it.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

TP = tuple[str, int]
Key = tuple[str, int, int]  # topic, partition, offset
Item = tuple[str, bytes, bytes]  # topic, key, value: what the features step takes

MAX_WAITING = 2_000


@dataclass(frozen=True, slots=True)
class Handed:
    """The features step's token for a handed-over message."""

    key: Key


class Handoff:
    def __init__(self) -> None:
        self.owned: set[TP] = set()
        self.applied: dict[TP, int] = {}  # per partition the highest offset the features have taken
        self._queued: dict[TP, dict[int, Item]] = {}  # acknowledged, waiting for the offset before them
        self._handed: set[Key] = set()  # handed over; the stream's copy not yet seen
        self._settled: set[Key] = set()  # handed over and done; the stream's copy not yet seen
        self._waiting: dict[Key, object] = {}  # the stream's copies of handed-over messages not yet done
        self.handed_over = 0  # messages the features took from the gate (for the worker's stats)

    def reset(self, owned: Iterable[TP]) -> None:
        """A new assignment: forget everything (the partitions may have moved)."""
        self.owned = set(owned)
        self.applied.clear()
        self._queued.clear()
        self._handed.clear()
        self._settled.clear()
        self._waiting.clear()

    def offer(self, sent: Iterable[tuple[str, int, int, bytes, bytes]]) -> list[tuple[Item, Handed]]:
        """The gate's acknowledged (topic, partition, offset, key, value) messages: those
        the features may take now, in offset order, with their tokens."""
        touched = set()
        for topic, partition, offset, key, value in sent:
            tp = (topic, partition)
            if tp not in self.owned or offset <= self.applied.get(tp, -1):
                continue
            queue = self._queued.setdefault(tp, {})
            queue[offset] = (topic, key, value)
            if len(queue) > MAX_WAITING:  # the stream is far behind: it brings these itself
                for off in sorted(queue)[:len(queue) - MAX_WAITING]:
                    del queue[off]
            touched.add(tp)
        return self._release(touched)

    def from_stream(self, records: Sequence) -> tuple[list, list, list[tuple[Item, Handed]]]:
        """Split a batch of records fetched from the topics (aiokafka's, with topic,
        partition and offset) into (records to process, records to acknowledge now: copies
        of handed-over messages already done) and return the queued messages the batch
        lets through (the features take them after it)."""
        fresh, done = [], []
        touched = set()
        for m in records:
            key = (m.topic, m.partition, m.offset)
            if key in self._handed:
                self._handed.discard(key)
                if key in self._settled:
                    self._settled.discard(key)
                    done.append(m)
                else:
                    self._waiting[key] = m
                continue
            tp = key[:2]
            if m.offset > self.applied.get(tp, -1):
                self.applied[tp] = m.offset
            touched.add(tp)
            fresh.append(m)
        return fresh, done, self._release(touched)

    def settle(self, token: Handed):
        """A handed-over message is processed and its rows sent: its stream copy, to
        acknowledge, if it has arrived (else it is acknowledged on arrival)."""
        event = self._waiting.pop(token.key, None)
        if event is None and token.key in self._handed:
            self._settled.add(token.key)
        return event

    def forget(self, tokens: Iterable[Handed]) -> None:
        """Handed-over messages whose rows could not be sent: their stream copies take the
        ordinary path (the features' state skips their records as already taken)."""
        for t in tokens:
            self._handed.discard(t.key)
            self._settled.discard(t.key)

    @property
    def waiting(self) -> int:
        return len(self._waiting)

    def _release(self, tps: Iterable[TP]) -> list[tuple[Item, Handed]]:
        out = []
        for tp in tps:
            queue = self._queued.get(tp)
            last = self.applied.get(tp)
            if not queue or last is None:  # nothing taken yet: where the partition stands is unknown
                continue
            for offset in sorted(queue):
                if offset <= last:  # the stream brought it first
                    del queue[offset]
                    continue
                if offset != last + 1:
                    break
                last = offset
                key = (tp[0], tp[1], offset)
                self._handed.add(key)
                out.append((queue.pop(offset), Handed(key)))
            self.applied[tp] = last
        self.handed_over += len(out)
        return out
