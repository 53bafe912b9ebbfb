"""The sink's Arrow path: every telemetry record type lands in its chDB table with
the values it carried, the sink's columns per message, and the H3 cell of its position."""

from __future__ import annotations

import time
from types import SimpleNamespace

import msgspec
import pytest

from contracts.examples import RAW_EXAMPLES
from stream import topics as T
from warehouse_helpers import migrated_warehouse
from warehouse.sink import INSERT_SETTINGS, ROUTES, h3_r8

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def client(tmp_path_factory):
    with migrated_warehouse(tmp_path_factory.mktemp("columns") / "wh") as c:
        yield c


def _msg(records, key: bytes, partition: int, offset: int, batch: bool = True):
    value = msgspec.json.encode(records if batch else records[0])
    return SimpleNamespace(value=value, key=key, partition=partition, offset=offset,
                           headers=[("key_version", b"3"), ("carmaker", b"oem-a"), ("sent_ts_ms", b"1700000000123"),
                                    ("ingest_ts_ms", b"1700000000456")])


def _insert(client, topic: str, msgs, now_ms: int) -> int:
    route = ROUTES[topic]
    cols = route.columnar.new()
    for m in msgs:
        route.columnar.add(cols, m, now_ms)
    table = route.columnar.table(cols)
    client.insert_arrow(route.table, table, settings=dict(INSERT_SETTINGS, insert_deduplication_token=f"t:{topic}:{now_ms}"))
    return table.num_rows


@pytest.mark.parametrize("raw", [T.DYNAMICS.name, T.STATE.name, T.ALARM.name, T.CRASH.name])
def test_each_record_type_is_stored_field_for_field(client, raw):
    ex = RAW_EXAMPLES[raw].record
    now_ms = int(time.time() * 1000)
    recs = [msgspec.structs.replace(ex, event_id=f"col-{raw}-{i}", ts_ms=now_ms - 60_000 + i, lat=31.2 + i * 0.01,
                                    lon=121.4 + i * 0.01) for i in range(5)]
    if hasattr(ex, "headway_s"):  # a missing optional value stays NULL
        recs[1] = msgspec.structs.replace(recs[1], headway_s=None)
    recs[4] = msgspec.structs.replace(recs[4], lat=0.0, lon=0.0)  # no fix: cell 0
    msgs = [_msg(recs[:3], b"veh-a", 2, 40), _msg(recs[3:4], b"veh-b", 5, 7, batch=False), _msg(recs[4:], b"veh-b", 5, 8)]
    table = ROUTES[T.clean_name(raw)].table
    assert _insert(client, T.clean_name(raw), msgs, now_ms) == 5

    fields = list(type(ex).__struct_fields__)
    got = client.query(f"SELECT {', '.join(fields)}, vehicle_id, key_version, carmaker, kafka_partition, kafka_offset, "
                       f"sent_ts_ms, ingest_ts_ms, stored_ts_ms, h3_r8 FROM {table} WHERE event_id LIKE 'col-%' "
                       "ORDER BY event_id").result_rows
    assert len(got) == 5
    where = [("veh-a", 2, 40)] * 3 + [("veh-b", 5, 7), ("veh-b", 5, 8)]
    for row, rec, (vid, part, off) in zip(got, recs, where):
        stored = dict(zip(fields, row[:len(fields)]))
        for name in fields:
            want = getattr(rec, name)
            if isinstance(want, float):  # Float32 columns
                assert stored[name] == pytest.approx(want, rel=1e-6, abs=1e-6), name
            elif isinstance(want, list):
                assert stored[name] == pytest.approx(want, rel=1e-6), name
            else:
                assert stored[name] == want, name
        assert row[len(fields):] == (vid, 3, "oem-a", part, off, 1700000000123, 1700000000456, now_ms, h3_r8(rec.lat, rec.lon))
    assert got[4][-1] == 0


def test_a_message_that_does_not_decode_adds_nothing(client):
    route = ROUTES[T.clean_name(T.DYNAMICS.name)]
    cols = route.columnar.new()
    good = _msg([RAW_EXAMPLES[T.DYNAMICS.name].record], b"veh-c", 0, 1)
    route.columnar.add(cols, good, 1)
    bad = SimpleNamespace(value=b'[{"event_id": "x", "ts_ms": "soon"}]', key=b"veh-c", partition=0, offset=2, headers=[])
    with pytest.raises(msgspec.ValidationError):
        route.columnar.add(cols, bad, 1)
    records, per_message, counts = cols
    assert (len(records), len(per_message), counts) == (1, 1, [1])


@pytest.mark.parametrize("raw", [T.DYNAMICS.name, T.STATE.name, T.ALARM.name, T.CRASH.name])
def test_dense_columns_equal_the_plain_conversion(raw):
    """Never-null numeric and bool fields go through numpy; the table is the one the
    plain per-value conversion gives, nulls and lists included."""
    from warehouse.sink import Columnar

    ex = RAW_EXAMPLES[raw].record
    nullable = [f.name for f in msgspec.structs.fields(ex) if f.default is None]
    recs = [msgspec.structs.replace(ex, event_id=f"d-{i}", ts_ms=ex.ts_ms + i,
                                    **({nullable[0]: None} if nullable and i % 2 else {})) for i in range(7)]
    fast, plain = Columnar(type(ex)), Columnar(type(ex))
    plain.dense = {}
    tables = []
    for c in (fast, plain):
        acc = c.new()
        c.add(acc, _msg(recs[:4], b"v1-a", 0, 1), 5)
        c.add(acc, _msg(recs[4:], b"v1-b", 1, 9), 5)
        tables.append(c.table(acc))
    assert tables[0].equals(tables[1])
    assert tables[0].num_rows == 7
    if raw == T.DYNAMICS.name:
        assert {"ts_ms", "speed_kmh", "lat", "fcw"} <= set(fast.dense)
        assert "headway_s" not in fast.dense and tables[0].column("headway_s").null_count == 3


def test_a_retry_names_an_error_by_its_first_line_or_its_type_when_it_has_no_message():
    """The sink's and the fraud agent's retry warnings: an error raised without a message
    (a bare ``TimeoutError()``) used to raise IndexError inside the sink's retry loop."""
    from voltrisk.errors import first_line

    assert first_line(TimeoutError()) == "TimeoutError"
    assert first_line(ConnectionError("refused\nat 127.0.0.1:8123")) == "refused"
    assert first_line(ValueError("x" * 300)) == "x" * 200
