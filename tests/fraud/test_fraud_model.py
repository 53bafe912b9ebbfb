"""Classifier, ring queue, alerts and CLI on a seeded synthetic claims book."""

from __future__ import annotations

import csv
import json

import pytest
from fraud_synth import DAY_MS, ENTITY_COLS, T0_MS, make_book
from typer.testing import CliRunner

from fraudring.cli import app
from fraudring.engine import FraudEngine
from fraudring.evaluate import fnol_from_row, train_and_evaluate
from fraudring.features import TableSpec, facts_from_row
from fraudring.model import time_split
from stream.records import FnolV1, Party, StateV1
from voltrisk.errors import UserError

SPEC = TableSpec(tuple(ENTITY_COLS))
REQUIRED_KEYS = {"roc_auc", "pr_auc", "base_rate", "recall_at_1pct", "recall_at_5pct", "recall_at_10pct",
                 "precision_at_5pct", "n_train", "n_test"}


@pytest.fixture(scope="module")
def book():
    return make_book(seed=3, staged=10, phantom=6, cycles=6)


@pytest.fixture(scope="module")
def runs(book):
    return {fs: train_and_evaluate(book, SPEC, "is_fraud", feature_set=fs, ring_col="ring_id") for fs in
            ("graph", "telematics", "both")}


def test_time_split_holds_out_the_latest_claims(book, runs):
    m = runs["both"].metrics
    assert (m["n_train"], m["n_test"]) == (1_163, 499)
    split = time_split([r["ts_ms"] for r in book])
    assert all(book[i]["ts_ms"] > split for i in runs["both"].test)


def test_both_feature_sets_catch_every_ring_in_the_queue(runs):
    m = runs["both"].metrics
    assert m["rings_in_test"] >= 5
    assert m["ring_recall"] == 1.0 and m["ring_precision"] >= 0.9
    assert m["pr_auc"] >= 0.95 and m["recall_at_10pct"] >= 0.95 and m["precision_at_5pct"] >= 0.9
    assert 0.05 < m["base_rate"] < 0.15


def test_each_half_of_the_ablation_carries_signal(runs):
    assert runs["graph"].metrics["pr_auc"] >= 0.8  # shared entities alone find the rings
    assert runs["telematics"].metrics["pr_auc"] >= 0.8  # missing pulses alone find staged claims
    assert runs["graph"].metrics["n_features"] < runs["both"].metrics["n_features"]


def _ring_claim(i: int, person: str, phone: str, other: str) -> FnolV1:
    return FnolV1(
        event_id=f"e{i}", ts_ms=T0_MS + 400 * DAY_MS + i * DAY_MS, claim_id=f"R{i}", policy_id=f"P{i}",
        loss_ts_ms=T0_MS + 400 * DAY_MS + i * DAY_MS - 3_600_000, lat=31.2304, lon=121.4737, amount_eur=9_000.0,
        parties=[Party(role="insured", name=person, phone=phone, address="No. 5 Siping Rd, Apt 9", vehicle_id=f"V{i}"),
                 Party(role="third_party", name=other, phone="+86 139-0000-77" + f"{i:02d}", vehicle_id=f"W{i}")],
        garage="Golden Repair X", lawyer="Attorney X", clinic="Clinic X",
    )


def _parked(claim: FnolV1) -> list[StateV1]:
    return [StateV1(event_id=f"s{claim.claim_id}{k}", ts_ms=claim.loss_ts_ms + k * 60_000, vehicle_status="off",
                    charging_state="not_charging", speed_kmh=0.0, odometer_km=1.0, pack_voltage_v=380.0,
                    pack_current_a=0.0, soc_pct=70.0, gear="P", insulation_resistance_kohm=5_000.0, lat=claim.lat,
                    lon=claim.lon, cell_voltage_max_v=3.9, cell_voltage_min_v=3.8, cell_temp_max_c=25.0,
                    cell_temp_min_c=24.0, alarm_level=0, alarm_flags=0) for k in (-5, 0, 5)]


