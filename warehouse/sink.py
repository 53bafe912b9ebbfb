"""Kafka → ClickHouse sink: batched, idempotent, at-least-once.

Per poll the sink takes what is buffered (bounded in rows and time), writes one
insert per topic-partition with ``insert_deduplication_token =
topic:partition:first-last`` (a retried batch is dropped by ClickHouse), and
commits the offsets only after every insert of the poll succeeded. Tables are
ReplacingMergeTree on ``event_id`` so a batch re-cut differently after a crash
still collapses on merge and under ``FINAL``.

Telemetry rows go in as Arrow tables: the clean records are decoded into their
msgspec types, turned into columns, and the sink's own columns (vehicle id,
partition, offset, H3 cell, timestamps) are added per message, not per record.
ClickHouse takes Arrow at about twice the rate it parses JSONEachRow, and the
sink spends less CPU shaping columns than splicing JSON. Claims and derived rows
stay JSONEachRow (nested values, few rows).
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field
from operator import attrgetter
from types import SimpleNamespace
from typing import Callable

import msgspec
import numpy as np
import pyarrow as pa
from msgspec import inspect as mi

from fraudring.rows import alert_row, decision_row
from stream import records as R
from stream import topics as T
from stream.features.cells import cell_of, cells_of
from voltrisk.errors import first_line

log = logging.getLogger("voltrisk.sink")


class _Position(msgspec.Struct):
    lat: float = 0.0
    lon: float = 0.0


_pos_decoder = msgspec.json.Decoder(_Position)
_batch_pos_decoder = msgspec.json.Decoder(list[_Position])
_batch_raw_decoder = msgspec.json.Decoder(list[msgspec.Raw])
_encode = msgspec.json.encode

INSERT_SETTINGS = {
    "async_insert": 0,  # chDB turns async inserts on by default; the sink batches itself
    "input_format_skip_unknown_fields": 1,
    "input_format_json_read_objects_as_strings": 1,
    "input_format_json_read_arrays_as_strings": 1,
    "input_format_defaults_for_omitted_fields": 1,
    "date_time_input_format": "best_effort",
}
# Telemetry (the Arrow inserts): a ReplacingMergeTree collapses a re-delivered event_id
# on merge, and every reader that counts uses FINAL, so the insert does not also sort out
# duplicates within its own block (optimize_on_insert would cost ~10 % of each insert).
TELEMETRY_INSERT_SETTINGS = dict(INSERT_SETTINGS, optimize_on_insert=0)


def _headers(msg) -> dict[str, bytes]:
    return {k: v for k, v in (msg.headers or ())}


def _int_header(h: dict[str, bytes], name: str) -> int:
    try:
        return int(h.get(name, b"0"))
    except ValueError:
        return 0


def h3_r8(lat: float, lon: float) -> int:
    """H3 resolution-8 cell of a WGS-84 position as UInt64 (0 for no fix).

    >>> h3_r8(31.23, 121.47)
    613344512447610879
    """
    if lat == 0.0 and lon == 0.0:
        return 0
    return cell_of(lat, lon)


def record_row(msg, now_ms: int) -> bytes:
    """JSONEachRow lines for a gated message (one record or a batch of one
    vehicle's records): sink columns + the record's own fields."""
    if msg.value[:1] == b"[":
        raws = _batch_raw_decoder.decode(msg.value)
        positions = _batch_pos_decoder.decode(msg.value)
        cells: dict[tuple[float, float], bytes] = {}
        lines = []
        for raw, pos in zip(raws, positions):
            prefix = cells.get((pos.lat, pos.lon))
            if prefix is None:
                prefix = cells[(pos.lat, pos.lon)] = _prefix(msg, now_ms, pos)
            lines.append(prefix + bytes(raw)[1:])
        return b"\n".join(lines)
    return _prefix(msg, now_ms, _pos_decoder.decode(msg.value)) + msg.value[1:]


def _prefix(msg, now_ms: int, pos: _Position) -> bytes:
    h = _headers(msg)
    extra = {
        "vehicle_id": (msg.key or b"").decode("utf-8", "replace"),
        "key_version": _int_header(h, "key_version"),
        "carmaker": h.get("carmaker", b"").decode("utf-8", "replace"),
        "kafka_partition": msg.partition,
        "kafka_offset": msg.offset,
        "sent_ts_ms": _int_header(h, "sent_ts_ms"),
        "ingest_ts_ms": _int_header(h, "ingest_ts_ms"),
        "stored_ts_ms": now_ms,
        "h3_r8": h3_r8(pos.lat, pos.lon),
    }
    return _encode(extra)[:-1] + b","


_NUMPY = {pa.float64(): np.float64, pa.int64(): np.int64, pa.bool_(): np.bool_}


def _nullable(t: mi.Type) -> bool:
    if isinstance(t, mi.Metadata):
        return _nullable(t.type)
    return isinstance(t, mi.UnionType) and any(isinstance(a, mi.NoneType) for a in t.types)


def _arrow_type(t: mi.Type) -> pa.DataType:
    """The Arrow type of a record field (ClickHouse casts it to the column's type)."""
    if isinstance(t, mi.Metadata):  # constraints and descriptions around the type
        return _arrow_type(t.type)
    if isinstance(t, mi.UnionType):  # Optional[X]: X with nulls
        inner = [a for a in t.types if not isinstance(a, mi.NoneType)]
        if len(inner) == 1:
            return _arrow_type(inner[0])
    if isinstance(t, (mi.StrType, mi.LiteralType)):
        return pa.string()
    if isinstance(t, mi.BoolType):
        return pa.bool_()
    if isinstance(t, mi.IntType):
        return pa.int64()
    if isinstance(t, mi.FloatType):
        return pa.float64()
    if isinstance(t, (mi.ListType, mi.TupleType, mi.VarTupleType)):
        return pa.list_(_arrow_type(t.item_type))
    raise TypeError(f"no Arrow column for a field of type {t!r}")


class Columnar:
    """Clean telemetry messages (one record or a vehicle's batch) of one record type
    collected for one Arrow insert: the records, and per message the sink's own
    columns, which are the same for each of its records."""

    SINK = (("vehicle_id", pa.string()), ("key_version", pa.int64()), ("carmaker", pa.string()),
            ("kafka_partition", pa.int64()), ("kafka_offset", pa.int64()), ("sent_ts_ms", pa.int64()),
            ("ingest_ts_ms", pa.int64()), ("stored_ts_ms", pa.int64()))

    def __init__(self, record_type: type[msgspec.Struct]):
        self.record_type = record_type
        self.one = msgspec.json.Decoder(record_type)
        self.many = msgspec.json.Decoder(list[record_type])
        fields = mi.type_info(record_type).fields
        self.fields = [(f.name, _arrow_type(f.type)) for f in fields]
        # fields that are never null and fixed-width: gathered straight into numpy arrays
        self.dense = {name: _NUMPY[t] for (name, t), f in zip(self.fields, fields) if t in _NUMPY and not _nullable(f.type)}

    @staticmethod
    def new() -> tuple[list, list, list]:
        """(records, per-message sink columns, records per message)"""
        return [], [], []

    def decode(self, value: bytes) -> list:
        return self.many.decode(value) if value[:1] == b"[" else [self.one.decode(value)]

    def add(self, acc: tuple[list, list, list], msg, now_ms: int) -> None:
        """Decode ``msg`` and add its records; raises (and adds nothing) if it does not decode."""
        recs = self.decode(msg.value)
        if not recs:
            return
        h = _headers(msg)
        acc[0].extend(recs)
        acc[1].append(((msg.key or b"").decode("utf-8", "replace"), _int_header(h, "key_version"),
                       h.get("carmaker", b"").decode("utf-8", "replace"), msg.partition, msg.offset,
                       _int_header(h, "sent_ts_ms"), _int_header(h, "ingest_ts_ms"), now_ms))
        acc[2].append(len(recs))

    def table(self, acc: tuple[list, list, list]) -> pa.Table:
        recs, per_message, counts = acc
        names, arrays = [], []
        n = len(recs)
        for name, t in self.fields:
            names.append(name)
            dtype = self.dense.get(name)
            if dtype is not None:
                arrays.append(pa.array(np.fromiter(map(attrgetter(name), recs), dtype, n), t))
            else:
                arrays.append(pa.array(list(map(attrgetter(name), recs)), t))
        counts = np.asarray(counts)
        for (name, t), values in zip(self.SINK, zip(*per_message)):
            names.append(name)
            arrays.append(pa.array(np.repeat(np.asarray(values, dtype=object if t == pa.string() else np.int64), counts), t))
        lat, lon = arrays[names.index("lat")].to_numpy(), arrays[names.index("lon")].to_numpy()
        cells = cells_of(lat, lon)
        cells[(lat == 0.0) & (lon == 0.0)] = 0  # no fix
        return pa.Table.from_arrays(arrays + [pa.array(cells, pa.uint64())], names=names + ["h3_r8"])


def dlq_row(msg, now_ms: int) -> bytes:
    """One row of the ``dlq`` table from a dead-letter message's headers."""
    h = _headers(msg)
    return _encode(
        {
            "source_topic": h.get("source_topic", b"").decode("utf-8", "replace"),
            "source_partition": _int_header(h, "source_partition"),
            "source_offset": _int_header(h, "source_offset"),
            "error_class": h.get("error_class", b"").decode("utf-8", "replace"),
            "reason": h.get("reason", b"").decode("utf-8", "replace"),
            "message": h.get("message", b"").decode("utf-8", "replace"),
            "key": (msg.key or b"").decode("utf-8", "replace"),
            "payload": (msg.value or b"")[:4096].decode("utf-8", "replace"),
            "dlq_partition": msg.partition,
            "dlq_offset": msg.offset,
            "stored_ts_ms": now_ms,
        }
    )


def plain_rows(msg, now_ms: int) -> bytes:
    """JSONEachRow lines of a derived record or array of records (columns = fields)."""
    if msg.value[:1] == b"[":
        return b"\n".join(bytes(r) for r in _batch_raw_decoder.decode(msg.value))
    msgspec.json.decode(msg.value)  # validates: a broken value is rejected, not inserted
    return msg.value


@dataclass(frozen=True)
class Route:
    table: str
    row: Callable[[object, int], bytes] | None
    # columns holding the Kafka partition/offset a row came from, so a restarted sink
    # skips what an earlier run already inserted (``Sink._unstored``)
    partition_col: str | None = "kafka_partition"
    offset_col: str = "kafka_offset"
    own_rows: str = "1"
    columnar: Columnar | None = None  # Arrow insert of typed records instead of ``row``


ROUTES: dict[str, Route] = {
    T.clean_name(T.DYNAMICS.name): Route("telemetry_dynamics", None, columnar=Columnar(R.DynamicsV1)),
    T.clean_name(T.STATE.name): Route("telemetry_state", None, columnar=Columnar(R.StateV1)),
    T.clean_name(T.ALARM.name): Route("telemetry_alarm", None, columnar=Columnar(R.AlarmV1)),
    T.clean_name(T.CRASH.name): Route("telemetry_crash", None, columnar=Columnar(R.CrashV1)),
    T.clean_name(T.FNOL.name): Route("claims_fnol", record_row),
    T.DLQ.name: Route("dlq", dlq_row, "dlq_partition", "dlq_offset", "reason != 'sink_rejected'"),
    # derived rows are versioned (ReplacingMergeTree on their natural key): a replay collapses
    "trips.v1": Route("trips", plain_rows, None),
    "features.daily.v1": Route("vehicle_daily", plain_rows, None),
    "features.cell.v1": Route("cell_visits", plain_rows, None),
    "features.crash.v1": Route("cell_crashes", plain_rows, None),
    "features.vehicle.v1": Route("vehicle_features", plain_rows, None),
    "scores.ubi.v1": Route("scores", plain_rows, None),
    T.ALERTS.name: Route("fraud_alerts", alert_row, None),
    T.FRAUD_CLAIMS.name: Route("fraud_claims", plain_rows, None),
    T.FRAUD_ENTITIES.name: Route("fraud_claim_entities", plain_rows, None),
    T.DECISIONS.name: Route("fraud_decisions", decision_row, None),
}


@dataclass
class SinkStats:
    batches: int = 0
    rows: int = 0
    retries: int = 0
    rejected_rows: int = 0
    skipped_already_stored: int = 0
    by_table: dict[str, int] = field(default_factory=dict)


class Sink:
    """Consumes the stored topics and inserts them into the warehouse."""

    def __init__(self, client, consumer_factory: Callable[[], object], *, batch_rows: int, batch_ms: int,
                 routes: dict[str, Route] | None = None):
        self.client = client
        self.routes = routes or ROUTES
        self._consumer_factory = consumer_factory
        self.batch_rows = batch_rows
        self.batch_ms = batch_ms
        self.stats = SinkStats()
        self._stopping = asyncio.Event()
        self._stored: dict[tuple[str, int], int] = {}  # (topic, partition) -> highest offset in the table

    def forget_watermarks(self) -> None:
        """Called on rebalance: another sink may have written our new partitions."""
        self._stored.clear()

    async def _watermark(self, topic: str, partition: int) -> int:
        key = (topic, partition)
        if key not in self._stored:
            r = self.routes[topic]
            if r.partition_col is None:
                return -1
            sql = (f"SELECT max({r.offset_col}), count() FROM {r.table} "
                   f"WHERE {r.partition_col} = {int(partition)} AND {r.own_rows}")
            top, n = (await asyncio.to_thread(self.client.query, sql)).result_rows[0]
            self._stored[key] = int(top) if n else -1
            log.info("%s[%d]: resuming; highest offset already in %s is %d", topic, partition, r.table, self._stored[key])
        return self._stored[key]

    def stop(self) -> None:
        self._stopping.set()

    async def run(self) -> None:
        from aiokafka import ConsumerRebalanceListener

        sink = self

        buffered: dict = {}  # partition -> messages fetched, not yet stored

        class Rebalance(ConsumerRebalanceListener):
            async def on_partitions_revoked(self, revoked):
                # not committed: whoever owns them next reads them again (this consumer too,
                # from the committed offset), so they must not stay buffered as well
                for tp in revoked:
                    buffered.pop(tp, None)

            async def on_partitions_assigned(self, assigned):
                sink.forget_watermarks()

        consumer = self._consumer_factory()
        consumer.subscribe(sorted(self.routes), listener=Rebalance())
        await consumer.start()
        log.info("sink consuming %s", ", ".join(sorted(self.routes)))
        try:
            deadline = None
            while not self._stopping.is_set():
                wait_ms = self.batch_ms if deadline is None else max(0, int((deadline - time.monotonic()) * 1000))
                polled = await consumer.getmany(timeout_ms=wait_ms, max_records=self.batch_rows)
                for tp, msgs in polled.items():
                    have = buffered.setdefault(tp, [])
                    if have and msgs[0].offset <= have[-1].offset:  # read again from an earlier position
                        msgs = [m for m in msgs if m.offset > have[-1].offset]
                    have.extend(msgs)
                buffered = {tp: msgs for tp, msgs in buffered.items() if msgs}
                if not buffered:
                    deadline = None
                    continue
                if deadline is None:
                    deadline = time.monotonic() + self.batch_ms / 1000
                if sum(map(len, buffered.values())) < self.batch_rows and time.monotonic() < deadline:
                    continue
                batch = dict(buffered)
                await self._flush(batch)
                await self._commit(consumer, batch)
                for tp, msgs in batch.items():  # what a rebalance during the flush did not take back
                    if buffered.get(tp) is msgs:
                        del buffered[tp]
                deadline = None
        finally:
            await consumer.stop()

    async def _commit(self, consumer, batch: dict) -> None:
        """At-least-once: offsets move only after every insert of the batch succeeded, and
        only for partitions still assigned here (a moved one's owner skips what is stored)."""
        from aiokafka.errors import CommitFailedError, IllegalStateError

        owned = consumer.assignment()
        offsets = {tp: msgs[-1].offset + 1 for tp, msgs in batch.items() if tp in owned}
        if not offsets:
            return
        try:
            await consumer.commit(offsets)
        except (CommitFailedError, IllegalStateError) as exc:
            log.warning("offsets %s not committed (%s); the rows are stored, and whoever reads them again skips them",
                        offsets, first_line(exc))

    async def _flush(self, buffered: dict) -> None:
        """One insert per table for everything buffered (size and time bounded)."""
        by_topic: dict[str, list] = {}
        for tp, msgs in buffered.items():
            by_topic.setdefault(tp.topic, []).append((tp.partition, msgs))
        for topic, parts in by_topic.items():
            await self._write(topic, sorted(parts, key=lambda p: p[0]))

    async def _write(self, topic: str, parts: list[tuple[int, list]]) -> None:
        route = self.routes[topic]
        now_ms = int(time.time() * 1000)
        lines, rejected, ranges = [], [], []
        cols = route.columnar.new() if route.columnar else None
        for partition, msgs in parts:
            stored = await self._watermark(topic, partition)
            if msgs[0].offset <= stored:
                seen = [m for m in msgs if m.offset <= stored]
                missing = await self._unstored(route, partition, seen)
                self.stats.skipped_already_stored += len(seen) - len(missing)
                log.info("%s[%d]: offsets %d-%d already stored by an earlier run; skipped%s", topic, partition,
                         seen[0].offset, seen[-1].offset,
                         f", but for rows of {len(missing)} messages an interrupted insert left out: stored now" if missing else "")
                msgs = missing + msgs[len(seen):]
            if not msgs:
                continue
            ranges.append((partition, msgs[0].offset, msgs[-1].offset))
            for m in msgs:
                try:
                    if m.value is None:
                        raise ValueError("no value (a tombstone): it holds no record")
                    if cols is not None:
                        route.columnar.add(cols, m, now_ms)
                    else:
                        lines.append(route.row(m, now_ms))
                except (msgspec.DecodeError, msgspec.ValidationError, UnicodeDecodeError, ValueError) as exc:
                    rejected.append((partition, m, exc))
        if not ranges:
            return
        if rejected:  # first: a restart skips what the main insert stored, and would not see these
            await self._reject(topic, rejected, now_ms)
        # one insert covers every partition's range (ClickHouse writes it a table partition
        # at a time: a restart looks for rows an interrupted one left out, ``_unstored``)
        token = topic + ":" + ",".join(f"{p}:{a}-{b}" for p, a, b in ranges)
        if cols is not None and cols[0]:
            table = route.columnar.table(cols)
            await self._insert_with_retry(route.table, table, token, table.num_rows)
        elif lines:
            body = b"\n".join(lines)
            await self._insert_with_retry(route.table, body, token, body.count(b"\n") + 1)
        for p, _, last in ranges:
            self._stored[(topic, p)] = last
        self.stats.batches += 1

    async def _unstored(self, route: Route, partition: int, msgs: list) -> list:
        """Of ``msgs`` (offsets at or below the highest the table holds for the partition),
        what an earlier run did not store. An insert of rows of several table partitions
        (two days) is written one partition at a time, so a process killed in between
        leaves part of it stored: telemetry keeps each message's records not stored (by
        event id; a message of just those where some were), other tables each message
        with fewer rows stored than it makes. A message that does not shape stays, to be
        rejected as usual."""
        lo, hi, p = int(msgs[0].offset), int(msgs[-1].offset), int(partition)
        where = f"{route.partition_col} = {p} AND {route.offset_col} BETWEEN {lo} AND {hi} AND {route.own_rows}"
        out = []
        if route.columnar is not None:
            res = await asyncio.to_thread(self.client.query, f"SELECT {route.offset_col}, event_id FROM {route.table} WHERE {where}")
            stored = {(int(o), e) for o, e in res.result_rows}
            for m in msgs:
                try:
                    recs = route.columnar.decode(m.value)
                except (msgspec.DecodeError, msgspec.ValidationError):
                    out.append(m)
                    continue
                keep = [r for r in recs if (m.offset, r.event_id) not in stored]
                if len(keep) == len(recs):
                    out.append(m)
                elif keep:
                    out.append(SimpleNamespace(key=m.key, value=_encode(keep), headers=m.headers, partition=m.partition,
                                               offset=m.offset))
            return out
        res = await asyncio.to_thread(
            self.client.query, f"SELECT {route.offset_col}, count() FROM {route.table} WHERE {where} GROUP BY {route.offset_col}")
        counts = {int(o): int(n) for o, n in res.result_rows}
        for m in msgs:
            try:
                rows = route.row(m, 0).count(b"\n") + 1
            except (msgspec.DecodeError, msgspec.ValidationError, UnicodeDecodeError, ValueError):
                rows = 1
            if counts.get(m.offset, 0) < rows:
                out.append(m)
        return out

    async def _insert_with_retry(self, table: str, body: bytes | pa.Table, token: str, n: int) -> None:
        delay = 0.2
        attempt = 0
        while True:
            try:
                await asyncio.to_thread(self._insert, table, body, token)
                self.stats.rows += n
                self.stats.by_table[table] = self.stats.by_table.get(table, 0) + n
                if attempt:
                    log.warning("insert %s into %s succeeded after %d retries", token, table, attempt)
                return
            except Exception as exc:  # the warehouse may be down, full or restarting: keep the offsets, retry
                attempt += 1
                self.stats.retries += 1
                log.warning("insert %s into %s failed (%s); retrying in %.1fs, offsets not committed",
                            token, table, first_line(exc), delay)
                if self._stopping.is_set():
                    raise
                await asyncio.sleep(delay)
                delay = min(delay * 2, 10.0)

    def _insert(self, table: str, body: bytes | pa.Table, token: str) -> None:
        if isinstance(body, pa.Table):
            self.client.insert_arrow(table, body, settings=dict(TELEMETRY_INSERT_SETTINGS, insert_deduplication_token=token))
        else:
            self.client.raw_insert(table, None, body, settings=dict(INSERT_SETTINGS, insert_deduplication_token=token),
                                   fmt="JSONEachRow")

    async def _reject(self, topic: str, rejected: list, now_ms: int) -> None:
        """Rows the sink cannot even shape are stored in the dlq table, never dropped."""
        rows = []
        for partition, m, exc in rejected:
            rows.append(_encode({
                "source_topic": topic, "source_partition": partition, "source_offset": m.offset,
                "error_class": type(exc).__name__, "reason": "sink_rejected",
                "message": f"{topic} offset {m.offset}: {exc}", "key": (m.key or b"").decode("utf-8", "replace"),
                "payload": (m.value or b"")[:4096].decode("utf-8", "replace"),
                "dlq_partition": partition, "dlq_offset": m.offset, "stored_ts_ms": now_ms,
            }))
            log.warning("%s offset %d rejected by the sink: %s; stored in table dlq", topic, m.offset, exc)
        self.stats.rejected_rows += len(rows)
        token = "sinkreject:" + topic + ":" + ",".join(f"{p}:{m.offset}" for p, m, _ in rejected)
        await self._insert_with_retry("dlq", b"\n".join(rows), token, len(rows))
