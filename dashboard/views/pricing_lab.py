"""Pricing lab: the model registry, a what-if quote for an edited driver profile, and the
premium impact of promoting a candidate telematics model over the current book."""

import pandas as pd
import streamlit as st

from dashboard import repository as repo
from dashboard import services, ui
from pricing.settings import PricingSettings

st.title("Pricing lab")
root = str(PricingSettings().model_registry_dir)
models = repo.registry_models(root)
if models.empty:
    st.info(f"No model is registered in {root} yet: `voltrisk pricing train ... --register NAME` adds one.")
    st.stop()

st.subheader("Model registry")
st.caption(f"Registry at {root}. Promote with `voltrisk pricing promote NAME VERSION`; workers reload without restart.")
registry = services.registry_table(models)
st.dataframe(registry, hide_index=True)
metric_cols = [c for c in ("test_poisson_deviance_x100", "test_gini") if c in registry.columns]
if metric_cols:
    chart = registry.assign(model=registry["name"] + " v" + registry["version"].astype(str)).set_index("model")
    cols = st.columns(len(metric_cols))
    for col, metric in zip(cols, metric_cols, strict=True):
        col.caption(metric.replace("_", " "))
        col.bar_chart(chart[metric])

telematics = models[models["kind"] == "telematics"].sort_values("version")
if telematics.empty:
    st.info("No telematics multiplier is registered: the what-if quote and promotion impact need one.")
    st.stop()
labels = {f"{r.name} v{r.version} ({r.status})": (r.name, int(r.version)) for r in telematics.itertuples()}
production = [label for label, r in zip(labels, telematics.itertuples(), strict=True) if r.status == "production"]

st.subheader("What-if quote")
chosen = st.selectbox("Model", list(labels), index=list(labels).index(production[0]) if production else len(labels) - 1)
model = repo.load_model(root, *labels[chosen])
st.caption("Start from the fleet median of every feature and edit the driver profile.")
profile = {}
cols = st.columns(4)
for i, feature in enumerate(model.features):
    profile[feature] = cols[i % 4].number_input(services.feature_label(feature), value=float(model.medians[feature]),
                                                 min_value=0.0, format="%.3f", key=f"whatif_{feature}")
multiplier, reasons = services.telematics_quote(model, pd.DataFrame([profile]))
st.metric("Telematics multiplier", f"× {multiplier[0]:.2f}")
st.markdown("\n".join(f"- {r}" for r in reasons[0]) or "- No feature moves this profile's rate by 1 % or more.")

st.subheader("Promoting a candidate: premium impact over the book")
candidates = [k for k in labels if k not in production]
if not production or not candidates:
    st.info("Needs one telematics model in production and at least one other version to compare.")
    st.stop()
candidate = st.selectbox("Candidate", candidates, index=len(candidates) - 1)
with ui.warehouse_guard():
    ui.require_tables("vehicle_features", producer="the stream worker's window features")
    book = repo.fleet_features_latest()
if book.empty:
    st.info("No vehicle has window features yet: the impact is computed on the newest day's features.")
    st.stop()
impact = services.promotion_impact(book, repo.load_model(root, *labels[production[0]]), repo.load_model(root, *labels[candidate]))
c = st.columns(4)
c[0].metric("Vehicles priced", f"{impact['vehicles']:,}")
c[1].metric("Mean multiplier", f"× {impact['mean_after']:.3f}", f"{impact['mean_after'] - impact['mean_before']:+.3f}",
            delta_color="inverse")
c[2].metric("Premium up > 5 %", f"{100 * impact['share_up_5pct']:.1f} %")
c[3].metric("Premium down > 5 %", f"{100 * impact['share_down_5pct']:.1f} %")
st.bar_chart(services.change_histogram(impact["change_pct"]))
