"""Fleet activity and pipeline health: is data arriving, how fast, how late, what is refused."""

import time

import streamlit as st

from dashboard import bus, services, ui
from dashboard import repository as repo
from voltrisk.settings import KafkaClientSettings, WarehouseSettings, WorkerSettings

WINDOWS_MIN = {15: "last 15 min", 60: "last hour", 360: "last 6 h", 1440: "last 24 h"}

st.title("Pipeline health")
with ui.warehouse_guard():
    ui.require_tables("vehicle_rollup", "pipeline_minute", "dlq", producer="the warehouse sink")
    now_ms = int(time.time() * 1000)
    by_carmaker = repo.fleet_by_carmaker()
    totals = services.fleet_totals(by_carmaker)
    reasons = repo.dlq_reasons()
    if totals["events"] == 0 and reasons.empty:
        st.info(
            "No telemetry in the warehouse yet. `make up` starts a simulated fleet; "
            "a carmaker's producer writes to the ev.*.v1 topics (see contracts/)."
        )
        st.stop()

    c1, c2, c3, c4 = st.columns(4)
    c1.metric("Vehicles", f"{totals['vehicles']:,}")
    c2.metric("Events stored", f"{totals['events']:,}")
    c3.metric("Refused (DLQ)", f"{int(reasons['records'].sum()):,}")
    c4.metric("Last event", services.age_text(totals["last_ts_ms"], now_ms))

    st.subheader("Throughput and end-to-end latency")
    window = st.selectbox("Window (ending at the newest stored minute)", list(WINDOWS_MIN), index=1,
                          format_func=WINDOWS_MIN.__getitem__)
    summary = services.topic_summary(repo.pipeline_topics(window))
    st.dataframe(summary, hide_index=True, column_config={
        "event_count": st.column_config.NumberColumn("events"),
        "events_per_s": st.column_config.NumberColumn("events/s", format="%.1f"),
        **{f"latency_{q}_ms": st.column_config.NumberColumn(f"latency {q} (ms)", format="%.0f") for q in services.QUANTILES},
    })
    minutes = repo.pipeline_minutes(window)
    left, right = st.columns(2)
    left.caption("events/s per topic (complete minutes)")
    left.line_chart(services.throughput_by_minute(minutes))
    right.caption("p95 latency sent → stored (ms)")
    right.line_chart(services.latency_by_minute(minutes))

    st.subheader("Consumer lag")
    worker = WorkerSettings()
    groups = (WarehouseSettings().sink_group, worker.gate_group, worker.features_group, worker.worker_app_id)
    lag, lag_error = repo.consumer_lag(KafkaClientSettings().kafka_bootstrap, groups)
    if lag_error:
        st.warning(lag_error)
    elif lag.empty:
        st.info(f"The consumer groups {', '.join(groups)} have committed no offset yet.")
    else:
        st.dataframe(bus.lag_by_group(lag), hide_index=True)

    st.subheader("Dead-letter queue by reason")
    if reasons.empty:
        st.success("No record has been refused.")
    else:
        st.dataframe(services.dlq_table(reasons), hide_index=True)
        with st.expander("Latest refused records"):
            st.dataframe(services.dlq_latest_table(repo.dlq_latest(20)), hide_index=True)

    st.subheader("Last event per carmaker")
    st.dataframe(services.carmaker_table(by_carmaker, now_ms), hide_index=True)

    st.subheader("Vehicles")
    prefix = st.text_input("Pseudonymous vehicle id starts with", max_chars=64)
    shown = repo.vehicles(prefix=prefix, limit=200)
    st.caption(f"{len(shown)} most recently active vehicles shown" if prefix == "" else f"{len(shown)} vehicles match")
    st.dataframe(services.vehicle_table(shown), hide_index=True)
