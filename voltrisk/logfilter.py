"""Keep client libraries' repeated warnings from flooding a service log.

While the broker is down, aiokafka logs "Unable connect to node …" and "Unable to update
metadata …" on every retry: about 1,900 lines a second in a worker, which buries what
voltrisk itself says about the outage. ``RepeatFilter`` lets the first of a run of the
same message (same logger, same message template) through, holds back the repeats for
``window_s`` seconds, and then lets the next one through with the count it held back. The count of a run's last
window is only told if the message comes again: when the outage ends inside a window,
that window's repeats go unreported (the first line of the run and the recovery are logged).
"""

from __future__ import annotations

import logging

QUIETED = ("aiokafka", "kafka")


class RepeatFilter(logging.Filter):
    def __init__(self, window_s: float = 10.0, prefixes: tuple[str, ...] = QUIETED):
        super().__init__()
        self.window_s, self.prefixes = window_s, prefixes
        self._runs: dict[tuple[str, object], list] = {}  # (logger, template) -> [window start, held back]

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno < logging.WARNING or not record.name.startswith(self.prefixes):
            return True
        key = (record.name, record.msg)
        run = self._runs.get(key)
        if run is not None and record.created - run[0] < self.window_s:
            run[1] += 1
            return False
        held = run[1] if run is not None else 0
        self._runs[key] = [record.created, 0]
        if held:
            record.msg = f"{record.msg} [repeated {held} times in the previous {self.window_s:.0f} s, not logged]"
        return True


def quiet_repeats(logger: logging.Logger | None = None, window_s: float = 10.0) -> None:
    """Attach one ``RepeatFilter`` to every handler of ``logger`` (the root logger by default)."""
    logger = logger or logging.getLogger()
    shared = RepeatFilter(window_s)
    for handler in logger.handlers:
        if not any(isinstance(f, RepeatFilter) for f in handler.filters):
            handler.addFilter(shared)
