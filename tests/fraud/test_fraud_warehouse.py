"""Fraud migrations on the real embedded ClickHouse (chDB): alerts and decisions
land idempotently and the queue shows the latest state, ranked by expected saving."""

from __future__ import annotations

from types import SimpleNamespace

import msgspec
import pytest

from fraudring.graph import ClaimLinks
from fraudring.rows import alert_row, claim_row, decision_row, entity_rows
from fraudring.verify import TelematicsFacts, judge
from stream.records import DecisionV1, FnolV1, Party
from voltrisk.settings import WarehouseSettings
from warehouse.migrate import migrate


@pytest.fixture(scope="module")
def client(tmp_path_factory):
    import clickhouse_connect

    path = tmp_path_factory.mktemp("wh")
    c = clickhouse_connect.get_client(dsn=f"chdb://{path}", settings={"async_insert": 0})
    migrate(c, WarehouseSettings(clickhouse_dsn=f"chdb://{path}"))
    return c


def _insert(client, table: str, lines: list[bytes]) -> None:
    client.command(f"INSERT INTO {table} FORMAT JSONEachRow " + b"".join(lines).decode())


def _alert(cid: str, saving: float, version: int, **more) -> SimpleNamespace:
    alert = {"alert_id": f"alert-{cid}", "claim_id": cid, "ring_id": "ring-R0", "members": ["R0", "R1"],
             "score": 0.9, "amount_eur": saving / 0.9, "expected_saving_eur": saving, "verdict": "contradicted",
             "evidence": ["no crash pulse within 10 min of claimed loss"], "reasons": ["shares a phone"],
             "claim_ts_ms": 1_780_000_000_000, "created_ts_ms": version, "version": version} | more
    return SimpleNamespace(value=msgspec.json.encode(alert), offset=1)


def _decide(client, alert_id: str, status: str, investigator: str, ts_ms: int, alert_version: int = 0) -> None:
    d = DecisionV1(event_id=f"{alert_id}-{ts_ms}", ts_ms=ts_ms, alert_id=alert_id, status=status,
                   investigator=investigator, alert_version=alert_version)
    _insert(client, "fraud_decisions", [decision_row(SimpleNamespace(value=msgspec.json.encode(d), offset=1), 0)])


def test_alert_queue_keeps_latest_version_and_decision(client):
    _insert(client, "fraud_alerts", [alert_row(_alert("R0", 4_000.0, 1), 0), alert_row(_alert("R1", 7_000.0, 1), 0)])
    _insert(client, "fraud_alerts", [alert_row(_alert("R0", 8_000.0, 2), 0)])  # ring grew: re-alert
    decision = DecisionV1(event_id="d1", ts_ms=1_780_000_100_000, alert_id="alert-R1", status="investigating",
                          investigator="li.na")
    msg = SimpleNamespace(value=msgspec.json.encode(decision), offset=5)
    _insert(client, "fraud_decisions", [decision_row(msg, 0), decision_row(msg, 0)])  # redelivered
    rows = client.query("SELECT alert_id, expected_saving_eur, status, evidence FROM fraud_queue").result_rows
    assert rows == [("alert-R0", 8_000.0, "new", ["no crash pulse within 10 min of claimed loss"]),
                    ("alert-R1", 7_000.0, "investigating", ["no crash pulse within 10 min of claimed loss"])]
    assert client.query("SELECT count() FROM fraud_decisions FINAL").result_rows == [(1,)]


def test_claim_and_entity_rows_insert(client):
    claim = FnolV1(event_id="e1", ts_ms=1_780_000_000_000, claim_id="R9", policy_id="P9",
                   loss_ts_ms=1_779_999_000_000, lat=31.23, lon=121.47, amount_eur=9_000.0,
                   parties=[Party(role="insured", name="Gao Jun")])
    check = judge(TelematicsFacts(telematics_available=True, insured_in_cell=True), 9_000.0)
    client.insert("fraud_claims", [list(claim_row(claim, check, "ring-R9", 613344512447610879, 1).values())],
                  column_names=list(claim_row(claim, check, "ring-R9", 0, 1)))
    links = ClaimLinks("R9", claim.ts_ms, entities=(("phone", "13800138000"), ("garage", "fastfix")))
    rows = [list(r.values()) for r in entity_rows(links, 1)]
    client.insert("fraud_claim_entities", rows, column_names=list(entity_rows(links, 1)[0]))
    got = client.query("SELECT verdict, crash_pulse_found, toUnixTimestamp64Milli(loss_at) FROM fraud_claims FINAL "
                       "WHERE claim_id = 'R9'").result_rows
    assert got == [("contradicted", False, 1_779_999_000_000)]
    assert client.query("SELECT claim_id FROM fraud_claim_entities WHERE kind = 'phone' AND entity_key = '13800138000'"
                        ).result_rows == [("R9",)]


