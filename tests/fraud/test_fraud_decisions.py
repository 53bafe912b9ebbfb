"""Investigators' decisions in the live engine: a claim confirmed as fraud makes the
next claim joining its ring an alert whatever the model says, a dismissed claim comes
back only by the re-alert rule, and the engine forgets no decision over a restart."""

from __future__ import annotations

import asyncio
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from types import SimpleNamespace

import msgspec
import pytest
from fraud_synth import ENTITY_COLS, T0_MS, make_book

from dashboard.bus import LagReader, publish
from dashboard.decisions import decision
from fraudring.engine import FraudEngine
from fraudring.evaluate import train_and_evaluate
from fraudring.features import TableSpec
from fraudring.verify import TelematicsFacts
from stream.agents import read_decisions
from stream.records import DecisionV1, FnolV1, Party
from voltrisk.harness import wait_for
from voltrisk.settings import KafkaClientSettings
from warehouse.client import http_client

DEC_1 = int(datetime(2026, 12, 1, 9, 30, tzinfo=UTC).timestamp() * 1000)
DEC_3 = int(datetime(2026, 12, 3, 16, 0, tzinfo=UTC).timestamp() * 1000)
# telemetry that contradicts a claim: the model's score is far above 0.5 for it
CONTRADICTED = TelematicsFacts(telematics_available=True, insured_in_cell=False, crash_pulse_found=False,
                               parked_or_charging_at_loss=True, nearest_km=13.0)


@pytest.fixture(scope="module")
def model():
    book = make_book(seed=3, genuine=500, staged=4, phantom=2, cycles=2, opportunistic=10)
    return train_and_evaluate(book, TableSpec(tuple(ENTITY_COLS)), "is_fraud", feature_set="both").model


def _claim(claim_id: str, i: int, phone: str, amount_eur: float = 800.0, t0_ms: int = T0_MS) -> FnolV1:
    return FnolV1(event_id=f"e-{claim_id}", ts_ms=t0_ms + i * 20 * 86_400_000, claim_id=claim_id, policy_id=f"P-{claim_id}",
                  loss_ts_ms=t0_ms + i * 20 * 86_400_000 - 3_600_000, lat=31.2304, lon=121.4737, amount_eur=amount_eur,
                  parties=[Party(role="insured", name=f"Driver {claim_id}", phone=phone)])


def _ring(start: int, n: int, prefix: str = "C", t0_ms: int = T0_MS) -> list[FnolV1]:
    """Claims ``prefix{start}`` .. of one ring, 20 days apart, one phone shared by all: the
    model scores each ~0.01 without telemetry."""
    phone = "138" + str(sum(map(ord, prefix)) % 10**8).zfill(8)
    return [_claim(f"{prefix}{i}", i, phone, t0_ms=t0_ms) for i in range(start, start + n)]


def _decision(claim_id: str, status: str, ts_ms: int) -> DecisionV1:
    return DecisionV1(event_id=f"d-{claim_id}-{status}-{ts_ms}", ts_ms=ts_ms, alert_id=f"alert-{claim_id}",
                      status=status, investigator="Li Na")


def test_a_new_claim_joining_a_ring_with_confirmed_fraud_is_alerted_below_the_threshold(model, tmp_path):
    engine = FraudEngine(tmp_path / "state.bin", model=model)
    lone = _claim("L1", 0, "13700000001", 3_000.0)
    assert [a["claim_id"] for a in engine.process(_ring(0, 2) + [lone], {"L1": CONTRADICTED})] == ["L1"]
    assert engine.decide([_decision("C0", "confirmed", DEC_1)]) == []

    bigger = _claim("L2", 3, "13700000002", 15_000.0)  # the larger expected saving of the batch
    alerts = engine.process(_ring(2, 1) + [bigger], {"L2": CONTRADICTED})
    assert [a["claim_id"] for a in alerts] == ["C2", "L2"]  # known fraud first
    c2, l2 = alerts
    assert c2["score"] < 0.5 < l2["score"] and c2["expected_saving_eur"] < l2["expected_saving_eur"]
    assert c2["reasons"][0] == "ring holds 1 claim confirmed as fraud by investigators (latest 2026-12-01)"
    assert (c2["ring_id"], c2["ring_claims"], c2["ring_confirmed"], c2["members"]) == ("ring-C0", 3, 1, ["C0", "C1", "C2"])
    assert l2["ring_confirmed"] == 0 and not any("confirmed" in r for r in l2["reasons"])
    assert [a["claim_id"] for a in engine.unsent_alerts()] == ["C2", "L2", "L1"]  # what the worker sends, in that order

    # a second confirmation: the next claim says two, and the latest date; C1 and C2 stay below the threshold
    engine.decide([_decision("C1", "confirmed", DEC_3)])
    (c3,) = engine.process(_ring(3, 1), {})
    assert c3["claim_id"] == "C3" and c3["ring_claims"] == 4
    assert c3["reasons"][0] == "ring holds 2 claims confirmed as fraud by investigators (latest 2026-12-03)"
    # a ring without confirmed fraud: the same claims are not alerted
    assert engine.process(_ring(0, 3, prefix="D"), {}) == []