def test_engine_flags_staged_crash_with_its_evidence_and_survives_restart(book, runs, tmp_path):
    state = tmp_path / "fraud_state.bin"
    engine = FraudEngine(state, model=runs["both"].model)
    facts = {r["claim_id"]: facts_from_row(r) for r in book}
    assert isinstance(engine.process([fnol_from_row(r) for r in book], facts), list)
    phones = ["+86 137 5555 0001", "13755550001", "0086-137-5555-0001"]
    claims = [_ring_claim(i, "Gao  Jun", phones[i], f"Helper {i}") for i in range(3)]
    alerts = engine.process(claims, {c.claim_id: _parked(c) for c in claims})
    assert {a["claim_id"] for a in alerts} == {"R0", "R1", "R2"}
    top = alerts[0]
    assert top["members"] == ["R0", "R1", "R2"] and top["ring_id"] == "ring-R0"
    assert top["verdict"] == "contradicted"
    assert "no crash pulse within 10 min of claimed loss" in top["evidence"]
    assert top["score"] >= 0.5 and top["expected_saving_eur"] == pytest.approx(top["score"] * 9_000.0, abs=1.0)
    assert len(top["reasons"]) >= 1 and all(isinstance(t, str) and t for t in top["reasons"])
    assert [a["expected_saving_eur"] for a in alerts] == sorted((a["expected_saving_eur"] for a in alerts), reverse=True)

    restarted = FraudEngine(state, model=runs["both"].model)
    assert restarted.process(claims, {}) == []  # known claims: no duplicate alerts
    fourth = _ring_claim(3, "GAO JUN", "137-5555-0001", "Helper 3")
    again = restarted.process([fourth], {fourth.claim_id: _parked(fourth)})
    assert {a["claim_id"] for a in again} == {"R0", "R1", "R2", "R3"}  # the grown ring is re-alerted
    assert again[0]["members"] == ["R0", "R1", "R2", "R3"]


def test_engine_needs_a_model(tmp_path):
    with pytest.raises(FileNotFoundError, match="voltrisk fraud train"):
        FraudEngine(tmp_path / "state.bin")


