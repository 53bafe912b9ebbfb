"""Investigators' decisions in the live engine: a claim confirmed as fraud makes the
rest of its ring, and the next claim joining it, alerts whatever the model says, a
dismissed claim comes back only by the re-alert rule, and the engine forgets no decision
over a restart."""

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
from stream.agents import claims_split, read_decisions
from stream.records import DecisionV1, FnolV1, Party
from voltrisk.harness import ServiceProcess, groups_at_head, wait_for
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
    notes, raised = engine.decide([_decision("C0", "confirmed", DEC_1)])
    assert notes == [] and [a["claim_id"] for a in raised] == ["C1"]  # the rest of the ring

    bigger = _claim("L2", 3, "13700000002", 15_000.0)  # the larger expected saving of the batch
    alerts = engine.process(_ring(2, 1) + [bigger], {"L2": CONTRADICTED})
    assert [a["claim_id"] for a in alerts] == ["C2", "L2"]  # known fraud first
    c2, l2 = alerts
    assert c2["score"] < 0.5 < l2["score"] and c2["expected_saving_eur"] < l2["expected_saving_eur"]
    assert c2["reasons"][0] == "ring holds 1 claim confirmed as fraud by investigators (latest 2026-12-01)"
    assert (c2["ring_id"], c2["ring_claims"], c2["ring_confirmed"], c2["members"]) == ("ring-C0", 3, 1, ["C0", "C1", "C2"])
    assert l2["ring_confirmed"] == 0 and not any("confirmed" in r for r in l2["reasons"])
    # what the worker sends, in that order: known fraud first, then by expected saving
    assert [a["claim_id"] for a in engine.unsent_alerts()][2:] == ["L2", "L1"]
    assert sorted(a["claim_id"] for a in engine.unsent_alerts()[:2]) == ["C1", "C2"]

    # a second confirmation: the ring's undecided claims are alerted again, saying two and
    # the latest date; the next claim says so too
    _, raised = engine.decide([_decision("C1", "confirmed", DEC_3)])
    assert [(a["claim_id"], a["ring_confirmed"]) for a in raised] == [("C2", 2)]
    (c3,) = engine.process(_ring(3, 1), {})
    assert c3["claim_id"] == "C3" and c3["ring_claims"] == 4
    assert c3["reasons"][0] == "ring holds 2 claims confirmed as fraud by investigators (latest 2026-12-03)"
    # a ring without confirmed fraud: the same claims are not alerted
    assert engine.process(_ring(0, 3, prefix="D"), {}) == []


def test_a_confirmation_alerts_the_undecided_claims_of_its_ring_once(model, tmp_path):
    """Five claims below the threshold, one under investigation: confirming one alerts the
    three others nobody decided on, ranked first, and nothing twice (a redelivered or
    repeated confirmation, a restart); claims of another ring are left alone."""
    state = tmp_path / "state.bin"
    engine = FraudEngine(state, model=model)
    assert engine.process(_ring(0, 5) + _ring(0, 3, prefix="D"), {}) == []
    engine.decide([_decision("C4", "investigating", DEC_1)])
    confirm = [_decision("C0", "confirmed", DEC_1 + 60_000)]
    _, raised = engine.decide(confirm)
    assert sorted(a["claim_id"] for a in raised) == ["C1", "C2", "C3"]
    reason = "ring holds 1 claim confirmed as fraud by investigators (latest 2026-12-01)"
    for a in raised:
        assert (a["ring_id"], a["ring_claims"], a["ring_confirmed"], a["reasons"][0]) == ("ring-C0", 5, 1, reason)
        assert a["score"] < 0.5 and a["members"] == [f"C{i}" for i in range(5)]
    assert [a["alert_id"] for a in engine.unsent_alerts()] == [a["alert_id"] for a in raised]

    assert engine.decide(confirm).alerts == []  # redelivered
    later = [_decision("C0", "confirmed", DEC_3)]  # confirmed again: the ring still holds one
    assert engine.decide(later).alerts == []
    engine.confirm(raised)
    restarted = FraudEngine(state, model=model)
    assert restarted.unsent_alerts() == []
    assert restarted.decide([_decision("C0", "confirmed", DEC_3 + 1)]).alerts == []  # the journal knows they were alerted
    restarted.save()
    assert FraudEngine(state, model=model).decide([_decision("C0", "confirmed", DEC_3 + 2)]).alerts == []


