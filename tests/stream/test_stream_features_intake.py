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


class _Cluster:
    """What an assignor asks of the cluster: each topic's partitions."""

    def __init__(self, partitions: int) -> None:
        self.partitions = partitions

    def partitions_for_topic(self, topic: str) -> set[int]:
        return set(range(self.partitions))


def _by_member(assignor, members: int, partitions: int = 12) -> list[dict[str, set[int]]]:
    from aiokafka.coordinator.protocol import ConsumerProtocolMemberMetadata

    from stream.featuring import FEATURE_INPUTS

    meta = {f"worker-{i}": ConsumerProtocolMemberMetadata(0, list(FEATURE_INPUTS), b"") for i in range(members)}
    out = assignor.assign(_Cluster(partitions), meta)
    return [{topic: set(parts) for topic, parts in a.assignment} for a in out.values()]


def test_the_features_group_gives_each_worker_the_same_partitions_of_every_input_topic():
    """A vehicle's dynamics, states, alarms and crashes (and redriven records) must meet
    in one worker: with 2, 3 and 5 workers, each gets partition p of every topic or of none."""
    from aiokafka.coordinator.assignors.roundrobin import RoundRobinPartitionAssignor

    from stream.featuresintake import ASSIGNORS

    for members in (2, 3, 5):
        shares = _by_member(ASSIGNORS[0], members)
        for share in shares:
            assert len(share) == 5 and len({frozenset(parts) for parts in share.values()}) == 1, share
        assert set().union(*(next(iter(s.values())) for s in shares)) == set(range(12))
    # aiokafka's default deals the partitions of all topics out in turn: 12 partitions among
    # 5 workers, it would split a vehicle
    split = _by_member(RoundRobinPartitionAssignor, 5)
    assert any(len({frozenset(parts) for parts in share.values()}) > 1 for share in split)