def _write(rows: list[dict], path) -> None:
    with open(path, "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)


def test_cli_train_score_evaluate_on_a_csv(tmp_path):
    book = make_book(seed=4, genuine=500, staged=6, phantom=3, cycles=3, opportunistic=10)
    path, model = tmp_path / "claims.csv", tmp_path / "m.json"
    _write(book, path)
    runner = CliRunner()
    res = runner.invoke(app, ["train", "--claims", str(path), "--label", "is_fraud", "--entity-cols",
                              "insured_phone,insured_address,insured_name,third_party_phone,garage,lawyer,clinic",
                              "--model-out", str(model), "--json"])
    assert res.exit_code == 0, res.output
    metrics = json.loads(res.stdout)
    assert REQUIRED_KEYS <= metrics.keys() and metrics["n_test"] == len(book) - metrics["n_train"] == 174
    assert metrics["pr_auc"] >= 0.9
    out = tmp_path / "scored.csv"
    res = runner.invoke(app, ["score", "--claims", str(path), "--model", str(model), "--out", str(out)])
    assert res.exit_code == 0, res.output
    scored = list(csv.DictReader(open(out)))
    assert len(scored) == len(book) and scored[0]["reason_1"]
    truth = {r["claim_id"]: r["ring_id"] for r in book}
    alerted = {r["ring_id"] for r in scored if r["ring_alert"] == "True"}
    true_rings = {v for v in truth.values() if v}
    caught = {truth[r["claim_id"]] for r in scored if r["ring_id"] in alerted and truth[r["claim_id"]]}
    assert caught == true_rings and len(alerted) == len(true_rings) == 12  # every ring, one alert each
    # Parquet with nullable booleans (pd.NA), as the simulator writes the book
    import pandas as pd

    df = pd.DataFrame(book).replace("", None)
    for col in ("insured_in_cell", "third_party_in_cell", "crash_pulse_found", "parked_or_charging_at_loss"):
        df[col] = df[col].astype("boolean")
    for col in ("crash_delta_v_kmh", "speed_at_loss_kmh"):
        df[col] = pd.to_numeric(df[col])
    df.to_parquet(tmp_path / "claims.parquet")
    res = runner.invoke(app, ["score", "--claims", str(tmp_path / "claims.parquet"), "--model", str(model),
                              "--out", str(tmp_path / "p.csv")])
    assert res.exit_code == 0, res.output
    assert len(list(csv.DictReader(open(tmp_path / "p.csv")))) == len(book)
    res = runner.invoke(app, ["evaluate", "--claims", str(path), "--json"])
    assert res.exit_code == 0, res.output
    ev = json.loads(res.stdout)
    assert REQUIRED_KEYS | {"ring_recall", "ring_precision", "alert_latency_p95_s"} <= ev.keys()
    assert set(ev["ablation"]) == {"graph", "telematics", "both"} and ev["ring_recall"] == 1.0


def test_cli_names_a_missing_column(book, tmp_path):
    path = tmp_path / "claims.csv"
    _write(book[:50], path)
    res = CliRunner().invoke(app, ["train", "--claims", str(path), "--label", "is_fraud", "--entity-cols", "fax"])
    assert isinstance(res.exception, UserError) and "no column(s) fax" in str(res.exception)
    res = CliRunner().invoke(app, ["train", "--claims", str(path), "--label", "nope", "--entity-cols", "garage"])
    assert isinstance(res.exception, UserError) and "no label column 'nope'" in str(res.exception)


def test_engine_restart_from_snapshot_plus_journal_with_a_torn_tail(runs, tmp_path):
    state = tmp_path / "state.bin"
    engine = FraudEngine(state, model=runs["both"].model, snapshot_every=2)
    claims = [_ring_claim(i, "Gao Jun", "13755550001", f"Helper {i}") for i in range(3)]
    engine.process(claims[:2], {})  # 2 claims: snapshot written, journal emptied
    assert state.exists() and not engine.journal_path.exists()
    engine.process(claims[2:], {})  # journalled only
    with open(engine.journal_path, "ab") as fh:
        fh.write(b"\x40\x00\x00\x00partial")  # a crash in the middle of the next append
    restarted = FraudEngine(state, model=runs["both"].model, snapshot_every=2)
    assert restarted.graph.members("R0") == ["R0", "R1", "R2"]
    assert restarted.process(claims, {}) == []
    restarted.snapshot_every = 100
    restarted.process([_ring_claim(3, "Gao Jun", "13755550001", "Helper 3")], {})
    again = FraudEngine(state, model=runs["both"].model)
    assert again.graph.members("R0") == ["R0", "R1", "R2", "R3"]


def test_alerts_stay_unsent_until_confirmed_across_restarts_and_snapshots(runs, tmp_path):
    """A crash (or a failed send) between ``process`` and ``confirm``: the restarted engine
    ignores the redelivered claims as known, and returns their alerts from
    ``unsent_alerts`` instead; confirmed alerts are not sent again, and a ring that grew
    replaces its older unsent alert with the newer version."""
    state = tmp_path / "state.bin"
    model = runs["both"].model
    engine = FraudEngine(state, model=model)
    claims = [_ring_claim(i, "Gao Jun", "13755550001", f"Helper {i}") for i in range(3)]
    alerts = engine.process(claims, {c.claim_id: _parked(c) for c in claims})
    assert alerts and engine.unsent_alerts() == alerts

    crashed = FraudEngine(state, model=model)  # the worker died before Kafka took the alerts
    assert crashed.process(claims, {}) == []  # the redelivered claims are known...
    assert crashed.unsent_alerts() == alerts  # ...and their alerts are still to send

    crashed.confirm(alerts[:1])
    assert crashed.unsent_alerts() == alerts[1:]
    assert FraudEngine(state, model=model).unsent_alerts() == alerts[1:]  # the confirmation is journaled

    fourth = _ring_claim(3, "Gao Jun", "13755550001", "Helper 3")
    grown = crashed.process([fourth], {fourth.claim_id: _parked(fourth)})
    assert {a["claim_id"] for a in grown} == {"R0", "R1", "R2", "R3"}
    unsent = {a["alert_id"]: a for a in crashed.unsent_alerts()}
    assert set(unsent) == {a["alert_id"] for a in grown}
    assert all(unsent[a["alert_id"]]["version"] == a["version"] for a in grown)  # the newer versions
    crashed.confirm(alerts)  # a late confirmation of the older versions leaves the newer ones
    assert {a["alert_id"] for a in crashed.unsent_alerts()} == set(unsent)

    crashed.save()  # a snapshot carries them too
    assert not crashed.journal_path.exists()
    again = FraudEngine(state, model=model)
    assert again.unsent_alerts() == crashed.unsent_alerts()
    again.confirm(again.unsent_alerts())
    assert FraudEngine(state, model=model).unsent_alerts() == []


def test_a_failed_journal_write_leaves_no_partial_entry_and_a_zeroed_tail_is_cut(runs, tmp_path, monkeypatch):
    """A write that fails half-way (a full disk) is cut back, so the next entry follows the
    last whole one; a tail of zeros (a crash on some file systems) is cut like a torn
    entry; damage followed by entries is refused with a message, not read past."""
    import os

    state = tmp_path / "state.bin"
    model = runs["both"].model
    engine = FraudEngine(state, model=model)
    claims = [_ring_claim(i, "Gao Jun", "13755550001", f"Helper {i}") for i in range(4)]
    engine.process(claims[:1], {})
    size = engine.journal_path.stat().st_size
    real_write = os.write

    def full_disk(fd, data):  # the disk fills half-way through the entry
        real_write(fd, bytes(data[: len(data) // 2]))
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "write", full_disk)
    with pytest.raises(OSError, match="No space"):
        engine.process(claims[1:2], {})
    monkeypatch.setattr(os, "write", real_write)
    assert engine.journal_path.stat().st_size == size  # the partial entry is gone
    restarted = FraudEngine(state, model=model)
    restarted.process(claims[2:3], {})
    assert set(FraudEngine(state, model=model).known) == {"R0", "R2"}  # R1 is scored again when redelivered

    with open(restarted.journal_path, "ab") as fh:
        fh.write(b"\x00" * 64)
    assert set(FraudEngine(state, model=model).known) == {"R0", "R2"}
    data = restarted.journal_path.read_bytes()
    restarted.journal_path.write_bytes(data[:4] + b"\xc1" * (len(data) - 4 - 1) + data[-1:] + data)
    with pytest.raises(ValueError, match="is damaged at byte 0"):
        FraudEngine(state, model=model)


def test_alert_versions_keep_rising_across_a_snapshot_when_the_clock_steps_back(runs, tmp_path, monkeypatch):
    """The warehouse keeps the highest version of an alert: a newer alert of a grown ring
    must carry a higher version than the one before it, also after a restart from a
    snapshot on a machine whose clock went back."""
    import time as clock

    state = tmp_path / "state.bin"
    model = runs["both"].model
    engine = FraudEngine(state, model=model)
    claims = [_ring_claim(i, "Gao Jun", "13755550001", f"Helper {i}") for i in range(4)]
    first = engine.process(claims[:3], {c.claim_id: _parked(c) for c in claims[:3]})
    assert first
    engine.confirm(first)
    engine.save()
    real = clock.time()
    monkeypatch.setattr(clock, "time", lambda: real - 3_600)  # an hour back
    grown = FraudEngine(state, model=model).process(claims[3:], {claims[3].claim_id: _parked(claims[3])})
    assert grown and min(a["version"] for a in grown) > max(a["version"] for a in first)


def test_each_claim_taken_has_its_rows_for_the_investigators_until_confirmed_sent(runs, tmp_path):
    """The live engine hands every claim it takes over as a ``fraud_claims`` row (its
    telematics verification) and its ``fraud_claim_entities`` rows (the ring graph the
    triage page draws), kept like the alerts until Kafka took them."""
    state = tmp_path / "state.bin"
    model = runs["both"].model
    engine = FraudEngine(state, model=model)
    claims = [_ring_claim(i, "Gao Jun", "13755550001", f"Helper {i}") for i in range(3)]
    engine.process(claims, {c.claim_id: _parked(c) for c in claims})
    rows = {r["claim"]["claim_id"]: r for r in engine.unsent_claim_rows()}
    assert set(rows) == {"R0", "R1", "R2"}
    assert rows["R0"]["claim"]["verdict"] and rows["R0"]["claim"]["ring_id"] == engine.graph.component_id("R0")
    phones = [e["entity_key"] for r in rows.values() for e in r["entities"] if e["kind"] == "phone"]
    assert phones.count("13755550001") == 3  # the shared phone links the ring
    assert {r["claim"]["claim_id"] for r in FraudEngine(state, model=model).unsent_claim_rows()} == set(rows)
    engine.confirm([], list(rows.values())[:2])
    assert len(FraudEngine(state, model=model).unsent_claim_rows()) == 1  # the confirmation is journaled
    engine.save()
    assert len(FraudEngine(state, model=model).unsent_claim_rows()) == 1  # and the snapshot keeps the rest
