"""The features step the worker runs on each batch of clean telemetry.

Decode the batch (records arrive one per message or as per-vehicle arrays),
load the touched vehicles' state, call the pure ``stream.features.update``,
persist the new state and return what to emit: trips, daily rows, cell visits,
crashes and, at most every ``score_every_ms`` per vehicle, the vehicle's window
features and its score. Kept apart from Faust so tests and replays call it directly.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, MutableMapping, Sequence
from itertools import groupby, repeat
from operator import attrgetter, itemgetter

import msgspec

from stream import records as R
from stream import topics as T
from stream.features import (
    Batch,
    CellTable,
    Update,
    decode_history,
    decode_state,
    encode_history,
    encode_state,
    flush_idle,
    local_day,
    merge_history,
    update,
    vehicle_feature_records,
    vehicle_features_from_states,
)
from stream.features.state import RECENT_IDS, RecentIds, VehicleState
from stream.gate import REASONS
from stream.score import ReferenceScorer, Scorer, score_records
from voltrisk.errors import first_line

log = logging.getLogger("voltrisk.features")

TRIPS, DAILY, CELLS, CRASHES, VEHICLE, SCORES = (
    "trips.v1", "features.daily.v1", "features.cell.v1", "features.crash.v1", "features.vehicle.v1", "scores.ubi.v1",
)
_TELEMETRY = (T.STATE, T.DYNAMICS, T.ALARM, T.CRASH)
_CLEAN_TOPIC = {t.record: T.clean_name(t.name) for t in _TELEMETRY}  # record type -> its clean topic
CLEAN_INPUTS = tuple(_CLEAN_TOPIC.values())
FEATURE_INPUTS = CLEAN_INPUTS + (T.REDRIVE.name,)

_decoders = {_CLEAN_TOPIC[t.record]: (msgspec.json.Decoder(t.record), msgspec.json.Decoder(list[t.record]))
             for t in _TELEMETRY}
_encode = msgspec.json.encode
_KIND_INDEX = {R.DynamicsV1: 0, R.StateV1: 1, R.AlarmV1: 2, R.CrashV1: 3}
QUARANTINED = "features_error"  # the dead-letter reason of records the features step failed on
DEAD_LETTER_RECORDS = 500  # records per dead-letter message (a JSON array, as on the clean topics)
_VID, _RECORD = itemgetter(0), itemgetter(1)
_EVENT_ID, _TS = attrgetter("event_id"), attrgetter("ts_ms")


def redriven_topic(headers) -> str:
    """The clean topic a message of ``features.redrive.v1`` comes from (its ``source_topic``
    header, as ``voltrisk dlq redrive`` sets it); the redrive topic itself when it names
    none of them, which the engine then dead-letters as unreadable."""
    for name, value in (headers.items() if isinstance(headers, dict) else headers or ()):
        if name == "source_topic":
            topic = bytes(value or b"").decode("utf-8", "replace")
            return topic if topic in CLEAN_INPUTS else T.REDRIVE.name
    return T.REDRIVE.name


_NEVER = 2 ** 63  # an event time no record reaches

class FeatureEngine:
    """Per-vehicle feature state over a persistent key-value store (rocksdict in
    the worker, a dict in tests): ``s``+id -> VehicleState, ``h``+id -> history."""

    def __init__(self, store: MutableMapping[bytes, bytes], scorer: Scorer | None = None,
                 *, cells: CellTable | None = None, score_every_ms: int = 5_000, reorder_ms: int = 120_000,
                 max_hold_s: float = 10.0, live_hold_ms: int = 0, live_window_ms: int = 0, scoring: bool = True,
                 partitions: int = 0, clock: Callable[[], float] = time.time):
        self.store = store
        self.scorer = scorer or ReferenceScorer()
        self.scoring = scoring
        self.live_hold_s, self.live_window_ms = live_hold_ms / 1000, live_window_ms
        self.records_in = 0  # records taken in (for the worker's stats)
        self.scores_out = 0
        self.redelivered = 0  # records skipped as already in their vehicle's state
        self.late_dropped = 0  # samples older than their vehicle's last one taken (and park states older than it)
        self.quarantined = 0  # records dead-lettered because the step failed on their vehicle
        self.partitions = partitions  # of the clean topics: names a dead letter's source partition
        self._dead: list[tuple[bytes | None, bytes, list[tuple[str, bytes]]]] = []  # dead letters not yet taken
        self._failed_alone: set[str] = set()  # vehicles failing alone since a step last passed (``_confined``)
        self.max_failed_alone = 3
        self.cells = cells
        self.score_every_ms = score_every_ms
        self.clock = clock
        self._last_scored: dict[str, int] = {}
        self.watermark_ms = 0
        self.open_trips: set[str] = set()
        self.reorder_ms, self.max_hold_s = reorder_ms, max_hold_s
        # per vehicle: chunks of records waiting for release, one per clean message, as
        # (oldest ts_ms, newest ts_ms, arrival, records, token); the newest dynamics time (its
        # clock decides, not other vehicles') and the last arrival
        self._held: dict[str, list[tuple[int, int, float, list[msgspec.Struct], object]]] = {}
        self._newest: dict[str, int] = {}
        self._arrived: dict[str, float] = {}
        self.idle_wall_s = 120.0  # vehicles whose trip may need closing by the idle timer
        self._changes: dict[bytes, bytes] = {}  # store writes not yet taken for the changelog
        self._settled: list = []  # tokens of fully processed messages, not yet taken
        self.handing_over = False  # partitions are being given up: hold nothing back

    def _load(self, vids: Sequence[str]) -> tuple[dict, dict]:
        states, history = {}, {}
        for v in vids:
            raw = self.store.get(b"s" + v.encode())
            if raw is not None:
                states[v] = decode_state(raw)
            h = self.store.get(b"h" + v.encode())
            if h is not None:
                history[v] = decode_history(h)
        return states, history

    def _emit_update(self, up, history: dict) -> list[tuple[str, str, bytes]]:
        store, changes = self.store, self._changes
        for v, s in up.states.items():
            store[b"s" + v.encode()] = changes[b"s" + v.encode()] = encode_state(s)
        for v, closed in up.closed_days.items():
            history[v] = merge_history(history.get(v, []), closed)
            store[b"h" + v.encode()] = changes[b"h" + v.encode()] = encode_history(history[v])
        out = []
        for topic, rows in ((TRIPS, up.trips), (DAILY, up.daily), (CELLS, up.visits), (CRASHES, up.crashes)):
            out.extend((topic, r.vehicle_id, _encode(r)) for r in rows)
        return out

    def step(self, msgs: Sequence[tuple[str, bytes, bytes]], tokens: Sequence | None = None,
             whole_fetch: bool = False) -> list[tuple[str, str, bytes]]:
        """(topic, vehicle id, JSON record) to emit for one batch of clean messages.

        The four input topics are fetched independently, so a vehicle's park state
        can overtake the dynamics before it. Records are therefore held in a small
        reorder buffer and released in event-time order once the vehicle's newest dynamics
        sample is ``reorder_ms`` past them, or once nothing of that vehicle arrived for
        ``max_hold_s`` (its topics have all delivered what there was).

        Live records (event time within ``live_window_ms`` of the clock: the worker is
        not catching up, so its topics are in step) wait only ``live_hold_ms`` after
        their arrival: what a score reflects is then at most that much older. Live
        records of ``whole_fetch`` (the gate's clean messages of one fetch, every topic
        of it together) wait for nothing: their siblings of that fetch are here."""
        now = self.clock()
        arrival = now - self.live_hold_s if whole_fetch else now  # the live hold counts from arrival
        held, newest = self._held, self._newest
        dynamics = T.clean_name(T.DYNAMICS.name)
        tokens = tokens if tokens is not None else repeat(None)
        decoders = _decoders
        for (topic, key, value), token in zip(msgs, tokens):
            vid = key.decode() if key else ""
            try:
                one, many = decoders[topic]
                recs = many.decode(value) if value[:1] == b"[" else [one.decode(value)]
            except Exception as exc:  # a voltrisk defect (the gate wrote it), or a bad redrive
                self._dead_letter_message(topic, key, value, exc)
                recs = []
            if not recs:
                if token is not None:
                    self._settled.append(token)
                continue
            self.records_in += len(recs)
            ts = [r.ts_ms for r in recs]
            lo, hi = min(ts), max(ts)
            held.setdefault(vid, []).append((lo, hi, arrival, recs, token))
            self._arrived[vid] = now
            # the dynamics stream sets the pace: a state topic running ahead must
            # not release the states before the dynamics they follow have arrived
            if topic == dynamics and hi > newest.get(vid, 0):
                newest[vid] = hi
        return self._process(self._release(now))

    def take_settled(self) -> list:
        """The tokens (the worker's Faust events) of the messages whose records have all
        been processed since the last call: to acknowledge once the rows they produced
        are sent. A message still partly in the reorder buffer stays unacknowledged, so
        a crash redelivers it (and the state's redelivery check skips what was done)."""
        out, self._settled = self._settled, []
        return out

    @property
    def held_records(self) -> int:
        return sum(len(c[3]) for chunks in self._held.values() for c in chunks)

    def _release(self, now: float) -> list[tuple[str, msgspec.Struct]]:
        """(vehicle, record) pairs free to go, in no particular order (``update`` sorts
        each vehicle's rows by event time). Whole chunks are decided at once; a chunk
        is split record by record only when a limit falls inside it.

        A record may go once its vehicle's newest dynamics sample is ``reorder_ms`` past
        it; or once its live hold ended (``live_hold_ms`` after its arrival) if the record
        is live (within ``live_window_ms`` of the clock) or its vehicle's dynamics are (they
        were read up to the clock, so what is older of the vehicle was read too: the
        dynamics are the biggest topic and the slowest to catch up). Records far from the
        clock (a carmaker re-sending history) wait for the reorder window however fast
        they are read. And a vehicle's records go in event-time order: none goes while an older
        one of the same vehicle has to stay, which the state would otherwise drop as
        late once the newer were taken (after an outage longer than the live window,
        the older part of the backlog of every vehicle still driving was lost that way).
        So each vehicle's limit is its oldest record that has to stay."""
        quiet, lag = now - self.max_hold_s, self.reorder_ms
        live_from = int(now * 1000) - self.live_window_ms if self.live_window_ms else None
        settled = now - self.live_hold_s
        ready: list[tuple[str, msgspec.Struct]] = []
        tokens = self._settled

        def settle(chunk) -> None:
            if chunk[4] is not None:
                tokens.append(chunk[4])

        for vid in list(self._held):
            chunks = self._held[vid]
            if self._arrived[vid] <= quiet or self.handing_over:  # quiet for a while, or leaving: all of it
                for c in chunks:
                    ready.extend(zip(repeat(vid), c[3]))
                    settle(c)
                del self._held[vid]
                continue
            newest = self._newest.get(vid, 0)
            cutoff = newest - lag
            caught_up = live_from is not None and newest >= live_from
            limit = _NEVER  # the oldest event time that has to stay: everything before it goes
            go, keep, split = [], [], False
            for c in chunks:
                lo, hi, arrival, recs, _ = c
                if hi <= cutoff or (arrival <= settled and (caught_up or (live_from is not None and lo >= live_from))):
                    go.append(c)  # all of the chunk may go
                    continue
                keep.append(c)
                if lo > cutoff:
                    first = lo
                else:  # the cutoff falls inside the chunk: its records up to it may go
                    first = min(r.ts_ms for r in recs if r.ts_ms > cutoff)
                    split = True
                if first < limit:
                    limit = first
            for c in go:
                lo, hi, arrival, recs, token = c
                if hi < limit:
                    ready.extend(zip(repeat(vid), recs))
                    settle(c)
                else:  # newer than a record that has to stay: kept, whole or in part
                    keep.append(c)
                    split = split or lo < limit
            if split:
                keep = self._split_at(vid, keep, limit, ready)
            if keep:
                self._held[vid] = keep
            else:
                del self._held[vid]
        return ready

    @staticmethod
    def _split_at(vid: str, chunks: list, limit: int, ready: list) -> list:
        """The records of ``chunks`` older than ``limit`` to ``ready``; the chunks of the rest."""
        keep = []
        for c in chunks:
            lo, hi, arrival, recs, token = c
            if lo >= limit:
                keep.append(c)
                continue
            stay = []
            for r in recs:
                if r.ts_ms < limit:
                    ready.append((vid, r))
                else:
                    stay.append(r)
            keep.append((min(r.ts_ms for r in stay), max(r.ts_ms for r in stay), arrival, stay, token))
        return keep

    def _process(self, pairs: list[tuple[str, msgspec.Struct]]) -> list[tuple[str, str, bytes]]:
        if not pairs:
            return []
        states, history = self._load(sorted({v for v, _ in pairs}))
        pairs = self._unseen(pairs, states)
        if not pairs:
            return []

        def run(states: dict, vehicles: set | None) -> Update:
            mine = pairs if vehicles is None else [p for p in pairs if p[0] in vehicles]
            return update(states, Batch.from_records(mine), self.cells)

        up, failing = self._confined(states, run, lambda: sorted({v for v, _ in pairs}))
        if failing:
            for vid, exc in failing.items():
                self._quarantine(vid, [r for v, r in pairs if v == vid], exc)
            pairs = [p for p in pairs if p[0] not in failing]
            if not pairs:
                return []
        self._mark_taken(pairs, up.states)
        self.late_dropped += up.late_dropped
        self.watermark_ms = max(self.watermark_ms, max(s.seen_ts_ms for s in up.states.values()))
        open_trips = self.open_trips
        for v, s in up.states.items():
            if s.trip is not None:
                open_trips.add(v)
            else:
                open_trips.discard(v)
        out = self._emit_update(up, history)
        if self.scoring:
            out.extend(self._score(up.states, history))
        return out

    def _unseen(self, pairs: list[tuple[str, msgspec.Struct]], states: dict) -> list[tuple[str, msgspec.Struct]]:
        """The records not already in their vehicle's state: after a restart or a partition
        move the consumer resumes from the committed offset, behind what the state holds,
        and a gate that took a raw partition over may clean a record a second time.

        ``pairs`` come a vehicle at a time (``_release``, ``drain``); a vehicle's run whose
        event ids are distinct and all newer than everything its state took passes whole
        (the common case, decided with C-level calls), any other run record by record."""
        out: list[tuple[str, msgspec.Struct]] = []
        seen: dict[str, set] = {}  # per vehicle, the event ids met in this batch
        for vid, group in groupby(pairs, _VID):
            run = list(group)
            recs = list(map(_RECORD, run))
            ids = list(map(_EVENT_ID, recs))
            s = states.get(vid)
            taken = s.taken if s is not None else None
            if (vid not in seen and len(set(ids)) == len(ids)
                    and (not taken or min(map(_TS, recs)) > max(t for t, _ in taken))):
                seen[vid] = set(ids)
                out.extend(run)
                continue
            passed = seen.setdefault(vid, set())
            for (_, r), eid in zip(run, ids):
                if eid in passed:
                    self.redelivered += 1
                    continue
                passed.add(eid)
                if taken:
                    k = _KIND_INDEX[type(r)]
                    if k:  # states, alarms, crashes: late ones count (the gate passes them hours late)
                        recent = _recent(s, k)
                        if r.ts_ms <= recent.floor_ts_ms or (r.ts_ms, eid) in recent.taken:
                            self.redelivered += 1
                            continue
                    else:
                        last_ts, last_ids = taken[0]
                        if r.ts_ms < last_ts or (r.ts_ms == last_ts and eid in last_ids):
                            self.redelivered += 1
                            continue
                out.append((vid, r))
        return out

    @staticmethod
    def _mark_taken(pairs: list[tuple[str, msgspec.Struct]], states: dict) -> None:
        """Per vehicle and record kind, the newest event time taken and the ids taken at it;
        for the kinds other than dynamics also the newest ids taken (``RecentIds``)."""
        kind_of = _KIND_INDEX
        for vid, group in groupby(pairs, _VID):
            recs = list(map(_RECORD, group))
            s = states[vid]
            if not s.taken:
                s.taken = [(-1, []) for _ in kind_of]
            kinds = set(map(type, recs))
            if kinds != {R.DynamicsV1}:
                _remember(s, [r for r in recs if type(r) is not R.DynamicsV1])
            if len(kinds) == 1:  # one kind (a vehicle's dynamics): the newest time and its ids at once
                k = kind_of[kinds.pop()]
                ts = list(map(_TS, recs))
                newest = max(ts)
                last_ts, last_ids = s.taken[k]
                if newest < last_ts:
                    continue
                at = [recs[ts.index(newest)].event_id] if ts.count(newest) == 1 else \
                    [r.event_id for r, t in zip(recs, ts) if t == newest]
                if newest > last_ts:
                    s.taken[k] = (newest, at)
                else:
                    last_ids.extend(at)
                continue
            for r in recs:
                k = kind_of[type(r)]
                last_ts, last_ids = s.taken[k]
                if r.ts_ms > last_ts:
                    s.taken[k] = (r.ts_ms, [r.event_id])
                elif r.ts_ms == last_ts:
                    last_ids.append(r.event_id)

    def flush(self) -> list[tuple[str, str, bytes]]:
        """Release records held too long, then close trips idle for more than 5 min
        of event time (called on a timer)."""
        now = self.clock()
        out = self._process(self._release(now))
        # event time says idle; also require silence in wall time, since another
        # topic's partition may still deliver this vehicle's closing park state
        quiet = [v for v in self.open_trips if now - self._arrived.get(v, 0.0) >= self.idle_wall_s]
        states, history = self._load(sorted(quiet))
        self.open_trips.difference_update(v for v in quiet if v not in states or states[v].trip is None)
        up, failing = self._confined(states, lambda st, _: flush_idle(st, self.watermark_ms, self.cells), lambda: sorted(states))
        for vid, exc in failing.items():  # its trip stays open until its next records
            self.open_trips.discard(vid)
            log.error("features: closing the idle trip of vehicle %s failed (%s: %s); it stays open until the "
                      "vehicle's next records", vid, type(exc).__name__, first_line(exc))
        self.open_trips.difference_update(v for v, s in up.states.items() if s.trip is None)
        return out + self._emit_update(up, history)

    def drain(self) -> list[tuple[str, str, bytes]]:
        """Release and process every held record now (the worker is giving up its
        partitions: the records are acked, so their next owner would not see them)."""
        pairs = [(vid, r) for vid, chunks in self._held.items() for c in chunks for r in c[3]]
        self._settled.extend(c[4] for chunks in self._held.values() for c in chunks if c[4] is not None)
        self._held.clear()
        return self._process(pairs)

    def _confined(self, states: dict, run: Callable[[dict, set | None], Update], vehicles_of: Callable[[], list[str]]
                  ) -> tuple[Update, dict[str, Exception]]:
        """``run(states, None)`` over the step's vehicles (``vehicles_of()``). Should it
        raise, each vehicle runs alone: those on which it raises are returned with their
        errors, their state untouched, and the step runs again, on freshly loaded states,
        over the others (their rows are those of one run: a vehicle's rows depend on its own
        records and state only). A failure of every vehicle of several, of no vehicle alone,
        or of ``max_failed_alone`` different vehicles one after another with no step passing
        in between, is taken for a defect of the step rather than of some vehicles' data:
        it is raised, and the worker stops."""
        try:
            up = run(states, None)
        except Exception:
            vehicles = vehicles_of()
            failing: dict[str, Exception] = {}
            for vid in vehicles:
                try:
                    run(self._load([vid])[0], {vid})
                except Exception as exc:
                    failing[vid] = exc
            if not failing:  # it fails together only
                raise
            passing = [v for v in vehicles if v not in failing]
            if not passing:
                alone = self._failed_alone | failing.keys()
                if len(vehicles) > 1 or len(alone) >= self.max_failed_alone:
                    raise  # every vehicle of several, or one after another: not some vehicles' data
                self._failed_alone = alone
                return Update(), failing
            up = run(self._load(passing)[0], set(passing))
        else:
            failing = {}
        if up.states:
            self._failed_alone = set()
        return up, failing

    def _quarantine(self, vid: str, recs: list[msgspec.Struct], exc: Exception) -> None:
        """Dead-letter the records of a vehicle the step failed on (a voltrisk defect the
        gate could not catch): to ``voltrisk.dlq.v1``, with the clean topic they came from,
        as JSON arrays like the clean topics' messages, so ``voltrisk dlq redrive`` can run
        them through the features again once the defect is fixed (records older than what
        the vehicle's state took meanwhile are then dropped as late or as redelivered)."""
        self.quarantined += len(recs)
        log.error("features: the step failed on vehicle %s (%s: %s); its %d records of this step go to %s; "
                  "the other vehicles go on", vid, type(exc).__name__, first_line(exc), len(recs), T.DLQ.name)
        by_topic: dict[str, list[msgspec.Struct]] = {}
        for r in sorted(recs, key=_TS):
            by_topic.setdefault(_CLEAN_TOPIC[type(r)], []).append(r)
        key = vid.encode()
        partition = str(T.partition_of(key, self.partitions)).encode() if self.partitions else b"0"
        for topic, rs in by_topic.items():
            for i in range(0, len(rs), DEAD_LETTER_RECORDS):
                chunk = rs[i:i + DEAD_LETTER_RECORDS]
                self._dead_letter(topic, key, _encode(chunk),
                                  f"the features step failed on vehicle {vid}'s records from ts_ms {chunk[0].ts_ms} "
                                  f"to {chunk[-1].ts_ms} ({type(exc).__name__}: {first_line(exc)})",
                                  [("source_partition", partition), ("records", str(len(chunk)).encode())])

    def _dead_letter_message(self, topic: str, key: bytes | None, value: bytes | None, exc: Exception) -> None:
        """A message the features cannot read: kept on the dead-letter topic as it came."""
        self.quarantined += 1
        log.error("features: a message of %s is not readable (%s: %s); it goes to %s", topic, type(exc).__name__,
                  first_line(exc), T.DLQ.name)
        self._dead_letter(topic, key, value or b"",
                          f"the features could not read this message ({type(exc).__name__}: {first_line(exc)})", [])

    def _dead_letter(self, topic: str, key: bytes | None, value: bytes, detail: str,
                     extra: list[tuple[str, bytes]]) -> None:
        """A ``features_error`` dead letter of ``value`` from ``topic``, with the headers the
        ``dlq`` table reads (the value as it is, for ``voltrisk dlq redrive``)."""
        reason = REASONS[QUARANTINED]
        self._dead.append((key, value, [
            ("source_topic", topic.encode()), ("error_class", reason.error_class.encode()),
            ("reason", QUARANTINED.encode()), ("message", f"{topic}: {detail}; {reason.fix}".encode()),
            ("source_value_bytes", str(len(value)).encode()), *extra,
        ]))

    def take_dead_letters(self) -> list[tuple[bytes | None, bytes, list[tuple[str, bytes]]]]:
        """(key, value, headers) of the dead letters of the steps since the last call: to
        send with those steps' rows, before their messages are acknowledged."""
        out, self._dead = self._dead, []
        return out

    def seal(self) -> int | None:
        """Set the state written since the last seal apart: it becomes durable (``commit``)
        only once Kafka acknowledged the rows computed with it. Were it durable before,
        a crash between the two would lose those rows: the redelivered records would be
        skipped as already in their vehicle's state. None for a store kept in memory."""
        seal = getattr(self.store, "seal", None)
        return seal() if seal is not None else None

    def commit(self, seal: int | None) -> None:
        if seal is not None:
            self.store.commit(seal)

    def rollback(self) -> None:
        """A step's rows did not reach Kafka: keep the state as it was before the first
        step not committed, for the process that resumes from it (this one stops)."""
        rollback = getattr(self.store, "rollback", None)
        if rollback is not None:
            rollback()

    def keep_only(self, partitions: set[int]) -> int:
        """The worker now owns these partitions of the clean topics: forget the vehicles of
        the others (their open trips, idle timers, pacing), or its idle timer would close
        the trips of vehicles another worker carries on, from the stale state left here,
        with rows and a changelog record newer than that worker's. Returns how many."""
        if not self.partitions:
            return 0
        known = set(self.open_trips) | self._arrived.keys() | self._newest.keys() | self._last_scored.keys()
        mine = {v for v in known if T.partition_of(v.encode(), self.partitions) in partitions}
        for book in (self._arrived, self._newest, self._last_scored):
            for v in [v for v in book if v not in mine]:
                del book[v]
        self.open_trips.intersection_update(mine)
        return len(known) - len(mine)

    def take_changes(self) -> list[tuple[str, bytes, bytes]]:
        """(vehicle id, store key, value) of the state written since the last call: the
        changelog that lets another worker take a vehicle over where this one left it."""
        out = [(k[1:].decode(), k, v) for k, v in self._changes.items()]
        self._changes.clear()
        return out

    def restore(self, changelog: Iterable[tuple[bytes, bytes]], complete: bool = True) -> int:
        """Take over vehicles from the changelog's (store key, value) records, oldest
        first. Per vehicle the newer of the local and the changelog state wins, with
        its own history (state and history go together: a closed day moves from one
        to the other). Returns the number of vehicles taken from the changelog."""
        now = self.clock()
        latest: dict[bytes, bytes] = {}
        for key, value in changelog:
            latest[key] = value  # compaction semantics: the last value of a key counts
        taken = 0
        for key, value in latest.items():
            if key[:1] != b"s":
                continue
            vid = key[1:]
            state = decode_state(value)
            local_raw = self.store.get(key)
            local = decode_state(local_raw) if local_raw is not None else None
            # the changelog's on a tie: a new owner may change a state without moving its
            # event time (a record older than it), and the local copy is never ahead (it is
            # written after the changelog); not when the changelog was not read to its end
            # (an older value of the key may be the last one read)
            if local is None or local.seen_ts_ms < state.seen_ts_ms or (complete and local.seen_ts_ms == state.seen_ts_ms
                                                                         and local_raw != value):
                self.store[key] = value
                h = latest.get(b"h" + vid)
                if h is not None:
                    self.store[b"h" + vid] = h
                elif b"h" + vid in self.store:
                    del self.store[b"h" + vid]
                taken += 1
            else:
                state = local
            if state.trip is not None:  # its idle timer starts now, not at this process's start
                self.open_trips.add(vid.decode())
                self._arrived[vid.decode()] = now
            self.watermark_ms = max(self.watermark_ms, state.seen_ts_ms)
        flush = getattr(self.store, "flush", None)
        if flush is not None:
            flush()
        return taken

    def _score(self, states: dict, history: dict) -> list[tuple[str, str, bytes]]:
        """Scores of the vehicles of ``states`` not scored for ``score_every_ms``."""
        now_ms = int(self.clock() * 1000)
        last = self._last_scored
        due = {v: s for v, s in states.items() if now_ms - last.get(v, -10**15) >= self.score_every_ms}
        if not due:
            return []
        out = []
        by_day: dict[int, dict] = {}
        for v, st in due.items():  # each vehicle's window ends on its own latest day
            by_day.setdefault(int(local_day(st.seen_ts_ms)), {})[v] = st
        for day, group in by_day.items():
            feats = vehicle_features_from_states(group, day, {v: history.get(v, []) for v in group})
            out.extend((VEHICLE, r.vehicle_id, _encode(r)) for r in vehicle_feature_records(feats, now_ms))
            scores = score_records(feats, self.scorer, now_ms, {v: s.seen_ts_ms for v, s in group.items()})
            self.scores_out += len(scores)
            out.extend((SCORES, r.vehicle_id, _encode(r)) for r in scores)
            for r in scores:  # a vehicle without a day of driving has no score yet: due with its next records
                last[r.vehicle_id] = now_ms
        return out


def _recent(s: VehicleState, k: int) -> RecentIds:
    """The state's newest ids of kind ``k``; a state written before they were kept starts
    from what it knows: ids at its newest time of that kind, nothing before it."""
    if not s.recent:
        s.recent = [RecentIds() for _ in _KIND_INDEX]
        for kind, (last_ts, last_ids) in enumerate(s.taken):
            if kind and last_ts >= 0:
                s.recent[kind] = RecentIds(last_ts - 1, [(last_ts, e) for e in last_ids])
    return s.recent[k]


def _remember(s: VehicleState, recs: list) -> None:
    """Add records (not dynamics) to their kind's newest ids, keeping ``RECENT_IDS`` a kind."""
    for r in recs:
        recent = _recent(s, _KIND_INDEX[type(r)])
        recent.taken.append((r.ts_ms, r.event_id))
    for recent in s.recent:
        if len(recent.taken) > RECENT_IDS:
            recent.taken.sort()
            cut = len(recent.taken) - RECENT_IDS
            recent.floor_ts_ms = max(recent.floor_ts_ms, recent.taken[cut - 1][0])
            del recent.taken[:cut]


def pack(rows: list[tuple[str, str, bytes]]) -> list[tuple[str, bytes, bytes]]:
    """One message per (topic, vehicle): a JSON array of that vehicle's rows."""
    grouped: dict[tuple[str, str], list[bytes]] = {}
    for topic, vid, value in rows:
        grouped.setdefault((topic, vid), []).append(value)
    return [(topic, vid.encode(), b"[" + b",".join(vals) + b"]") for (topic, vid), vals in grouped.items()]


__all__ = ["CLEAN_INPUTS", "FEATURE_INPUTS", "QUARANTINED", "FeatureEngine", "pack", "redriven_topic"]