def test_the_latest_decision_on_a_claim_counts_whatever_order_they_arrive_in(model, tmp_path):
    engine = FraudEngine(tmp_path / "state.bin", model=model)
    engine.process(_ring(0, 2), {})
    engine.decide([_decision("C0", "confirmed", DEC_3)])
    engine.decide([_decision("C0", "investigating", DEC_1)])  # an older decision redelivered after it
    assert engine.decisions["C0"].status == "confirmed"
    # reopened after the confirmation: no longer known fraud
    engine.decide([_decision("C0", "investigating", DEC_3 + 60_000)])
    assert engine.process(_ring(2, 1), {}) == []


def _decided(state, model) -> FraudEngine:
    engine = FraudEngine(state, model=model)
    engine.process(_ring(0, 2), {})
    engine.decide([_decision("C0", "confirmed", DEC_1), _decision("C1", "dismissed", DEC_3)])
    return engine


@pytest.mark.parametrize("restart", ["journal", "journal replayed twice", "snapshot"])
def test_decisions_survive_a_restart(model, tmp_path, restart):
    state = tmp_path / "state.bin"
    engine = _decided(state, model)
    if restart == "journal replayed twice":
        engine.journal_path.write_bytes(engine.journal_path.read_bytes() * 2)
    if restart == "snapshot":
        engine.save()
        assert not engine.journal_path.exists()
    restarted = FraudEngine(state, model=model)
    assert {c: (d.status, d.ts_ms) for c, d in restarted.decisions.items()} == {"C0": ("confirmed", DEC_1),
                                                                               "C1": ("dismissed", DEC_3)}
    (alert,) = restarted.process(_ring(2, 1), {})
    assert alert["claim_id"] == "C2" and alert["reasons"][0].startswith("ring holds 1 claim confirmed as fraud")
    assert FraudEngine(state, model=model).process(_ring(2, 1), {}) == []  # redelivered: known, not alerted again


def test_a_decision_on_a_claim_the_engine_has_not_seen_is_kept_until_it_arrives(model, tmp_path):
    state = tmp_path / "state.bin"
    engine = FraudEngine(state, model=model)
    notes = engine.decide([_decision("C0", "confirmed", DEC_1),
                           DecisionV1(event_id="d-other", ts_ms=DEC_1, alert_id="case-17", status="confirmed",
                                      investigator="Li Na")])
    assert notes == [
        f"decision d-C0-confirmed-{DEC_1} (confirmed) on alert-C0 names claim C0, which the engine has not seen; "
        "it is kept and counts once the claim arrives",
        "decision d-other on 'case-17' is ignored: the engine's alert ids are 'alert-' and a claim id",
    ]
    engine = FraudEngine(state, model=model)  # kept over a restart, the other one not at all
    assert list(engine.decisions) == ["C0"]
    # the decided claim itself is no new claim joining known fraud; the next one is
    assert engine.process(_ring(0, 1), {}) == []
    (alert,) = engine.process(_ring(1, 1), {})
    assert alert["claim_id"] == "C1" and alert["ring_confirmed"] == 1


