"""Fraud triage: queue, ring graph, verification, and the decision workflow."""

from __future__ import annotations

import json

import pytest
from dashboard_seed import (
    ALERTS,
    BASE_TS_MS,
    CONFIRMED_ALERT,
    CONFIRMED_IN_RING,
    CONFIRMED_REASON,
    DECIDED,
    GREW,
    SHARED_ENTITIES,
    frame_with,
    run_page,
)

from dashboard import bus, decisions

PAGE = "views/fraud.py"


def test_fraud_queue_ranked_by_expected_saving(seeded_url, warehouse_at):
    warehouse_at(seeded_url)
    at = run_page(PAGE)
    m = {x.label: x.value for x in at.metric}
    assert m["New"] == "2" and m["Reopened"] == "1" and m["Investigating"] == "1" and m["Confirmed"] == "0"
    assert m["Dismissed"] == "0"  # the dismissed alert's ring grew since: it is reopened, an open one
    assert m["Expected saving, open"] == f"€{sum(a[4] for a in ALERTS):,.0f}"
    queue = frame_with(at, "alert_id", "expected_saving_eur")
    assert list(queue["alert_id"]) == [a[0] for a in ALERTS]
    queue = queue.set_index("alert_id")
    assert queue.loc["alert-c6", "status"] == DECIDED["alert-c6"][0]
    reopened = queue.loc["alert-c7", ["status", "last_decision", "investigator"]].tolist()
    assert reopened == ["reopened", *DECIDED["alert-c7"]]
    # the ring's size, not the length of the members list the alert carries
    assert queue["ring_claims"].to_dict() == {a[0]: GREW.get(a[0], len(a[6])) for a in ALERTS}


def test_a_ring_holding_confirmed_fraud_leads_the_queue_with_its_count(confirmed_url, warehouse_at):
    """The engine ranks a ring's alerts first once investigators confirmed fraud in it;
    the queue did so only in the alert's first reason, below every larger saving."""
    warehouse_at(confirmed_url)
    at = run_page(PAGE)
    queue = frame_with(at, "alert_id", "expected_saving_eur")
    saving = {a[0]: a[4] for a in [*ALERTS, CONFIRMED_ALERT]}
    assert min(saving, key=saving.get) == "alert-c9"
    assert list(queue["alert_id"]) == ["alert-c9", "alert-c1", "alert-c4", "alert-c6", "alert-c7"]
    assert queue.set_index("alert_id")["ring_confirmed"].to_dict() == {
        "alert-c9": CONFIRMED_IN_RING, "alert-c1": 0, "alert-c4": 0, "alert-c6": 0, "alert-c7": 0}
    table = next(d for d in at.dataframe if "ring_confirmed" in d.value.columns)
    assert json.loads(table.proto.columns)["ring_confirmed"]["label"] == "confirmed in ring"
    # the first row is the alert opened below, with the engine's reason first
    assert at.subheader[0].value == "alert-c9 · ring ring-5 · 3 claims"
    why = next(m.value for m in at.markdown if m.value.startswith("**Why the model flags it**"))
    assert why == f"**Why the model flags it**\n\n- {CONFIRMED_REASON}\n- 3 claims in one ring"
    assert {x.label: x.value for x in at.metric}["New"] == "3"


def test_fraud_alert_shows_ring_and_evidence(seeded_url, warehouse_at):
    warehouse_at(seeded_url)
    at = run_page(PAGE)
    assert at.subheader[0].value == "alert-c1 · ring ring-1 · 3 claims"
    shared = frame_with(at, "entity_key", "claims").set_index("entity_key")["claims"].to_dict()
    assert shared == {key: len(c) for _, key, c in SHARED_ENTITIES if set(c) <= {"c1", "c2", "c3"}}
    claims = frame_with(at, "claim_id", "crash_pulse_found").set_index("claim_id")
    assert list(claims.index) == ["c1", "c2", "c3"] and claims.loc["c1", "verdict"] == "contradicted"
    dot = at.get("graphviz_chart")[0].proto.spec
    assert '"c:c1" -- "e:phone:13800138000"' in dot and '"c:c3" -- "e:phone:13800138000"' in dot
    assert "person-c1" not in dot  # entities of a single claim are not ring evidence
    assert [r.value for r in at.radio][0] == "investigating"  # new -> investigating | dismissed
    # what a decision does beyond the queue
    assert ("The live engine learns the decision: once a claim is confirmed as fraud, the claims of its ring nobody "
            "has decided on yet, and every new claim that joins it, are alerted whatever their score"
            ) in " ".join(c.value for c in at.caption)


