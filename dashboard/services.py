"""What the pages show, computed from the repository's DataFrames.

Plain functions over pandas, no Streamlit: unit tests call them directly. Times
arrive as UTC epoch milliseconds or seconds (the warehouse stores UTC) and leave
as timezone-aware UTC timestamps.
"""

from __future__ import annotations

import h3
import numpy as np
import pandas as pd

from stream.features.cells import DISPLAY_RES, cell_aggregates

QUANTILES = ("p50", "p95", "p99")


def utc_from_ms(ms: pd.Series) -> pd.Series:
    return pd.to_datetime(ms.astype("int64"), unit="ms", utc=True)


def age_text(ms: int | None, now_ms: int) -> str:
    """How long ago an epoch-millisecond time was, in words.

    >>> age_text(1_000, 61_000)
    '1 min ago'
    >>> age_text(0, 3 * 86_400_000)
    '3 d ago'
    >>> age_text(None, 0)
    'never'
    """
    if ms is None or pd.isna(ms):
        return "never"
    s = max(0, (now_ms - int(ms)) // 1000)
    for unit, size in (("d", 86_400), ("h", 3_600), ("min", 60)):
        if s >= size:
            return f"{s // size} {unit} ago"
    return f"{s} s ago"


def fleet_totals(by_carmaker: pd.DataFrame) -> dict:
    """Vehicles, stored events and the newest event time over all carmakers."""
    if by_carmaker.empty:
        return {"vehicles": 0, "events": 0, "carmakers": 0, "last_ts_ms": None}
    return {
        "vehicles": int(by_carmaker["vehicles"].sum()),
        "events": int(by_carmaker["events"].sum()),
        "carmakers": int(len(by_carmaker)),
        "last_ts_ms": int(by_carmaker["last_ts_ms"].max()),
    }


def carmaker_table(by_carmaker: pd.DataFrame, now_ms: int) -> pd.DataFrame:
    out = by_carmaker.assign(
        last_event_utc=utc_from_ms(by_carmaker["last_ts_ms"]),
        last_event_age=[age_text(ms, now_ms) for ms in by_carmaker["last_ts_ms"]],
    )
    return out[["carmaker", "vehicles", "events", "last_event_utc", "last_event_age"]]


def vehicle_table(vehicles: pd.DataFrame) -> pd.DataFrame:
    out = vehicles.assign(last_event_utc=utc_from_ms(vehicles["last_ts_ms"]))
    return out[["vehicle_id", "carmaker", "events", "dynamics_events", "state_events", "last_event_utc"]]


def _split_quantiles(df: pd.DataFrame) -> pd.DataFrame:
    q = np.vstack(df["latency_q_ms"].to_numpy()) if len(df) else np.empty((0, len(QUANTILES)))
    return df.drop(columns="latency_q_ms").assign(**{f"latency_{name}_ms": q[:, i] for i, name in enumerate(QUANTILES)})


def throughput_by_minute(minutes: pd.DataFrame) -> pd.DataFrame:
    """One row per complete minute, one events/s column per topic (missing minutes are 0).

    The newest minute is still filling, and would read as a fall in throughput: left out.
    """
    minutes = minutes[minutes["minute_s"] < minutes["minute_s"].max()] if minutes["minute_s"].nunique() > 1 else minutes
    if minutes.empty:
        return pd.DataFrame()
    wide = minutes.assign(events_per_s=minutes["event_count"] / 60.0, minute_utc=pd.to_datetime(minutes["minute_s"], unit="s", utc=True))
    return wide.pivot_table(index="minute_utc", columns="topic", values="events_per_s", fill_value=0.0).sort_index()


def latency_by_minute(minutes: pd.DataFrame) -> pd.DataFrame:
    """One row per minute, the p95 end-to-end latency per topic in milliseconds."""
    if minutes.empty:
        return pd.DataFrame()
    df = _split_quantiles(minutes).assign(minute_utc=pd.to_datetime(minutes["minute_s"], unit="s", utc=True))
    return df.pivot_table(index="minute_utc", columns="topic", values="latency_p95_ms").sort_index()


def topic_summary(topics: pd.DataFrame) -> pd.DataFrame:
    """Per topic: events, mean events/s over the window and latency quantiles.

    The window runs from the start of the first minute to the end of the last one.
    """
    if topics.empty:
        return pd.DataFrame(columns=["topic", "event_count", "events_per_s", *(f"latency_{q}_ms" for q in QUANTILES)])
    df = _split_quantiles(topics)
    span_s = (df["last_minute_s"] - df["first_minute_s"]).astype("int64") + 60
    df = df.assign(events_per_s=df["event_count"] / span_s)
    return df[["topic", "event_count", "events_per_s", *(f"latency_{q}_ms" for q in QUANTILES)]]


def dlq_table(reasons: pd.DataFrame) -> pd.DataFrame:
    return reasons.assign(last_refused_utc=utc_from_ms(reasons["last_stored_ts_ms"])).drop(columns="last_stored_ts_ms")


def dlq_latest_table(latest: pd.DataFrame) -> pd.DataFrame:
    out = latest.assign(refused_utc=utc_from_ms(latest["stored_ts_ms"])).drop(columns="stored_ts_ms")
    return out[["refused_utc", "source_topic", "source_partition", "source_offset", "reason", "message"]]


# --- risk map ----------------------------------------------------------------------

RISK_METRICS = {
    "risk_index": "risk index (1 = fleet average)",
    "harsh_per_h": "harsh events per driving hour",
    "exposure_h": "exposure (driving hours)",
    "crash_n": "crashes",
}


def risk_cells(cells: pd.DataFrame, crash_cells: pd.DataFrame, k_vehicles: int) -> tuple[pd.DataFrame, int]:
    """Resolution-7 cells driven by at least ``k_vehicles`` vehicles, with the stream's own
    cell aggregates and risk index (``stream.features.cells.cell_aggregates``); and how
    many cells were hidden.

    The warehouse sums the visits per res-7 cell (every input of ``cell_aggregates`` is
    a sum, so the result is the same as over single visits) and counts the distinct
    vehicles, which is the one figure a sum cannot give.
    """
    if cells.empty:
        return pd.DataFrame(columns=["cell", "hex", "vehicle_n", *RISK_METRICS]), 0
    visits = {
        "cell": cells["cell_r7"].to_numpy(np.uint64),
        "vehicle_id": np.arange(len(cells)),
        **{c: cells[f"{c}_sum"].to_numpy(np.float64)
           for c in ("driving_s", "distance_km", "hard_brake_n", "harsh_accel_n", "harsh_turn_n")},
        "speed_hist_s": list(cells["speed_hist_s_sum"]),
    }
    crashes = {"cell": np.repeat(crash_cells["cell_r7"].to_numpy(np.uint64), crash_cells["crashes"].to_numpy(np.int64))}
    agg = pd.DataFrame(cell_aggregates(visits, crashes, res=DISPLAY_RES))
    vehicles = dict(zip(cells["cell_r7"].astype("uint64"), cells["vehicle_n"], strict=True))
    agg["vehicle_n"] = [int(vehicles.get(c, 0)) for c in agg["cell"]]
    # the k-vehicle rule of stream.features.cells.rollup_for_display
    shown = agg[agg["vehicle_n"] >= k_vehicles].copy()
    shown.insert(1, "hex", hex_ids(shown["cell"]))
    return shown.sort_values("risk_index", ascending=False, ignore_index=True), len(agg) - len(shown)


def colour_ramp(values: pd.Series) -> list[list[int]]:
    """Green (low) → amber → red (high) RGBA per value, scaled between the 5th and 95th percentile."""
    v = values.to_numpy(np.float64)
    if len(v) == 0:
        return []
    lo, hi = np.nanpercentile(v, 5), np.nanpercentile(v, 95)
    t = np.clip((v - lo) / (hi - lo), 0, 1) if hi > lo else np.full(len(v), 0.5)
    red = np.where(t < 0.5, 40 + 430 * t, 255).astype(int)
    green = np.where(t < 0.5, 170 + 30 * t, 185 - 300 * (t - 0.5)).astype(int)
    return [[int(r), int(g), 60, 170] for r, g in zip(red, green, strict=True)]


def hex_ids(cells: pd.Series) -> list[str]:
    """H3 cell ids as the hex strings the map layer takes."""
    return [h3.int_to_str(int(c)) for c in cells]


def local_day_text(day: int) -> str:
    """A local day number (days since 1970-01-01, UTC+8) as a date.

    >>> local_day_text(20416)
    '2025-11-24'
    """
    return f"{pd.Timestamp(0) + pd.Timedelta(days=int(day)):%Y-%m-%d}"


def cell_centre(cells: pd.Series) -> tuple[float, float]:
    """Mean (lat, lon) of H3 cells: where the map opens."""
    points = np.array([h3.cell_to_latlng(h) for h in cells])
    return float(points[:, 0].mean()), float(points[:, 1].mean())


# --- fraud triage ------------------------------------------------------------------

ENTITY_COLOURS = {
    "person": "#8ecae6", "vehicle": "#bde0fe", "phone": "#ffb703", "address": "#fb8500", "bank": "#e63946",
    "garage": "#90be6d", "tow": "#43aa8b", "lawyer": "#9d4edd", "clinic": "#f28482",
}
VERDICT_COLOURS = {"contradicted": "#e63946", "consistent": "#2a9d8f", "no_telematics": "#adb5bd"}


def _dot_id(text: str) -> str:
    return text.replace("\\", "\\\\").replace('"', '\\"')


def _dot_text(text: str, limit: int = 28) -> str:
    return _dot_id(text if len(text) <= limit else text[: limit - 1] + "…")


def ring_graph_dot(entities: pd.DataFrame, claims: pd.DataFrame) -> str:
    """Graphviz DOT of a ring: claims (coloured by telematics verdict) linked to the
    entities they name; an entity named by two or more claims is the ring's evidence
    and drawn bold, entities of a single claim are left out to keep the graph legible."""
    shared = entities.groupby(["kind", "entity_key"])["claim_id"].transform("nunique") >= 2
    links = entities[shared]
    verdict = dict(zip(claims["claim_id"], claims["verdict"], strict=True)) if not claims.empty else {}
    lines = ["graph ring {", "  graph [rankdir=LR, bgcolor=transparent];",
             '  node [style=filled, fontname="Helvetica", fontsize=10];']
    for cid in sorted(set(entities["claim_id"]) | set(verdict)):
        colour = VERDICT_COLOURS.get(verdict.get(cid, ""), "#dee2e6")
        lines.append(f'  "c:{_dot_id(cid)}" [label="claim {_dot_text(cid)}\\n{_dot_text(verdict.get(cid, "?"))}", shape=box, fillcolor="{colour}"];')
    for (kind, key), group in links.groupby(["kind", "entity_key"]):
        node = f"e:{_dot_id(kind)}:{_dot_id(key)}"
        lines.append(f'  "{node}" [label="{_dot_text(kind)}\\n{_dot_text(key)}", shape=ellipse, '
                     f'fillcolor="{ENTITY_COLOURS.get(kind, "#e9ecef")}", penwidth=2];')
        lines += [f'  "c:{_dot_id(cid)}" -- "{node}" [label="{_dot_text(kind)}", fontsize=8];' for cid in group["claim_id"]]
    lines.append("}")
    return "\n".join(lines)


def shared_entities(entities: pd.DataFrame) -> pd.DataFrame:
    """Entities named by more than one claim of the ring, most shared first."""
    if entities.empty:
        return pd.DataFrame(columns=["kind", "entity_key", "claims", "claim_ids"])
    g = entities.groupby(["kind", "entity_key"])["claim_id"]
    out = pd.DataFrame({"claims": g.nunique(), "claim_ids": g.apply(lambda s: ", ".join(sorted(set(s))))}).reset_index()
    return out[out["claims"] >= 2].sort_values(["claims", "kind"], ascending=[False, True], ignore_index=True)


def _md(value) -> str:
    """A value as one Markdown table cell: no line break, no column bar."""
    if isinstance(value, float):
        return f"{value:,.2f}" if not np.isnan(value) else ""
    return str(value).replace("\\", "\\\\").replace("|", "\\|").replace("\r", " ").replace("\n", " ")


def _md_table(header: list[str], rows) -> list[str]:
    out = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    out += ["| " + " | ".join(_md(v) for v in row) + " |" for row in rows]
    return out if len(out) > 2 else ["(none)"]


def case_file(alert: pd.Series, entities: pd.DataFrame, claims: pd.DataFrame, history: pd.DataFrame,
              exported_by: str | None, now_ms: int) -> str:
    """The alert as a case file for a referral (Markdown): what the triage page shows of
    it — the model's reasons, the telematics evidence, the ring's claims with their
    verification, the entities they share and the decisions so far — with who exported
    it and when."""
    when = lambda ms: pd.Timestamp(int(ms), unit="ms", tz="UTC").strftime("%Y-%m-%d %H:%M UTC")  # noqa: E731
    members, ring_claims = list(alert["members"]), int(alert["ring_claims"])
    status = str(alert["status"])
    if alert.get("last_decision"):
        status += f" (last decision {alert['last_decision']} by {alert['investigator']})"
    lines = [f"# Case file: {alert['alert_id']}", "",
             f"Exported {when(now_ms)} by {exported_by or 'an unnamed user (no sign-in)'} from voltrisk fraud triage.", "",
             *_md_table(["", ""], [
                 ("Claim", alert["claim_id"]), ("Ring", f"{alert['ring_id']}, {ring_claims:,} claims"),
                 ("Score (p of fraud)", f"{float(alert['score']):.2f}"), ("Claimed", f"€{float(alert['amount_eur']):,.0f}"),
                 ("Expected saving", f"€{float(alert['expected_saving_eur']):,.0f}"),
                 ("Telematics verdict", alert["verdict"]), ("Status", status)]),
             "", "## Why the model flags it", "", *[f"- {_md(r)}" for r in alert["reasons"]],
             "", "## Telematics evidence", "", *([f"- {_md(e)}" for e in alert["evidence"]] or ["(none)"]),
             "", f"## Claims of the ring ({len(claims)} of {ring_claims:,})", ""]
    if len(members) < ring_claims:
        lines += [f"The {len(members)} claims nearest to {alert['claim_id']} in the entity graph.", ""]
    table = verification_table(claims) if not claims.empty else claims
    lines += _md_table(["claim", "policy", "loss (UTC)", "claimed €", "verdict", "evidence"],
                       [(r.claim_id, r.policy_id, r.loss_utc.strftime("%Y-%m-%d %H:%M"), f"{r.amount_eur:,.0f}", r.verdict,
                         r.evidence) for r in table.itertuples()] if not table.empty else [])
    lines += ["", "## Entities the claims share", ""]
    lines += _md_table(["kind", "entity", "claims", "claim ids"],
                       [(r.kind, r.entity_key, r.claims, r.claim_ids) for r in shared_entities(entities).itertuples()])
    lines += ["", "## Decisions", ""]
    lines += _md_table(["decided (UTC)", "status", "investigator", "note"],
                       [(when(r.ts_ms).removesuffix(" UTC"), r.status, r.investigator, r.note) for r in history.itertuples()])
    return "\n".join(lines) + "\n"


def verification_table(claims: pd.DataFrame) -> pd.DataFrame:
    out = claims.assign(loss_utc=utc_from_ms(claims["loss_ts_ms"]), evidence=claims["evidence"].map(lambda e: "; ".join(e)))
    return out.drop(columns=["loss_ts_ms"])[["claim_id", "loss_utc", "amount_eur", "verdict", "telematics_available",
                                              "insured_in_cell", "third_party_in_cell", "crash_pulse_found",
                                              "crash_delta_v_kmh", "speed_at_loss_kmh", "parked_or_charging_at_loss",
                                              "evidence", "policy_id"]]


# --- vehicle drill-down --------------------------------------------------------------


def feature_label(name: str) -> str:
    """``hard_brake_per_100km_by_vehicle_30d`` -> ``hard brake per 100km (30 d)``."""
    stem, _, window = name.rpartition("_by_vehicle_")
    return f"{stem.replace('_', ' ')} ({window.removesuffix('d')} d)"


def feature_percentiles(vehicle: pd.Series, fleet: pd.DataFrame, features: tuple[str, ...]) -> pd.DataFrame:
    """Each feature of one vehicle beside the fleet median and the vehicle's percentile
    (share of the fleet at or below its value, from the fleet's 99 percentiles)."""
    rows = []
    for f in features:
        q = np.asarray(fleet[f"q_{f}"].iloc[0], np.float64)
        value = vehicle.get(f)
        known = value is not None and not pd.isna(value)
        rows.append({"feature": feature_label(f), "value": float(value) if known else np.nan, "fleet_median": q[49],
                     "percentile": float(np.searchsorted(q, value, side="right")) if known else np.nan})
    return pd.DataFrame(rows)


def trips_table(trips: pd.DataFrame) -> pd.DataFrame:
    return trips.assign(start_utc=utc_from_ms(trips["start_ts_ms"]), duration_min=trips["duration_s"] / 60).drop(
        columns=["start_ts_ms", "end_ts_ms", "duration_s"])


def harsh_timeline(trips: pd.DataFrame) -> pd.DataFrame:
    """Harsh events per trip, indexed by trip start (UTC)."""
    cols = ["hard_brake_n", "harsh_accel_n", "harsh_turn_n", "fcw_n"]
    return trips.assign(start_utc=utc_from_ms(trips["start_ts_ms"])).set_index("start_utc")[cols].sort_index()


def score_history(scores: pd.DataFrame) -> pd.DataFrame:
    """One row per local day, one column per scorer: the reference score and each model
    version (``ubi@v2``), so a promotion starts a column beside the previous version's."""
    if scores.empty:
        return pd.DataFrame()
    days = pd.to_datetime(scores["as_of_day"].astype("int64"), unit="D")  # local days, plotted as dates
    return scores.assign(day=days).pivot_table(index="day", columns="scorer", values="score").sort_index()


def telematics_multipliers(model, features: pd.DataFrame) -> np.ndarray:
    """The telematics multiplier of each row of contract features (one batched predict)."""
    return model.multiplier(features[list(model.features)].astype("float64"))


def telematics_quote(model, features: pd.DataFrame) -> tuple[np.ndarray, list[list[str]]]:
    """Telematics multipliers and plain-words reason codes for rows of contract features."""
    from pricing.rating import reason_codes

    return telematics_multipliers(model, features), reason_codes(model, features[list(model.features)].astype("float64"))


# --- portfolio -----------------------------------------------------------------------


def portfolio_totals(exposure: pd.DataFrame, segments: pd.DataFrame, claims: pd.DataFrame) -> dict:
    vehicle_years = float(segments["vehicle_years"].sum()) if not segments.empty else 0.0
    crashes = float(segments["crashes"].sum()) if not segments.empty else 0.0
    n_claims = int(claims["claims"].sum()) if not claims.empty else 0
    return {
        "vehicles": int(segments["vehicles"].sum()) if not segments.empty else 0,
        "vehicle_years": vehicle_years,
        "distance_km": float(exposure["distance_km_total"].sum()) if not exposure.empty else 0.0,
        "crashes": crashes,
        "claims": n_claims,
        "claimed_eur": float(claims["claimed_eur"].sum()) if not claims.empty else 0.0,
        "claim_frequency": n_claims / vehicle_years if vehicle_years else float("nan"),
        "crash_frequency": crashes / vehicle_years if vehicle_years else float("nan"),
    }


def segment_table(segments: pd.DataFrame) -> pd.DataFrame:
    """Per carmaker: exposure, harsh braking per 100 km and crashes per vehicle-year."""
    out = segments.assign(
        hard_brakes_per_100km=100 * segments["hard_brakes"] / segments["distance_km_total"].where(segments["distance_km_total"] > 0),
        crashes_per_vehicle_year=segments["crashes"] / segments["vehicle_years"].where(segments["vehicle_years"] > 0),
    )
    return out[["carmaker", "vehicles", "vehicle_years", "distance_km_total", "driving_h", "hard_brakes_per_100km",
                "crashes", "crashes_per_vehicle_year"]]


def by_day(frame: pd.DataFrame, columns: list[str]) -> pd.DataFrame:
    """``columns`` indexed by local day as a date."""
    return frame.assign(date=pd.to_datetime(frame["day"].astype("int64"), unit="D")).set_index("date")[columns]


def multiplier_distribution(multipliers: np.ndarray, bins: int = 18) -> pd.DataFrame:
    """Vehicles per premium band relative to the base premium: before telematics every
    vehicle pays the base (1.0), after it pays base × its multiplier."""
    edges = np.linspace(0.6, 1.5, bins + 1)
    after, _ = np.histogram(np.clip(multipliers, 0.6, 1.5), bins=edges)
    before, _ = np.histogram(np.ones(len(multipliers)), bins=edges)
    index = pd.Index([f"{a:.2f}–{b:.2f}" for a, b in zip(edges[:-1], edges[1:], strict=True)], name="premium / base")
    return pd.DataFrame({"before telematics": before, "after telematics": after}, index=index)


# --- pricing lab -------------------------------------------------------------------


def registry_table(models: pd.DataFrame) -> pd.DataFrame:
    """One row per model version with its metrics as columns, newest first."""
    if models.empty:
        return models
    metrics = pd.DataFrame(list(models["metrics"]), index=models.index)
    scalar = [c for c in metrics.columns if metrics[c].map(lambda v: isinstance(v, (int, float))).all()]
    out = pd.concat([models.drop(columns=["metrics", "features"]), metrics[scalar]], axis=1)
    out.insert(3, "features", models["features"].map(len))
    return out.sort_values(["name", "version"], ascending=[True, False], ignore_index=True)


def promotion_impact(book: pd.DataFrame, production, candidate) -> dict:
    """What promoting ``candidate`` over ``production`` does to each vehicle's telematics
    multiplier on the latest features (the base premium does not change, so the premium
    moves by the same ratio)."""
    before = telematics_multipliers(production, book)
    after = telematics_multipliers(candidate, book)
    change = after / before - 1.0
    return {
        "vehicles": len(book),
        "mean_before": float(before.mean()),
        "mean_after": float(after.mean()),
        "share_up_5pct": float((change > 0.05).mean()),
        "share_down_5pct": float((change < -0.05).mean()),
        "change_pct": pd.Series(100 * change, index=book.index, name="premium change %"),
    }


def change_histogram(change_pct: pd.Series, bins: int = 20) -> pd.DataFrame:
    counts, edges = np.histogram(change_pct.to_numpy(), bins=bins)
    centres = (edges[:-1] + edges[1:]) / 2
    return pd.DataFrame({"vehicles": counts}, index=pd.Index(np.round(centres, 1), name="premium change %"))