def test_a_confirmation_in_a_large_ring_alerts_the_claims_nearest_it(model, tmp_path):
    engine = FraudEngine(tmp_path / "state.bin", model=model)
    chain = [_claim(f"K{i}", i, f"1390000{i:04d}") for i in range(8)]
    for i, c in enumerate(chain[1:], 1):  # K(i) shares K(i-1)'s phone as a witness: a chain
        c.parties.append(Party(role="witness", name=f"Witness {i}", phone=chain[i - 1].parties[0].phone))
    engine.process(chain, {})
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr("fraudring.engine.MAX_ALERT_MEMBERS", 3)
        _, raised = engine.decide([_decision("K0", "confirmed", DEC_1)])
    assert sorted(a["claim_id"] for a in raised) == ["K1", "K2"]  # K0 and the two nearest it
    assert {a["ring_claims"] for a in raised} == {8}


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
    notes, _ = engine.decide([_decision("C0", "confirmed", DEC_1),
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


def test_an_unreadable_decision_is_skipped_with_a_sentence_naming_its_offset():
    """The worker skips it and says where; the sink stores it as the one dead letter
    (tests/warehouse/test_warehouse_fraud_alerts.py)."""
    msg = lambda offset, value: SimpleNamespace(topic="fraud.decisions.v1", partition=2, offset=offset,  # noqa: E731
                                                key=b"alert-C0", value=value, headers=[("schema_version", b"1")])
    good = msgspec.json.encode(_decision("C0", "confirmed", DEC_1))
    decisions, unreadable = read_decisions([msg(7, good), msg(8, b"{not json"), msg(9, b'{"alert_id": "alert-C0"}'),
                                            msg(10, None)])
    assert decisions == [_decision("C0", "confirmed", DEC_1)]
    where = [u.split(" holds no decision and is skipped (the sink stores it in the dlq table): ") for u in unreadable]
    assert [w[0] for w in where] == [f"fraud.decisions.v1 partition 2 offset {o}" for o in (8, 9, 10)]
    assert where[1][1].startswith("Object missing required field")


def test_a_fraud_engine_holding_part_of_the_claims_partitions_is_told_what_to_run():
    assert claims_split([0, 1, 2], 3, "voltrisk-worker-fraud") is None
    assert claims_split([], 3, "voltrisk-worker") is None  # the scaled workers: no fraud stage
    split = claims_split([2, 0, 0], 3, "voltrisk-worker-fraud")
    assert split.startswith("this worker's fraud engine holds claims partitions [0, 2] of 3; another worker of group "
                            "voltrisk-worker-fraud holds the rest")


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
    other claim of that ring is alerted at once, and the next claim joining it too, with
    the reason, and stored in the warehouse; the same claims of the other ring are not.
    An unreadable decision is skipped, once dead-lettered by the sink (not the worker);
    the worker stays up."""
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
    today = time.strftime("%Y-%m-%d", time.gmtime())
    reason = f"ring holds 1 claim confirmed as fraud by investigators (latest {today})"
    ours = lambda m: m.key.startswith(f"alert-{tag}".encode())  # noqa: E731
    alerts = [msgspec.json.decode(m.value) for m in asyncio.run(_read(kafka_bootstrap, "fraud.alerts.v1", ours))]
    assert [(a["claim_id"], a["ring_claims"], a["reasons"][0]) for a in alerts] == [(f"{tag}X1", 2, reason)]

    joining = _ring(2, 1, f"{tag}X", t0) + _ring(2, 1, f"{tag}Y", t0)
    _claims_in(kafka_bootstrap, joining)
    _wait_judged(kafka_bootstrap, joining, worker_proc)
    alerts = [msgspec.json.decode(m.value) for m in asyncio.run(_read(kafka_bootstrap, "fraud.alerts.v1", ours))]
    assert sorted((a["claim_id"], a["ring_claims"], a["reasons"][0]) for a in alerts) == [
        (f"{tag}X1", 2, reason), (f"{tag}X2", 3, reason)]
    assert all(a["score"] < 0.5 for a in alerts)

    ch = http_client(warehouse_proc.url)
    stored = lambda: ch.query("SELECT alert_id, reasons[1] FROM fraud_alerts FINAL WHERE alert_id LIKE {a:String} "  # noqa: E731
                              "ORDER BY alert_id", parameters={"a": f"alert-{tag}%"}).result_rows
    wait_for(lambda: stored() == [(f"alert-{tag}X1", reason), (f"alert-{tag}X2", reason)], 60,
             "the alerts in fraud_alerts", warehouse_proc)
    dead = lambda: ch.query("SELECT source_partition, source_offset, reason FROM dlq WHERE source_topic = "  # noqa: E731
                            "'fraud.decisions.v1' AND key = {k:String}", parameters={"k": f"alert-{tag}X1"}).result_rows
    wait_for(lambda: dead() == [(bad.partition, bad.offset, "sink_rejected")], 60, "the dead letter", warehouse_proc)
    assert asyncio.run(_read(kafka_bootstrap, "voltrisk.dlq.v1", lambda m: m.key == f"alert-{tag}X1".encode(),
                             timeout_s=5)) == []  # the worker sent none
    assert worker_proc.proc.poll() is None, worker_proc.tail(40)
    log_text = worker_proc.log.read_text(errors="replace")
    assert f"names claim {tag}Z9, which the engine has not seen" in log_text
    assert f"fraud.decisions.v1 partition {bad.partition} offset {bad.offset} holds no decision" in log_text


@pytest.mark.integration
def test_the_fraud_stage_runs_alone_with_every_claims_partition_and_says_so_when_split(
        kafka_bootstrap, platform_env, model, warehouse_proc, worker_proc, tmp_path):
    """The layout compose.yaml deploys: the scaled workers run the gate and the features
    (this ``worker_proc`` has no fraud model, so no fraud stage), one worker runs the
    fraud stage alone in its own group. It holds every claims partition, judges the claims
    the other worker's gate cleaned, and a confirmation alerts the rest of the ring. A
    second fraud worker in that group splits the claims partitions: each logs an error
    saying so and what to run instead."""
    tag = f"t{uuid.uuid4().hex[:8]}-"
    app_id = platform_env["VOLTRISK_WORKER_APP_ID"] + "-fraud"
    kafka = KafkaClientSettings(kafka_bootstrap=kafka_bootstrap)
    asyncio.run(groups_at_head(kafka, [app_id]))

    def fraud_worker(name: str) -> ServiceProcess:
        home = tmp_path / name
        (home / "fraud").mkdir(parents=True)
        model.save(home / "fraud" / "fraud_model.json")
        env = dict(platform_env, VOLTRISK_HOME=str(home), VOLTRISK_WORKER_STAGES="fraud", VOLTRISK_WORKER_APP_ID=app_id)
        svc = ServiceProcess(name, ["worker", "run", "--loglevel", "warn"], env, tmp_path / f"{name}.log").start()
        wait_for((home / "run" / "worker.ready").exists, 90, f"the {name} worker", svc)
        return svc

    split = "this worker's fraud engine holds claims partitions"
    first = fraud_worker("fraud-1")
    try:
        ring = _ring(0, 2, f"{tag}X", int(time.time() * 1000) - 60 * 86_400_000)
        _claims_in(kafka_bootstrap, ring)
        _wait_judged(kafka_bootstrap, ring, first)
        publish(decision(f"alert-{tag}X0", "investigating", "confirmed", "Li Na"), kafka)
        ours = lambda m: m.key.startswith(f"alert-{tag}".encode())  # noqa: E731
        alerts = wait_for(lambda: [msgspec.json.decode(m.value) for m in asyncio.run(
            _read(kafka_bootstrap, "fraud.alerts.v1", ours, timeout_s=10))], 60, "the ring's alert", first)
        assert [(a["claim_id"], a["ring_confirmed"]) for a in alerts] == [(f"{tag}X1", 1)]
        assert split not in first.log.read_text(errors="replace"), first.tail(40)

        second = fraud_worker("fraud-2")
        try:
            logs = lambda: [w.log.read_text(errors="replace") for w in (first, second)]  # noqa: E731
            wait_for(lambda: all(split in text for text in logs()), 60, "both fraud workers to report the split", second)
        finally:
            second.stop()
        text = first.log.read_text(errors="replace")
        assert f"of 3; another worker of group {app_id} holds the rest" in text
        assert "VOLTRISK_WORKER_STAGES=fraud and its own VOLTRISK_WORKER_APP_ID" in text
        assert "Traceback" not in text, first.tail(40)
    finally:
        first.stop()
