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


def _alert(cid: str, saving: float, version: int) -> SimpleNamespace:
    alert = {"alert_id": f"alert-{cid}", "claim_id": cid, "ring_id": "ring-R0", "members": ["R0", "R1"],
             "score": 0.9, "amount_eur": saving / 0.9, "expected_saving_eur": saving, "verdict": "contradicted",
             "evidence": ["no crash pulse within 10 min of claimed loss"], "reasons": ["shares a phone"],
             "claim_ts_ms": 1_780_000_000_000, "created_ts_ms": version, "version": version}
    return SimpleNamespace(value=msgspec.json.encode(alert), offset=1)


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
