"""Fraud alerts through the sink into the real warehouse (chDB): how many of the ring's
claims investigators had confirmed (the engine's ``ring_confirmed``) is stored, and the
investigators' queue puts those rings first, as the engine ranks them; an alert
without the key (an older engine) and a row stored before migration 0027 read 0."""

from __future__ import annotations

import asyncio
import shutil
from types import SimpleNamespace

import msgspec
import pytest

from stream import topics as T
from voltrisk.settings import WarehouseSettings
from warehouse.client import writer_client
from warehouse.migrate import MIGRATIONS_DIR, drift, migrate
from warehouse.sink import Sink

pytestmark = pytest.mark.integration

T0 = 1_780_000_000_000
CONFIRMED_REASON = "ring holds 2 claims confirmed as fraud by investigators (latest 2026-05-28)"


def _alert(cid: str, saving: float, **more) -> dict:
    """An alert as the engine sends it on fraud.alerts.v1."""
    return {"alert_id": f"alert-{cid}", "claim_id": cid, "ring_id": f"ring-{cid}", "members": [cid, f"{cid}-b"],
            "ring_claims": 2, "ring_score": 0.5, "score": 0.5, "amount_eur": saving * 2, "expected_saving_eur": saving,
            "verdict": "consistent", "evidence": [], "reasons": ["shares a phone with 1 other claim(s) within 90 days"],
            "claim_ts_ms": T0, "created_ts_ms": T0, "version": T0} | more


def _sink_stores(client, alerts: list[dict], first_offset: int = 0) -> None:
    msgs = [SimpleNamespace(key=a["claim_id"].encode(), value=msgspec.json.encode(a), headers=[], partition=0,
                            offset=first_offset + i, topic=T.ALERTS.name) for i, a in enumerate(alerts)]
    sink = Sink(client, lambda: None, batch_rows=1_000, batch_ms=50)
    asyncio.run(sink._write(T.ALERTS.name, [(0, msgs)]))
    assert sink.stats.rejected_rows == 0
    assert (sink.stats.rows, sink.stats.by_table) == (len(alerts), {"fraud_alerts": len(alerts)})  # a row an alert


@pytest.fixture
def warehouse(tmp_path):
    """A writer client and settings of a new embedded warehouse, not yet migrated."""
    settings = WarehouseSettings(clickhouse_dsn=f"chdb://{tmp_path / 'wh'}")
    client = writer_client(settings)
    try:
        yield client, settings
    finally:
        client.close()


def test_alerts_of_rings_holding_confirmed_fraud_lead_the_queue_with_their_count(warehouse):
    client, settings = warehouse
    migrate(client, settings)
    with_reason = _alert("A0", 160.0, ring_confirmed=2, reasons=[CONFIRMED_REASON, "shares a phone"])
    older_engine = _alert("B0", 11_040.0)  # no ring_confirmed key
    _sink_stores(client, [_alert("C0", 2_440.0, ring_confirmed=0), with_reason, older_engine])
    queue = client.query("SELECT alert_id, ring_confirmed, expected_saving_eur, status, reasons[1] FROM fraud_queue"
                         ).result_rows
    assert queue == [("alert-A0", 2, 160.0, "new", CONFIRMED_REASON),
                     ("alert-B0", 0, 11_040.0, "new", "shares a phone with 1 other claim(s) within 90 days"),
                     ("alert-C0", 0, 2_440.0, "new", "shares a phone with 1 other claim(s) within 90 days")]
    stored = client.query("SELECT alert_id, ring_confirmed FROM fraud_alerts FINAL ORDER BY alert_id").result_rows
    assert stored == [("alert-A0", 2), ("alert-B0", 0), ("alert-C0", 0)]


def test_alerts_stored_before_the_migration_read_no_confirmed_claim(warehouse, tmp_path):
    client, settings = warehouse
    before = tmp_path / "migrations-before-0027"
    shutil.copytree(MIGRATIONS_DIR, before, ignore=shutil.ignore_patterns("0027_*"))
    migrate(client, settings, before)
    old = _alert("D0", 5_000.0)
    client.command("INSERT INTO fraud_alerts FORMAT JSONEachRow "
                   + msgspec.json.encode({k: v for k, v in old.items() if k != "ring_score"}).decode())

    assert [m.version for m in migrate(client, settings)] == [27]
    assert drift(client) == []
    _sink_stores(client, [_alert("E0", 100.0, ring_confirmed=1)])
    queue = client.query("SELECT alert_id, ring_confirmed, ring_claims FROM fraud_queue").result_rows
    assert queue == [("alert-E0", 1, 2), ("alert-D0", 0, 2)]


def test_each_unreadable_decision_is_one_dead_letter_row_and_the_others_are_stored(warehouse):
    """The sink is where an unreadable decision becomes a dead letter (the fraud worker only
    logs it): one row in dlq for each, a tombstone among them, and the batch's readable
    decision stored."""
    client, settings = warehouse
    migrate(client, settings)
    good = {"event_id": "d-1", "ts_ms": T0, "alert_id": "alert-A0", "status": "confirmed", "investigator": "Li Na"}
    values = [msgspec.json.encode(good), b"{not json", b'{"alert_id": "alert-A0"}', None]
    msgs = [SimpleNamespace(key=b"alert-A0", value=v, headers=[], partition=1, offset=40 + i, topic=T.DECISIONS.name)
            for i, v in enumerate(values)]
    sink = Sink(client, lambda: None, batch_rows=1_000, batch_ms=50)
    asyncio.run(sink._write(T.DECISIONS.name, [(1, msgs)]))
    assert (sink.stats.rejected_rows, sink.stats.by_table) == (3, {"dlq": 3, "fraud_decisions": 1})
    assert client.query("SELECT alert_id, status FROM fraud_decisions FINAL").result_rows == [("alert-A0", "confirmed")]
    dead = client.query("SELECT source_topic, source_partition, source_offset, reason, error_class, payload FROM dlq "
                        "ORDER BY source_offset").result_rows
    assert dead == [(T.DECISIONS.name, 1, 41, "sink_rejected", "DecodeError", "{not json"),
                    (T.DECISIONS.name, 1, 42, "sink_rejected", "ValidationError", '{"alert_id": "alert-A0"}'),
                    (T.DECISIONS.name, 1, 43, "sink_rejected", "ValueError", "")]
