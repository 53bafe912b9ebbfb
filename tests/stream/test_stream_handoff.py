"""The gate's hand-over of clean messages to the same worker's features (stream.handoff):
each partition's messages reach the features once and in offset order, whichever of
the two ways comes first, and a fetched copy is acknowledged only when its handed-over
records are done."""

from __future__ import annotations

from types import SimpleNamespace

from stream.handoff import MAX_WAITING, Handed, Handoff

T = "clean.ev.dynamics.v1"


def sent(*offsets: int, partition: int = 0):
    return [(T, partition, o, b"v1-x", f"value-{o}".encode()) for o in offsets]


def event(offset: int, partition: int = 0):
    """A record as the features' consumer fetches it."""
    return SimpleNamespace(topic=T, partition=partition, offset=offset)


def offsets(taken) -> list[int]:
    return [token.key[2] for _, token in taken]


def owning(*partitions: int) -> Handoff:
    h = Handoff()
    h.reset((T, p) for p in partitions)
    return h


def test_nothing_is_handed_over_before_the_stream_says_where_the_partition_stands():
    h = owning(0)
    assert h.offer(sent(10, 11)) == []
    fresh, done, handed = h.from_stream([event(9)])  # the features took 9: 10 and 11 follow at once
    assert [e.offset for e in fresh] == [9] and done == [] and offsets(handed) == [10, 11]
    assert handed[0][0] == (T, b"v1-x", b"value-10")
    assert offsets(h.offer(sent(12))) == [12]  # from now on straight through
    assert h.handed_over == 3


def test_a_stream_copy_is_skipped_and_acknowledged_once_its_records_are_done():
    h = owning(0)
    h.from_stream([event(0)])
    (_, token), = h.offer(sent(1))
    (_, token2), = h.offer(sent(2))
    # the copy of 1 arrives before its records are done: held back; 2 is done before its copy
    assert h.settle(token2) is None
    fresh, done, _ = h.from_stream([event(1), event(2), event(3)])
    assert [e.offset for e in fresh] == [3]
    assert [e.offset for e in done] == [2]
    assert h.waiting == 1
    assert h.settle(token).offset == 1 and h.waiting == 0


def test_a_gap_from_another_producer_is_filled_by_the_stream_first():
    h = owning(0)
    h.from_stream([event(4)])
    # offset 5 was written by another worker's gate: 6 and 7 wait for it
    assert h.offer(sent(6, 7)) == []
    fresh, _, handed = h.from_stream([event(5)])
    assert [e.offset for e in fresh] == [5] and offsets(handed) == [6, 7]


def test_what_the_stream_brings_first_is_not_handed_over_again():
    h = owning(0)
    h.from_stream([event(0)])
    assert h.offer(sent(2)) == []  # 1 missing
    fresh, _, handed = h.from_stream([event(1), event(2)])
    assert [e.offset for e in fresh] == [1, 2] and handed == []
    assert offsets(h.offer(sent(3))) == [3]


def test_only_owned_partitions_and_a_bounded_queue():
    h = owning(0)
    h.from_stream([event(0, partition=1), event(0)])
    assert h.offer(sent(1, partition=1)) == []  # not this worker's partition
    h.offer(sent(*range(2, 2 + MAX_WAITING + 10)))
    fresh, _, handed = h.from_stream([event(1)])
    # the oldest queued ones were dropped (the stream brings them): nothing is contiguous to 1
    assert handed == [] and [e.offset for e in fresh] == [1]


def test_forgotten_messages_take_the_ordinary_path_and_a_new_assignment_starts_afresh():
    h = owning(0)
    h.from_stream([event(0)])
    (_, token), = h.offer(sent(1))
    h.forget([token])  # its rows could not be sent
    fresh, done, _ = h.from_stream([event(1)])
    assert [e.offset for e in fresh] == [1] and done == []
    h.reset([(T, 3)])
    assert h.offer(sent(2)) == [] and h.applied == {}
    assert isinstance(token, Handed)
