"""Risk map: H3 resolution-7 cells coloured by risk, only where at least k vehicles drove."""

import pydeck as pdk
import streamlit as st

from dashboard import repository as repo
from dashboard import services, ui

WINDOWS_D = {7: "last 7 days", 30: "last 30 days", 90: "last 90 days", 36_500: "all data"}

st.title("Risk map")
with ui.warehouse_guard():
    ui.require_tables("cell_visits", "cell_crashes", producer="the stream worker's cell features")
    k = repo.settings().k_anonymity_vehicles
    left, right = st.columns(2)
    days = left.selectbox("Window (ending at the newest day stored)", list(WINDOWS_D), index=1, format_func=WINDOWS_D.__getitem__)
    metric = right.selectbox("Colour by", list(services.RISK_METRICS), format_func=services.RISK_METRICS.__getitem__)
    cells, hidden = services.risk_cells(repo.cells_r7(days), repo.crash_cells_r7(days), k)
    st.caption(f"{len(cells)} cells shown at H3 resolution 7; {hidden} cells hidden because fewer than {k} vehicles drove there.")
    if cells.empty:
        st.info(f"No cell has been driven by {k} or more vehicles in this window yet.")
        st.stop()

    cells["fill"] = services.colour_ramp(cells[metric])
    lat, lon = services.cell_centre(cells["hex"])
    layer = pdk.Layer(
        "H3HexagonLayer", cells[["hex", "fill", *services.RISK_METRICS, "vehicle_n"]], id="cells",
        get_hexagon="hex", get_fill_color="fill", get_line_color=[255, 255, 255, 120], line_width_min_pixels=1,
        pickable=True, auto_highlight=True, extruded=False,
    )
    deck = pdk.Deck(
        layers=[layer], initial_view_state=pdk.ViewState(latitude=lat, longitude=lon, zoom=9.5), map_style=None,
        tooltip={"text": "risk index {risk_index}\nharsh/h {harsh_per_h}\nexposure {exposure_h} h\ncrashes {crash_n}\nvehicles {vehicle_n}"},
    )
    event = st.pydeck_chart(deck, on_select="rerun", selection_mode="single-object", key="risk_map", height=520)
    picked = [o["hex"] for o in event.selection.get("objects", {}).get("cells", [])]

    st.subheader("Cell profile")
    options = list(cells["hex"])
    chosen = st.selectbox("Cell (click one on the map, or pick by rank)", options,
                          index=options.index(picked[0]) if picked and picked[0] in options else 0)
    row = cells.loc[cells["hex"] == chosen].iloc[0]
    c = st.columns(6)
    c[0].metric("Risk index", f"{row.risk_index:.2f}")
    c[1].metric("Harsh events / h", f"{row.harsh_per_h:.2f}")
    c[2].metric("Exposure", f"{row.exposure_h:,.1f} h")
    c[3].metric("Crashes", f"{int(row.crash_n)}")
    c[4].metric("Vehicles", f"{int(row.vehicle_n)}")
    c[5].metric("Speed p85", f"{row.speed_p85_kmh:.0f} km/h")

    st.subheader("Cells by risk")
    st.dataframe(cells.drop(columns=["cell", "fill"]), hide_index=True, column_config={
        "risk_index": st.column_config.NumberColumn("risk index", format="%.2f"),
        "harsh_per_h": st.column_config.NumberColumn("harsh/h", format="%.2f"),
        "exposure_h": st.column_config.NumberColumn("exposure h", format="%.1f"),
    })