def test_fraud_filter_and_history(seeded_url, warehouse_at):
    warehouse_at(seeded_url)
    at = run_page(PAGE)
    at.multiselect[0].set_value(["investigating"]).run()
    assert list(frame_with(at, "alert_id", "expected_saving_eur")["alert_id"]) == ["alert-c6"]
    history = frame_with(at, "investigator", "decided_utc")
    assert history[["status", "investigator"]].values.tolist() == [list(DECIDED["alert-c6"])]


def test_a_reopened_alert_says_why_and_can_be_decided_again(seeded_url, warehouse_at, monkeypatch):
    """An alert dismissed before its ring grew: the page says who decided what, shows the
    ring's true size beside the nearest claims it carries, and takes a new decision."""
    warehouse_at(seeded_url)
    sent = []
    monkeypatch.setattr(bus, "publish", lambda rec, settings: sent.append(rec))
    at = run_page(PAGE)
    at.selectbox[0].set_value("alert-c7").run()
    assert at.subheader[0].value == f"alert-c7 · ring ring-4 · {GREW['alert-c7']} claims"
    assert "show the 2 of its claims nearest to c7" in " ".join(c.value for c in at.caption)
    assert at.warning[0].value.startswith("Reopened: zhao.lei marked it dismissed on 2025-11-24 16:01 UTC")
    assert list(frame_with(at, "claim_id", "crash_pulse_found")["claim_id"]) == ["c7", "c8"]
    assert at.radio[0].options == ["investigating", "dismissed"]
    at.text_input[0].input("li.na")
    at.button[0].click().run()
    assert not at.error, [e.value for e in at.error]
    # the decision names the alert version on screen: only a later one reopens it
    assert [(r.alert_id, r.status, r.investigator, r.alert_version) for r in sent] == [
        ("alert-c7", "investigating", "li.na", BASE_TS_MS + 120_000)]


def test_fraud_decision_without_kafka_says_so(seeded_url, warehouse_at, monkeypatch, dead_url):
    warehouse_at(seeded_url)
    dead = dead_url.removeprefix("http://")
    monkeypatch.setenv("VOLTRISK_KAFKA_BOOTSTRAP", dead)
    at = run_page(PAGE)
    at.text_input[0].input("li.na")
    at.button[0].click().run()
    assert [e.value for e in at.error][0].startswith(f"Kafka at {dead} did not answer")
    assert "so the decision on alert alert-c1 was not sent" in at.error[0].value


def test_fraud_decision_needs_investigator(seeded_url, warehouse_at):
    warehouse_at(seeded_url)
    at = run_page(PAGE)
    at.button[0].click().run()
    assert at.error[0].value == "say who decides: fill in the investigator"


def test_workflow_refuses_skipping_investigation():
    with pytest.raises(decisions.DecisionRefused, match="alert a1 is new: it can move to investigating, dismissed, not to confirmed"):
        decisions.decision("a1", "new", "confirmed", "li.na")
    rec = decisions.decision("a1", "investigating", "confirmed", " li.na ", "garage invoices forged", now_ms=1_764_000_000_000)
    assert (rec.status, rec.investigator, rec.ts_ms) == ("confirmed", "li.na", 1_764_000_000_000)
    with pytest.raises(decisions.DecisionRefused, match="not a valid fraud.decisions.v1 record"):
        decisions.decision("a1", "new", "investigating", "x" * 201)
    # reopened is the queue's, never a decision: it moves on like a new alert
    assert decisions.decision("a1", "reopened", "dismissed", "li.na").status == "dismissed"
    with pytest.raises(decisions.DecisionRefused, match="alert a1 is reopened: it can move to investigating, dismissed"):
        decisions.decision("a1", "reopened", "confirmed", "li.na")


