"""Portfolio: exposure, crashes and claims by carmaker and over time, and the premium
distribution before and after the telematics multiplier."""

import streamlit as st

from dashboard import repository as repo
from dashboard import services, ui
from pricing.registry import version_label
from pricing.settings import PricingSettings

st.title("Portfolio")
with ui.warehouse_guard():
    ui.require_tables("vehicle_daily", "vehicle_rollup", "claims_fnol", "vehicle_features",
                      producer="the stream worker's daily features and the warehouse sink")
    exposure, segments, claims = repo.exposure_daily(), repo.segments(), repo.claims_daily()
    if exposure.empty:
        st.info("No exposure yet: daily per-vehicle rows appear once the stream worker has closed trips.")
        st.stop()
    t = services.portfolio_totals(exposure, segments, claims)
    c = st.columns(5)
    c[0].metric("Vehicles", f"{t['vehicles']:,}")
    c[1].metric("Exposure", f"{t['vehicle_years']:,.2f} vehicle-years")
    c[2].metric("Distance", f"{t['distance_km']:,.0f} km")
    c[3].metric("Claims per vehicle-year", f"{t['claim_frequency']:.2f}")
    c[4].metric("Crashes per vehicle-year", f"{t['crash_frequency']:.2f}")
    st.caption(f"{t['claims']:,} claims for €{t['claimed_eur']:,.0f}; {t['crashes']:,.0f} crashes detected by telematics. "
               "Loss ratios need written premiums, which no table holds yet.")

    st.subheader("By carmaker")
    st.dataframe(services.segment_table(segments), hide_index=True, column_config={
        "vehicle_years": st.column_config.NumberColumn("vehicle-years", format="%.2f"),
        "distance_km_total": st.column_config.NumberColumn("km", format="%.0f"),
        "driving_h": st.column_config.NumberColumn("driving h", format="%.1f"),
        "hard_brakes_per_100km": st.column_config.NumberColumn("hard brakes /100 km", format="%.2f"),
        "crashes_per_vehicle_year": st.column_config.NumberColumn("crashes / vehicle-year", format="%.2f"),
    })

    st.subheader("Over time (local days)")
    left, right = st.columns(2)
    left.caption("vehicles driving and driving hours per day")
    left.line_chart(services.by_day(exposure, ["vehicles", "driving_h"]))
    right.caption("claims reported per day")
    if claims.empty:
        right.info("No claim reported yet.")
    else:
        right.bar_chart(services.by_day(claims, ["claims"]))

    st.subheader("Premium relative to the base, before and after telematics")
    root = str(PricingSettings().model_registry_dir)
    production = repo.production_telematics(root)
    book = repo.fleet_features_latest()
    if production is None or book.empty:
        st.info(f"Needs a telematics model in production (registry at {root}) and vehicles with window features.")
        st.stop()
    name, version, model = production
    multipliers = services.telematics_multipliers(model, book)
    st.caption(f"{version_label(name, version)} over {len(book):,} vehicles' newest features: mean × {multipliers.mean():.3f}, "
               f"{(multipliers < 1).mean():.0%} of vehicles pay less than the base premium.")
    st.bar_chart(services.multiplier_distribution(multipliers), stack=False)
