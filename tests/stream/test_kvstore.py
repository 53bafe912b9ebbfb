"""The workers' write-back RocksDB store: reads see unflushed writes, a flush is
durable across a reopen, unflushed writes are not."""

from stream.kvstore import WriteBackStore


def test_pending_writes_are_read_back_and_flush_makes_them_durable(tmp_path):
    s = WriteBackStore.open(tmp_path / "kv")
    s[b"a"] = b"1"
    s[b"b"] = b"2"
    assert s.get(b"a") == b"1" and s[b"b"] == b"2"
    assert s.db.get(b"a") is None  # not yet written
    s.flush()
    assert s.db.get(b"a") == b"1"
    del s[b"a"]
    assert s.get(b"a") is None and b"a" not in s
    s[b"c"] = b"3"
    s.close()  # close flushes
    s = WriteBackStore.open(tmp_path / "kv")
    assert (s.get(b"a"), s.get(b"b"), s.get(b"c")) == (None, b"2", b"3")
    assert sorted(s.keys()) == [b"b", b"c"] and len(s) == 2
    s.db.close()


def test_unflushed_writes_are_lost_with_the_process_not_the_flushed_ones(tmp_path):
    s = WriteBackStore.open(tmp_path / "kv", cache_limit=2)
    for i in range(5):
        s[b"k%d" % i] = b"v"
    s.flush()
    s[b"late"] = b"v"
    assert len(s._cache) <= 5  # the cache was cleared when over its limit, then refilled by the flush
    s.db.close()  # a crash: no flush of b"late"
    s = WriteBackStore.open(tmp_path / "kv")
    assert s.get(b"k4") == b"v" and s.get(b"late") is None
    s.db.close()


def test_sealed_writes_are_read_back_written_in_seal_order_and_dropped_by_a_rollback(tmp_path):
    s = WriteBackStore.open(tmp_path / "kv")
    s[b"a"] = b"1"
    first = s.seal()
    s[b"a"] = b"2"
    s[b"b"] = b"2"
    second = s.seal()
    del s[b"b"]
    assert (s.get(b"a"), s.get(b"b"), b"b" in s) == (b"2", None, False)  # pending over sealed, newest seal first
    assert s.db.get(b"a") is None  # nothing written before its commit
    s.commit(first)
    assert s.db.get(b"a") == b"1" and s.db.get(b"b") is None and s.get(b"a") == b"2"
    s.commit(first)  # committed once only
    third = s.seal()
    s.commit(third)  # the second is written with it: seals are written in order
    assert s.db.get(b"a") == b"2" and s.db.get(b"b") is None and second < third
    s[b"c"] = b"3"
    s.seal()
    s[b"d"] = b"4"
    s.rollback()  # a send failed: what is not written stays unwritten, and nothing is written after
    assert s.get(b"c") is None and s.get(b"d") is None and s.get(b"a") == b"2"
    s[b"e"] = b"5"
    s.flush()
    s.db.close()
    s = WriteBackStore.open(tmp_path / "kv")
    assert [s.get(k) for k in (b"a", b"b", b"c", b"d", b"e")] == [b"2", None, None, None, None]
    s.db.close()
