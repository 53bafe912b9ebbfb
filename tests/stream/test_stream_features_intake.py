"""The features' consumer commits, per partition, up to the first message it fetched and
the features have not acknowledged: their acknowledgements come out of order (a record
in the reorder window is acknowledged steps after the ones fetched with it), and a
commit past an unfinished message would lose it in a crash. On the real broker the
features' intake runs in every platform test (test_platform_features.py,
test_platform_crash.py, test_platform_scale.py)."""

from __future__ import annotations

from aiokafka import TopicPartition

from stream.featuresintake import _Acks

A, B = TopicPartition("clean.ev.dynamics.v1", 0), TopicPartition("clean.ev.state.v1", 0)


def test_the_commit_stops_at_the_first_message_not_acknowledged():
    acks = _Acks()
    acks.fetched(A, [10, 11, 12, 13])
    assert acks.committable() == {A: 10}
    acks.ack(A, 11)
    acks.ack(A, 13)
    assert acks.committable() == {A: 10}, "10 is not done: a crash must read it again"
    acks.ack(A, 10)
    assert acks.committable() == {A: 12}
    acks.ack(A, 12)
    assert acks.committable() == {A: 14} and acks.unacked() == 0


def test_only_what_moved_since_the_last_commit_is_committed_and_partitions_are_apart():
    acks = _Acks()
    acks.fetched(A, [0, 1])
    acks.fetched(B, [5])
    acks.ack(B, 5)
    assert acks.committable() == {A: 0, B: 6}
    acks.committed({A: 0, B: 6})
    assert acks.committable() == {}
    acks.fetched(A, [2])
    acks.ack(A, 0)
    assert acks.committable() == {A: 1}
    assert acks.committable({B}) == {}


def test_a_partition_handed_over_is_forgotten_and_a_late_acknowledgement_of_it_ignored():
    acks = _Acks()
    acks.fetched(A, [0, 1])
    acks.fetched(B, [7])
    acks.forget(lambda tp: tp != A)
    acks.ack(A, 0)  # a step finished after the hand-over: the new owner reads the partition again
    assert acks.committable() == {B: 7}
    acks.fetched(A, [0, 1])  # assigned back: read again from the committed offset
    assert acks.committable({A}) == {A: 0}
