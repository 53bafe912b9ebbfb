"""Vehicle drill-down: one pseudonymous vehicle's trips, harsh events, roads, features
against the fleet, score history and current telematics quote."""

import pydeck as pdk
import streamlit as st

from dashboard import repository as repo
from dashboard import services, ui
from pricing.registry import version_label
from pricing.settings import PricingSettings

st.title("Vehicle drill-down")
with ui.warehouse_guard():
    ui.require_tables("telemetry_dynamics", "telemetry_state", "vehicle_rollup", "trips", "cell_visits", "vehicle_features", "scores",
                      producer="the warehouse sink and the stream worker's features")
    prefix = st.text_input("Pseudonymous vehicle id starts with", max_chars=64)
    matches = repo.vehicles(prefix=prefix, limit=50)
    if matches.empty:
        st.info(f"No vehicle id starts with {prefix!r}." if prefix else "No vehicle has sent telemetry yet.")
        st.stop()
    vehicle_id = st.selectbox("Vehicle (most recently active first)", list(matches["vehicle_id"]))

    activity = repo.vehicle_activity(vehicle_id)
    trips = repo.vehicle_trips(vehicle_id)
    c = st.columns(4)
    c[0].metric("Events stored", f"{int(activity['event_count'].sum()):,}")
    c[1].metric("Carmaker", ", ".join(sorted(set(activity["carmaker"]))))
    c[2].metric("Trips", f"{len(trips):,}")
    c[3].metric("Distance in these trips", f"{trips['distance_km'].sum():,.1f} km")

    st.subheader("Harsh events per trip")
    if trips.empty:
        st.info("No closed trip for this vehicle yet.")
    else:
        st.bar_chart(services.harsh_timeline(trips))
        with st.expander("Trips"):
            st.dataframe(services.trips_table(trips), hide_index=True)

    st.subheader("Where it drove (last 30 days, H3 resolution 7)")
    cells = repo.vehicle_cells_r7(vehicle_id)
    if cells.empty:
        st.info("No cell visit recorded for this vehicle.")
    else:
        cells["hex"] = services.hex_ids(cells["cell_r7"])
        cells["fill"] = services.colour_ramp(cells["exposure_h"])
        lat, lon = services.cell_centre(cells["hex"])
        st.pydeck_chart(pdk.Deck(
            layers=[pdk.Layer("H3HexagonLayer", cells[["hex", "fill", "exposure_h", "harsh_n"]], get_hexagon="hex",
                              get_fill_color="fill", pickable=True, extruded=False)],
            initial_view_state=pdk.ViewState(latitude=lat, longitude=lon, zoom=9.5), map_style=None,
            tooltip={"text": "{exposure_h} h driven\n{harsh_n} harsh events"}), height=380)

    st.subheader("Features against the fleet")
    latest = repo.vehicle_features_latest(vehicle_id)
    fleet = repo.fleet_feature_quantiles()
    if latest.empty or fleet["vehicles"].iloc[0] == 0:
        st.info("No window features for this vehicle yet.")
    else:
        row = latest.iloc[0]
        st.caption(f"As of local day {services.local_day_text(row['as_of_day'])}; "
                   f"fleet of {int(fleet['vehicles'].iloc[0])} vehicles on its newest day.")
        st.dataframe(services.feature_percentiles(row, fleet, repo.FEATURES_30D), hide_index=True, column_config={
            "value": st.column_config.NumberColumn(format="%.3f"),
            "fleet_median": st.column_config.NumberColumn("fleet median", format="%.3f"),
            "percentile": st.column_config.ProgressColumn("fleet percentile", min_value=0, max_value=100, format="%.0f"),
        })

    st.subheader("Score history")
    history = services.score_history(repo.vehicle_scores(vehicle_id))
    if history.empty:
        st.info("No score for this vehicle yet.")
    else:
        st.line_chart(history)

    st.subheader("Current telematics quote")
    root = str(PricingSettings().model_registry_dir)
    production = repo.production_telematics(root)
    if production is None:
        st.info(f"No telematics model is in production in the registry at {root}: "
                "train one and run `voltrisk pricing promote NAME VERSION`.")
    elif latest.empty:
        st.info("This vehicle has no window features to price yet.")
    else:
        name, version, model = production
        multiplier, reasons = services.telematics_quote(model, latest)
        st.metric(f"Multiplier ({version_label(name, version)})", f"× {multiplier[0]:.2f}")
        st.markdown("\n".join(f"- {r}" for r in reasons[0]) or "No feature moves this vehicle's rate by 1 % or more.")
