"""A restarted local simulator continues its fleet instead of re-sending history:
the first `make up` sends two days of history, a later one the same fleet from now on."""

from __future__ import annotations

import asyncio
import datetime as dt

from simulators import fleet, runner
from voltrisk.local import SIM_DAYS, remember_simulator_start, simulator_window

SHANGHAI = dt.timezone(dt.timedelta(hours=8))
NOW_MS = int(dt.datetime(2026, 11, 25, 18, 0, tzinfo=SHANGHAI).timestamp() * 1000)
DAY_MS = 86_400_000


def test_the_first_up_sends_history_and_a_later_one_continues_the_same_fleet_from_now(tmp_path):
    first = simulator_window(tmp_path, NOW_MS)
    assert first == ["--start", "2026-11-23"]
    assert simulator_window(tmp_path, NOW_MS + 60_000) == first  # nothing remembered until up starts it
    remember_simulator_start(tmp_path, ["python", "-m", "voltrisk", "simulate", *first])
    later = NOW_MS + 3 * DAY_MS
    assert simulator_window(tmp_path, later) == ["--start", "2026-11-23", "--send-from-ms", str(later)]
    remember_simulator_start(tmp_path, ["--start", "2026-12-01"])  # the first start is kept
    assert simulator_window(tmp_path, later)[1] == "2026-11-23"
    # the first run covers 2026-11-23 + 30 days; on its last day a new run starts today
    last_full = NOW_MS + (SIM_DAYS - 4) * DAY_MS  # 2026-12-21
    assert simulator_window(tmp_path, last_full)[1] == "2026-11-23"
    spent = NOW_MS + (SIM_DAYS - 3) * DAY_MS  # 2026-12-22, the run's last simulated day
    assert simulator_window(tmp_path, spent) == ["--start", "2026-12-22", "--send-from-ms", str(spent)]


class ListSink:
    def __init__(self):
        self.sent: list[fleet.Event] = []

    async def send(self, chunk):
        self.sent.extend(chunk)


def test_events_before_send_from_are_simulated_but_not_sent():
    events = [fleet.Event(ts_ms=t, topic="ev.state.v1", key="VIN", record=None) for t in range(0, 10_000, 1_000)]
    sink = ListSink()
    counts = asyncio.run(runner.pump(iter(events), sink, realtime=False, on_progress=lambda n, t: None, send_from_ms=4_000))
    assert [e.ts_ms for e in sink.sent] == list(range(4_000, 10_000, 1_000))
    assert counts["ev.state.v1"] == 6