def test_a_dismissed_claim_is_alerted_again_only_when_its_ring_grows_by_a_quarter(model, tmp_path):
    """The re-alert rule is unchanged by decisions, and the decision path alerts nothing twice."""
    engine = FraudEngine(tmp_path / "state.bin", model=model, threshold=0.0)  # every claim a candidate
    assert len(engine.process(_ring(0, 8), {})) == 8
    decided = [_decision("C0", "dismissed", DEC_1), _decision("C1", "confirmed", DEC_1)]
    engine.decide(decided)
    assert [a["claim_id"] for a in engine.process(_ring(8, 1), {})] == ["C8"]  # 9 claims: C0 stays dismissed
    engine.decide(decided)  # redelivered
    grown = engine.process(_ring(9, 1), {})  # 10 = 1.25 x 8: the rule re-alerts the first eight, C0 among them
    assert sorted(a["claim_id"] for a in grown) == sorted(f"C{i}" for i in range(8)) + ["C9"]
    assert {a["ring_confirmed"] for a in grown} == {1}
    # 11: only the new claim (C9 was alerted at 10, C8 at 9, the others at 10)
    assert [a["claim_id"] for a in engine.process(_ring(10, 1), {})] == ["C10"]


def test_an_unreadable_decision_becomes_a_dead_letter_naming_its_offset():
    msg = lambda offset, value: SimpleNamespace(topic="fraud.decisions.v1", partition=2, offset=offset,  # noqa: E731
                                                key=b"alert-C0", value=value, headers=[("schema_version", b"1")])
    good = msgspec.json.encode(_decision("C0", "confirmed", DEC_1))
    decisions, dead = read_decisions([msg(7, good), msg(8, b"{not json"), msg(9, b'{"alert_id": "alert-C0"}'), msg(10, None)])
    assert decisions == [_decision("C0", "confirmed", DEC_1)]
    assert [(d.topic, d.key) for d in dead] == [("voltrisk.dlq.v1", b"alert-C0")] * 3
    headers = [dict(d.headers) for d in dead]
    assert [(h["source_topic"], h["source_offset"], h["reason"]) for h in headers] == [
        (b"fraud.decisions.v1", b"8", b"malformed_json"), (b"fraud.decisions.v1", b"9", b"schema"),
        (b"fraud.decisions.v1", b"10", b"empty_value")]
    assert headers[1]["message"].startswith(b"fraud.decisions.v1 partition 2 offset 9: Object missing required field")
    assert [d.value for d in dead] == [b"{not json", b'{"alert_id": "alert-C0"}', b""]


# --- the worker on the real broker and warehouse ---------------------------------------------

HEADERS = [("schema_version", b"1"), ("source_protocol", b"claims-json"), ("consent_scope", b"pricing,fraud")]


@pytest.fixture
def worker_model(platform_env, model) -> Path:
    """The fraud model in the worker's home, before the worker starts (its fraud agents need it)."""
    path = Path(platform_env["VOLTRISK_HOME"]) / "fraud" / "fraud_model.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    model.save(path)
    return path


async def _produce(bootstrap: str, topic: str, messages: list[tuple[bytes, bytes]], headers=()) -> list:
    from aiokafka import AIOKafkaProducer

    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", enable_idempotence=True)
    await producer.start()
    try:
        return [await producer.send_and_wait(topic, value, key=key, headers=list(headers)) for key, value in messages]
    finally:
        await producer.stop()


def _claims_in(bootstrap: str, claims: list[FnolV1]) -> None:
    asyncio.run(_produce(bootstrap, "claims.fnol.v1", [(c.claim_id.encode(), msgspec.json.encode(c)) for c in claims],
                         HEADERS))


async def _read(bootstrap: str, topic: str, keep, timeout_s: float = 60) -> list:
    """The messages of ``topic`` that ``keep`` keeps, from its start until none came for 3 s."""
    from aiokafka import AIOKafkaConsumer

    consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, group_id=f"test-{uuid.uuid4().hex}",
                                auto_offset_reset="earliest")
    await consumer.start()
    out: list = []
    try:
        loop = asyncio.get_running_loop()
        deadline, quiet_since = loop.time() + timeout_s, loop.time()
        while loop.time() < deadline and loop.time() - quiet_since < 3:
            for msgs in (await consumer.getmany(timeout_ms=500)).values():
                out += [m for m in msgs if keep(m)]
                quiet_since = loop.time()
    finally:
        await consumer.stop()
    return out


