"""Fraud triage: ranked alert queue, the ring's graph and telematics evidence, and the
status workflow — decisions go to Kafka (fraud.decisions.v1), never to the warehouse."""

import time
from datetime import UTC, datetime

import streamlit as st

from dashboard import access, bus, decisions, services, ui
from dashboard import repository as repo
from voltrisk.settings import KafkaClientSettings

REOPENED_HELP = "Confirmed or dismissed before the ring grew; the engine alerted the claim again with the new claims"
DECISION_EFFECT = ("The live engine learns the decision: once a claim is confirmed as fraud, the claims of its ring "
                   "nobody has decided on yet, and every new claim that joins it, are alerted whatever their score "
                   "and say so first among their reasons; a dismissed claim is alerted again only when its ring "
                   "grows by a quarter.")

st.title("Fraud triage")
with ui.warehouse_guard():
    ui.require_tables("fraud_queue", "fraud_claims", "fraud_claim_entities", "fraud_decisions", producer="the fraud ring engine")
    counts = repo.fraud_status_counts().set_index("status")
    if counts.empty:
        st.info("No fraud alert yet. The ring engine raises alerts as claims arrive on claims.fnol.v1.")
        st.stop()
    cols = st.columns(len(decisions.QUEUE_STATUSES) + 1)
    for col, status in zip(cols, decisions.QUEUE_STATUSES, strict=False):
        col.metric(status.capitalize(), f"{int(counts['alerts'].get(status, 0)):,}",
                   help=REOPENED_HELP if status == "reopened" else None)
    open_saving = counts["saving_eur"].reindex(list(decisions.OPEN_STATUSES)).fillna(0).sum()
    cols[-1].metric("Expected saving, open", f"€{open_saving:,.0f}")

    statuses = st.multiselect("Show alerts that are", list(decisions.QUEUE_STATUSES),
                              default=list(decisions.OPEN_STATUSES))
    queue = repo.fraud_queue(statuses)
    st.caption(f"{len(queue)} alerts: rings holding claims investigators confirmed as fraud first, then by expected "
               "saving (score × claimed amount)")
    picked = st.dataframe(queue.drop(columns=["created_ts_ms"]), hide_index=True, on_select="rerun",
                          selection_mode="single-row", key="queue", column_config={
        "score": st.column_config.ProgressColumn("score", min_value=0.0, max_value=1.0, format="%.2f"),
        "amount_eur": st.column_config.NumberColumn("claimed €", format="%.0f"),
        "expected_saving_eur": st.column_config.NumberColumn("expected saving €", format="%.0f"),
        "ring_confirmed": st.column_config.NumberColumn("confirmed in ring", format="%d",
                                                        help="Claims of the ring confirmed as fraud when it was alerted"),
    })
    if queue.empty:
        st.stop()

    rows = picked.selection.rows
    alert_id = st.selectbox("Alert (click a row above, or pick it here)", list(queue["alert_id"]),
                            index=rows[0] if rows and rows[0] < len(queue) else 0)
    alert = repo.fraud_alert(alert_id).iloc[0]
    members, ring_claims = list(alert["members"]), int(alert["ring_claims"])
    st.subheader(f"{alert_id} · ring {alert['ring_id']} · {ring_claims:,} claims")
    if len(members) < ring_claims:
        st.caption(f"The ring graph and the verification table show the {len(members)} of its claims nearest to "
                   f"{alert['claim_id']}.")
    if alert["status"] == "reopened":
        decided = datetime.fromtimestamp(int(alert["decided_ts_ms"]) / 1000, UTC)
        st.warning(f"Reopened: {alert['investigator']} marked it {alert['last_decision']} on "
                   f"{decided:%Y-%m-%d %H:%M} UTC, and the ring has grown since (now {ring_claims:,} claims). "
                   "Look at its new claims and decide again.")
    c = st.columns(5)
    c[0].metric("Score", f"{alert['score']:.2f}")
    c[1].metric("Claimed", f"€{alert['amount_eur']:,.0f}")
    c[2].metric("Expected saving", f"€{alert['expected_saving_eur']:,.0f}")
    c[3].metric("Telematics", alert["verdict"])
    c[4].metric("Status", alert["status"])
    why, evidence = st.columns(2)
    why.markdown("**Why the model flags it**\n" + "".join(f"\n- {r}" for r in alert["reasons"]))
    evidence.markdown("**Telematics evidence**\n" + "".join(f"\n- {e}" for e in alert["evidence"]))

    entities = repo.ring_entities(members)
    claims = repo.ring_claims(members)
    st.markdown("**Ring graph** — claims linked by the entities they share")
    st.graphviz_chart(services.ring_graph_dot(entities, claims))
    st.dataframe(services.shared_entities(entities), hide_index=True)
    st.markdown("**Telematics verification per claim**")
    st.dataframe(services.verification_table(claims), hide_index=True)

    history = repo.alert_decisions(alert_id)
    if not history.empty:
        st.markdown("**Decisions so far**")
        st.dataframe(history.assign(decided_utc=services.utc_from_ms(history["ts_ms"])).drop(columns="ts_ms"), hide_index=True)

    st.download_button("Download the case file", services.case_file(alert, entities, claims, history,
                                                                    access.current_user(), int(time.time() * 1000)),
                       file_name=f"{alert_id}.md", mime="text/markdown",
                       help="The alert, its reasons and evidence, the ring's claims, shared entities and decisions, "
                            "as Markdown for a referral")

    st.subheader("Decide")
    st.caption(DECISION_EFFECT)
    with st.form("decision", clear_on_submit=True):
        new_status = st.radio("Move to", decisions.NEXT_STATUSES[alert["status"]], horizontal=True)
        signed_in = access.current_user()
        investigator = signed_in or st.text_input("Investigator", max_chars=200)
        note = st.text_area("Note for the file", max_chars=2_000)
        submitted = st.form_submit_button("Send decision", type="primary")
    if submitted:
        try:
            if not investigator.strip():
                raise decisions.DecisionRefused("say who decides: fill in the investigator")
            rec = decisions.decision(alert_id, alert["status"], new_status, investigator, note,
                                     alert_version=int(alert["version"]))
            bus.publish(rec, KafkaClientSettings())
        except (decisions.DecisionRefused, ConnectionError) as exc:
            st.error(str(exc))
        else:
            repo.clear()
            st.success(f"Sent: {alert_id} → {new_status}. The queue shows it once the sink has stored the decision.")
