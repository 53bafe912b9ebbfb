"""A broker outage's client retries do not flood the service logs: the first line of a run
goes through, the repeats are held back, and the next line after the window says how many."""

from __future__ import annotations

import logging

from voltrisk.logfilter import RepeatFilter, quiet_repeats


class Collect(logging.Handler):
    def __init__(self):
        super().__init__()
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(f"{record.name}: {record.getMessage()}")


def _record(name: str, level: int, msg: str, args: tuple, t: float) -> logging.LogRecord:
    r = logging.LogRecord(name, level, __file__, 1, msg, args, None)
    r.created = t
    return r


def test_repeats_are_held_back_and_counted_per_logger_and_message():
    h = Collect()
    h.addFilter(RepeatFilter(window_s=10.0))
    t0 = 1_000_000.0
    for i in range(1900 * 15):  # 15 s of an outage at 1,900 lines a second
        t = t0 + i / 1900
        h.handle(_record("aiokafka.conn", logging.ERROR, "Unable connect to node with id %s: %s", (1, "refused"), t))
        if i % 100 == 0:
            h.handle(_record("aiokafka.client", logging.ERROR, "Unable to update metadata from [%s]", (1,), t))
    h.handle(_record("voltrisk.sink", logging.WARNING, "insert %s failed; retrying", ("x",), t0 + 1))  # ours: never held
    h.handle(_record("aiokafka.conn", logging.INFO, "connected to %s", (1,), t0 + 2))  # below WARNING: never held
    conn = [ln for ln in h.lines if ln.startswith("aiokafka.conn: Unable")]
    assert conn[0] == "aiokafka.conn: Unable connect to node with id 1: refused"
    assert len(conn) == 2 and conn[1].endswith("[repeated 18999 times in the previous 10 s, not logged]")
    assert len([ln for ln in h.lines if ln.startswith("aiokafka.client")]) == 2
    assert "voltrisk.sink: insert x failed; retrying" in h.lines and "aiokafka.conn: connected to 1" in h.lines


def test_quiet_repeats_attaches_one_filter_to_each_handler_once():
    logger = logging.getLogger("voltrisk.test.logfilter")
    h1, h2 = Collect(), Collect()
    logger.addHandler(h1)
    logger.addHandler(h2)
    try:
        quiet_repeats(logger)
        quiet_repeats(logger)
        assert [len([f for f in h.filters if isinstance(f, RepeatFilter)]) for h in (h1, h2)] == [1, 1]
    finally:
        logger.removeHandler(h1)
        logger.removeHandler(h2)