def test_a_closed_alert_whose_ring_grew_is_reopened_with_its_last_decision(client):
    """A grown ring's alert comes back under its id with a newer version: the queue kept
    saying 'dismissed', so the new claims were never looked at."""
    t0 = 1_780_000_000_000
    queue = lambda: client.query(  # noqa: E731
        "SELECT status, last_decision, investigator, ring_claims FROM fraud_queue WHERE alert_id = 'alert-G0'").result_rows
    _insert(client, "fraud_alerts", [alert_row(_alert("G0", 5_000.0, t0, ring_claims=4), 0)])
    _decide(client, "alert-G0", "dismissed", "zhao.lei", t0 + 60_000)
    assert queue() == [("dismissed", "dismissed", "zhao.lei", 4)]
    _insert(client, "fraud_alerts", [alert_row(_alert("G0", 6_000.0, t0 + 120_000, ring_claims=5), 0)])
    assert queue() == [("reopened", "dismissed", "zhao.lei", 5)]
    _decide(client, "alert-G0", "investigating", "li.na", t0 + 180_000)
    assert queue() == [("investigating", "investigating", "li.na", 5)]
    # an open alert stays with its investigator when the ring grows; a confirmed one reopens
    _insert(client, "fraud_alerts", [alert_row(_alert("G0", 6_500.0, t0 + 240_000, ring_claims=7), 0)])
    assert queue() == [("investigating", "investigating", "li.na", 7)]
    _decide(client, "alert-G0", "confirmed", "li.na", t0 + 300_000)
    assert queue() == [("confirmed", "confirmed", "li.na", 7)]
    _insert(client, "fraud_alerts", [alert_row(_alert("G0", 7_000.0, t0 + 360_000, ring_claims=9), 0)])
    assert queue() == [("reopened", "confirmed", "li.na", 9)]


def test_a_decision_naming_the_alert_version_it_saw_is_reopened_by_a_later_version_only(client):
    """The dashboard's clock runs 90 s behind the engine's: by time, a decision taken on
    the alert it was shown would look older than that alert and reopen it at once. The
    decision names the version it saw, and only a later version reopens it."""
    t0 = 1_780_000_000_000
    queue = lambda: client.query(  # noqa: E731
        "SELECT status, last_decision, version FROM fraud_queue WHERE alert_id = 'alert-S0'").result_rows
    _insert(client, "fraud_alerts", [alert_row(_alert("S0", 5_000.0, t0, ring_claims=4), 0)])
    _decide(client, "alert-S0", "dismissed", "zhao.lei", t0 - 90_000 + 30_000, alert_version=t0)
    assert queue() == [("dismissed", "dismissed", t0)]
    _insert(client, "fraud_alerts", [alert_row(_alert("S0", 6_000.0, t0 + 60_000, ring_claims=5), 0)])
    assert queue() == [("reopened", "dismissed", t0 + 60_000)]
    assert client.query("SELECT alert_version FROM fraud_decisions FINAL WHERE alert_id = 'alert-S0'"
                        ).result_rows == [(t0,)]


def test_an_alerts_ring_size_is_stored_apart_from_the_members_it_names(client):
    """The engine's alert names at most MAX_ALERT_MEMBERS claims of a larger ring; an alert
    from the first engines (no ring_claims) and a row stored before migration 0025 named
    the whole ring, so their size is their members' count."""
    capped = [f"X{i:05d}" for i in range(200)]
    _insert(client, "fraud_alerts", [alert_row(_alert("X00000", 100.0, 1, ring_id="ring-X", members=capped,
                                                      ring_claims=50_000), 0),
                                     alert_row(_alert("Y0", 100.0, 1, ring_id="ring-Y", members=["Y0", "Y1", "Y2"]), 0)])
    client.insert("fraud_alerts", [["alert-Z0", "Z0", "ring-Z", ["Z0", "Z1"], 1]],
                  column_names=["alert_id", "claim_id", "ring_id", "members", "version"])
    got = client.query("SELECT alert_id, ring_claims, length(members) FROM fraud_queue "
                       "WHERE alert_id IN ('alert-X00000', 'alert-Y0', 'alert-Z0') ORDER BY alert_id").result_rows
    assert got == [("alert-X00000", 50_000, 200), ("alert-Y0", 3, 3), ("alert-Z0", 2, 2)]