def test_an_alert_on_a_claim_id_of_the_longest_allowed_can_be_decided():
    """The engine names an alert "alert-" + its claim id, and a claim id may have 64 characters."""
    import msgspec

    from stream.records import FnolV1

    longest = next(f.type.max_length for f in msgspec.inspect.type_info(FnolV1).fields if f.name == "claim_id")
    assert longest == 64
    alert_id = "alert-" + "c" * longest
    assert decisions.decision(alert_id, "new", "investigating", "li.na").alert_id == alert_id


def test_the_alert_downloads_as_a_case_file(seeded_url, warehouse_at, monkeypatch):
    """What the page shows of the alert, as Markdown for a referral: the file the button serves."""
    from streamlit.runtime import memory_media_file_storage as media

    served: dict[str, bytes] = {}
    keep = media.MemoryMediaFileStorage.load_and_get_id

    def spy(self, path_or_data, mimetype, kind, filename=None):
        served[filename] = path_or_data
        return keep(self, path_or_data, mimetype, kind, filename)

    monkeypatch.setattr(media.MemoryMediaFileStorage, "load_and_get_id", spy)
    warehouse_at(seeded_url)
    at = run_page(PAGE)
    (button,) = at.get("download_button")
    assert button.proto.label == "Download the case file" and button.proto.url.endswith(".md")
    lines = served["alert-c1.md"].decode().splitlines()
    assert lines[0] == "# Case file: alert-c1"
    assert lines[2].startswith("Exported ") and lines[2].endswith(
        " by an unnamed user (no sign-in) from voltrisk fraud triage.")
    assert "| Ring | ring-1, 3 claims |" in lines and "| Telematics verdict | contradicted |" in lines
    why = lines[lines.index("## Why the model flags it") + 2:lines.index("## Telematics evidence") - 1]
    assert why == ["- 3 claims in one ring"]
    evidence = lines[lines.index("## Telematics evidence") + 2]
    assert evidence == "- contradicted: seeded evidence for c1"
    claims = [line for line in lines if line.startswith("| c") and not line.startswith("| claim")]
    assert [c.split(" | ")[0] for c in claims] == ["| c1", "| c2", "| c3"]
    assert "| contradicted |" in claims[0]
    shared = lines[lines.index("## Entities the claims share") + 4:]
    assert [line for line in shared if line.startswith("| phone | 13800138000 | ")] == [
        "| phone | 13800138000 | 3 | c1, c2, c3 |"]
    assert lines[lines.index("## Decisions") + 2] == "(none)"


def test_a_case_file_keeps_each_value_in_its_cell():
    """An investigator's note or an entity holding a line break or a column bar stays one cell."""
    import pandas as pd

    from dashboard import services

    alert = pd.Series({"alert_id": "alert-x", "claim_id": "x", "ring_id": "ring-x", "members": ["x"], "ring_claims": 1,
                       "score": 0.9, "amount_eur": 1000.0, "expected_saving_eur": 900.0, "verdict": "no_telematics",
                       "status": "investigating", "last_decision": "investigating", "investigator": "Li Na",
                       "reasons": ["shares a phone"], "evidence": []})
    history = pd.DataFrame({"ts_ms": [BASE_TS_MS], "status": ["investigating"], "investigator": ["Li Na"],
                            "note": ["called the garage | no answer\nretry Monday"]})
    empty = pd.DataFrame(columns=["kind", "entity_key", "claim_id"])
    text = services.case_file(alert, empty, pd.DataFrame(), history, "Li Na", BASE_TS_MS)
    decisions_part = text.split("## Decisions\n\n")[1].splitlines()
    assert decisions_part[2].endswith("| investigating | Li Na | called the garage \\| no answer retry Monday |")
    assert "## Telematics evidence\n\n(none)" in text and "| Status | investigating (last decision investigating by Li Na) |" in text