def _wait_judged(bootstrap: str, claims: list[FnolV1], worker_proc) -> None:
    """Until the worker sent every claim's fraud_claims row: the engine took them (and sent their alerts with them)."""
    ids = {c.claim_id.encode() for c in claims}
    wait_for(lambda: {m.key for m in asyncio.run(_read(bootstrap, "fraud.claims.v1", lambda m: m.key in ids))} == ids,
             120, f"the fraud agent to take {len(ids)} claims", worker_proc)


@pytest.mark.integration
def test_a_decision_on_the_topic_changes_what_the_worker_alerts_next(
        kafka_bootstrap, platform_env, worker_model, warehouse_proc, worker_proc):
    """Two alike rings of two claims each score far below the threshold. An investigator
    confirms a claim of one (the triage page's record, sent the dashboard's way): the
    next claim joining that ring is alerted, with the reason, and stored in the
    warehouse; the same claim joining the other ring is not. An unreadable decision goes
    to the dead letters; the worker stays up."""
    tag = f"t{uuid.uuid4().hex[:8]}-"
    t0 = int(time.time() * 1000) - 60 * 86_400_000
    confirmed, control = _ring(0, 2, f"{tag}X", t0), _ring(0, 2, f"{tag}Y", t0)
    _claims_in(kafka_bootstrap, confirmed + control)
    _wait_judged(kafka_bootstrap, confirmed + control, worker_proc)

    kafka = KafkaClientSettings(kafka_bootstrap=kafka_bootstrap)
    publish(decision(f"alert-{tag}X0", "investigating", "confirmed", "Li Na"), kafka)
    publish(decision(f"alert-{tag}Z9", "investigating", "dismissed", "Li Na"), kafka)  # a claim the engine never saw
    (bad,) = asyncio.run(_produce(kafka_bootstrap, "fraud.decisions.v1", [(f"alert-{tag}X1".encode(), b"{not json")]))
    lag = LagReader(kafka, timeout_s=10)
    try:  # the worker commits a decision's offset only after its engine journaled it
        decisions_lag = lambda: lag.lag([platform_env["VOLTRISK_WORKER_APP_ID"]]).query(  # noqa: E731
            "topic == 'fraud.decisions.v1'")["lag"].sum()
        wait_for(lambda: decisions_lag() == 0, 60, "the worker to commit the decisions", worker_proc)
    finally:
        lag.close()
    dead = asyncio.run(_read(kafka_bootstrap, "voltrisk.dlq.v1", lambda m: m.key == f"alert-{tag}X1".encode()))
    assert [(h["source_topic"], h["source_partition"], h["source_offset"], h["reason"])
            for h in (dict(m.headers) for m in dead)] == [
        (b"fraud.decisions.v1", str(bad.partition).encode(), str(bad.offset).encode(), b"malformed_json")]

    joining = _ring(2, 1, f"{tag}X", t0) + _ring(2, 1, f"{tag}Y", t0)
    _claims_in(kafka_bootstrap, joining)
    _wait_judged(kafka_bootstrap, joining, worker_proc)
    alerts = [msgspec.json.decode(m.value) for m in asyncio.run(
        _read(kafka_bootstrap, "fraud.alerts.v1", lambda m: m.key.startswith(f"alert-{tag}".encode())))]
    today = time.strftime("%Y-%m-%d", time.gmtime())
    reason = f"ring holds 1 claim confirmed as fraud by investigators (latest {today})"
    assert [(a["claim_id"], a["ring_claims"], a["reasons"][0]) for a in alerts] == [(f"{tag}X2", 3, reason)]
    assert alerts[0]["score"] < 0.5

    ch = http_client(warehouse_proc.url)
    stored = lambda: ch.query("SELECT reasons FROM fraud_alerts FINAL WHERE alert_id = {a:String}",  # noqa: E731
                              parameters={"a": f"alert-{tag}X2"}).result_rows
    wait_for(lambda: stored() and stored()[0][0][0] == reason, 60, "the alert in fraud_alerts", warehouse_proc)
    assert worker_proc.proc.poll() is None, worker_proc.tail(40)
    assert f"names claim {tag}Z9, which the engine has not seen" in worker_proc.log.read_text(errors="replace")
